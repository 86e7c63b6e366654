"""Alembic environment of the embedded store.

`adapter.store.migrate.upgrade` passes an open connection (already in a transaction, with the
schema on its search_path) in `config.attributes["connection"]`. Run by hand, the database comes
from `Settings` (ADAPTER_DATABASE_URL / ADAPTER_DATABASE_SCHEMA).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from adapter.settings import Settings
from adapter.store.models import STORE_TABLES

target_metadata = STORE_TABLES[0].metadata


def _run(connection: Connection, schema: str | None) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=schema,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection, config.attributes.get("schema"))
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    from adapter.store.migrate import upgrade

    settings = Settings()
    upgrade(settings.database_url, settings.database_schema)


if context.is_offline_mode():
    raise SystemExit("Offline (--sql) migrations are not supported; use adapter.store.migrate")
run_migrations_online()
