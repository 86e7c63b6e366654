"""Alembic migrations: a fresh database upgrades to head on both backends, twice, matching models.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from adapter.store.migrate import current_revisions, head_revisions, upgrade
from adapter.store.models import STORE_TABLES
from adapter.store.sql import SqlRepository, build_engine


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[str, str | None]]:
    """(url, schema) of a database nobody has migrated yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh' / 'adapter.sqlite3'}", None
        return
    yield request.getfixturevalue("postgres_url"), request.getfixturevalue("fresh_postgres_schema")


def test_upgrade_creates_the_schema_and_is_idempotent(empty_database):
    url, schema = empty_database
    assert current_revisions(url, schema) == ()

    upgrade(url, schema)
    upgrade(url, schema)

    assert current_revisions(url, schema) == head_revisions()
    engine = build_engine(url, schema)
    try:
        tables = set(sa.inspect(engine).get_table_names())
        assert {"resource_version", "resource_current", "search_index", "alembic_version"} <= tables
        assert "0001" in _ancestry_of(head_revisions())
        repo = SqlRepository(engine)
        stored = repo.create({"resourceType": "Patient"})
        assert repo.read("Patient", stored.id).version_id == 1
    finally:
        engine.dispose()


def _ancestry_of(heads: tuple[str, ...]) -> set[str]:
    from alembic.script import ScriptDirectory

    from adapter.store.migrate import _config

    script = ScriptDirectory.from_config(_config())
    return {rev.revision for rev in script.iterate_revisions(heads, "base")}


def test_upgrade_to_head_works_while_the_tree_has_several_heads(empty_database):
    url, schema = empty_database
    upgrade(url, schema, revision="head")
    assert current_revisions(url, schema) == head_revisions()


def test_migrated_schema_matches_the_models(empty_database):
    url, schema = empty_database
    upgrade(url, schema)
    engine = build_engine(url, schema)
    metadata = STORE_TABLES[0].metadata
    ours = {t.name for t in STORE_TABLES}
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, kind, _parent: kind != "table" or name in ours,
                },
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_connections_are_configured_per_backend(database):
    """PostgreSQL works in the session's own schema; SQLite runs in WAL mode with a busy timeout."""
    with database.engine.connect() as conn:
        if database.schema is not None:
            assert conn.exec_driver_sql("SELECT current_schema()").scalar_one() == database.schema
        else:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() > 0
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA temp_store").scalar_one() == 2  # MEMORY


def test_a_database_on_both_branch_heads_upgrades_to_the_merge(empty_database):
    """Databases migrated before 0004 sit on (0002, 0003); they must reach the single head."""
    url, schema = empty_database
    upgrade(url, schema, revision="0002")
    upgrade(url, schema, revision="0003")
    assert current_revisions(url, schema) == ("0002", "0003")
    upgrade(url, schema)
    assert current_revisions(url, schema) == head_revisions() == ("0004",)
