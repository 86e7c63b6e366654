"""Fixtures of the SMART integration tests: servers started once per session, not once per test.

`live` is one server on its own SQLite file, for the tests where the database does not matter
(discovery, token checks, scope enforcement). `live_db` is one server per backend of the
parametrised conftest database (SQLite and PostgreSQL), for the tests where it does: the client
registry, jti replay, codes and refresh-token state. Other tests of the session may empty that
database between two SMART tests, so a SMART test never relies on rows it did not write itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from adapter.settings import Settings
from tests.integration.smart.harness import LiveServer, start_server


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("smart-live")
    settings = Settings(database_url=f"sqlite:///{home / 'smart.sqlite3'}", auto_migrate=True)
    server = start_server(settings, home)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def live_db(test_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The same, on the session's parametrised database (SQLite and PostgreSQL)."""
    home = tmp_path_factory.mktemp("smart-live-db")
    settings = Settings(
        database_url=test_database.url, database_schema=test_database.schema, auto_migrate=True
    )
    server = start_server(settings, home)
    yield server
    server.stop()


@pytest.fixture
def launch_patient() -> Iterator[Callable[[LiveServer, str], None]]:
    """Sets the patient a server's development login picks in a standalone launch; reset after."""
    touched: list[LiveServer] = []

    def choose(server: LiveServer, patient_id: str) -> None:
        touched.append(server)
        server.smart.auth.dev_patient = patient_id

    yield choose
    for server in touched:
        server.smart.auth.dev_patient = None
