"""Schema migrations of the embedded store, run programmatically (`adapter db upgrade`, app start-up).

The schema is made only here, never with `create_all`. On PostgreSQL the named schema is created if
missing and an advisory lock serialises concurrent upgrades (several workers starting at once); on
SQLite the write lock taken by `BEGIN IMMEDIATE` does the same. Running `upgrade` twice is harmless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from adapter.store.sql import build_engine, translate_db_errors, validated_schema, write_engine

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
#: Arbitrary constant key of the PostgreSQL advisory lock held while migrating.
_ADVISORY_LOCK_KEY: Final = 0x46484952  # "FHIR"


def _config(connection: Connection | None = None, schema: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    return config


def head_revisions() -> tuple[str, ...]:
    """Every head: the tree may branch (0002 SMART clients and 0003 outbox both follow 0001)."""
    return tuple(sorted(ScriptDirectory.from_config(_config()).get_heads()))


def upgrade(database_url: str, schema: str | None = None, *, revision: str = "heads") -> None:
    """Migrates the database to `revision` in one transaction. Errors arrive as AdapterErrors.

    "head" is read as "heads" while the revision tree has parallel branches, so `adapter db
    upgrade` (whose default is "head") keeps working until the branches are merged.
    """
    if revision == "head":
        revision = "heads"
    engine = build_engine(database_url, schema)
    is_postgres = engine.dialect.name == "postgresql"
    try:
        with translate_db_errors(may_retry=False), write_engine(engine).begin() as connection:
            if is_postgres:
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK_KEY})")
                if schema is not None:
                    connection.exec_driver_sql(
                        f'CREATE SCHEMA IF NOT EXISTS "{validated_schema(schema)}"'
                    )
            command.upgrade(_config(connection, schema if is_postgres else None), revision)
    finally:
        engine.dispose()


def current_revisions(database_url: str, schema: str | None = None) -> tuple[str, ...]:
    """The revisions the database is at; empty if it was never migrated."""
    engine = build_engine(database_url, schema)
    try:
        with translate_db_errors(may_retry=False), engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "version_table_schema": schema if engine.dialect.name == "postgresql" else None
                },
            )
            return tuple(sorted(context.get_current_heads()))
    finally:
        engine.dispose()
