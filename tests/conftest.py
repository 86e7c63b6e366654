"""Database fixtures shared by every test that needs a store.

`database_url`, `database_schema`, `settings` and `repo` are parametrised over SQLite (a file in a
temporary directory) and PostgreSQL (ADAPTER_TEST_POSTGRES_URL; the PostgreSQL cases carry the
`postgres` marker). Each backend is migrated once per session with `adapter.store.migrate.upgrade`
and emptied before each test. On PostgreSQL the session works in its own schema `test_<random>`,
dropped at the end; `database_url` carries that schema as the connection's search_path, so the URL
alone is enough. Without a reachable PostgreSQL those cases skip, unless ADAPTER_REQUIRE_POSTGRES=1,
when they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from adapter.settings import Settings
from adapter.store.migrate import upgrade
from adapter.store.sql import SqlRepository, build_engine, write_engine

POSTGRES_URL = os.environ.get(
    "ADAPTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("ADAPTER_REQUIRE_POSTGRES") == "1"


@dataclass(frozen=True)
class TestDatabase:
    """A migrated database for the session: its URL, schema (PostgreSQL) and a shared engine."""

    __test__ = False  # not a test class, despite the name

    url: str
    schema: str | None
    engine: sa.Engine

    def empty(self) -> None:
        """Removes every row except alembic's, from all tables (including other layers' tables)."""
        names = [n for n in sa.inspect(self.engine).get_table_names() if n != "alembic_version"]
        with write_engine(self.engine).begin() as conn:
            if self.engine.dialect.name == "postgresql":
                quoted = ", ".join(f'"{name}"' for name in names)
                conn.exec_driver_sql(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
            else:
                for name in names:
                    conn.exec_driver_sql(f'DELETE FROM "{name}"')


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The server URL (no schema), after checking it answers; skips or fails as the docstring says."""
    engine = sa.create_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1),
        connect_args={"connect_timeout": 3},
    )
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        reason = f"PostgreSQL at {POSTGRES_URL} is unreachable ({type(cause).__name__})"
        if REQUIRE_POSTGRES:
            pytest.fail(f"{reason}, and ADAPTER_REQUIRE_POSTGRES=1")
        pytest.skip(f"{reason}; set ADAPTER_TEST_POSTGRES_URL to run the PostgreSQL cases")
    finally:
        engine.dispose()
    return POSTGRES_URL


def new_postgres_schema(server_url: str) -> Iterator[str]:
    """Yields a fresh schema name and drops the schema (if it was made) afterwards."""
    schema = f"test_{secrets.token_hex(6)}"
    try:
        yield schema
    finally:
        engine = build_engine(server_url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()


@pytest.fixture(
    scope="session",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def test_database(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[TestDatabase]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'adapter.sqlite3'}"
        upgrade(url)
        engine = build_engine(url)
        yield TestDatabase(url, None, engine)
        engine.dispose()
        return
    server_url = request.getfixturevalue("postgres_url")
    for schema in new_postgres_schema(server_url):
        upgrade(server_url, schema)
        separator = "&" if "?" in server_url else "?"
        url = f"{server_url}{separator}options={quote(f'-csearch_path={schema}')}"
        engine = build_engine(server_url, schema)
        yield TestDatabase(url, schema, engine)
        engine.dispose()


@pytest.fixture
def fresh_postgres_schema(postgres_url: str) -> Iterator[str]:
    """A schema name nobody has used yet (not created), dropped after the test if it was made."""
    yield from new_postgres_schema(postgres_url)


@pytest.fixture
def database(test_database: TestDatabase) -> TestDatabase:
    """The session's database, emptied for this test."""
    test_database.empty()
    return test_database


@pytest.fixture
def database_url(database: TestDatabase) -> str:
    return database.url


@pytest.fixture
def database_schema(database: TestDatabase) -> str | None:
    return database.schema


@pytest.fixture
def settings(database: TestDatabase) -> Settings:
    return Settings(database_url=database.url, database_schema=database.schema, auto_migrate=True)


@pytest.fixture
def repo(database: TestDatabase) -> SqlRepository:
    """A repository on the session's engine (engines are built once per session)."""
    return SqlRepository(database.engine)
