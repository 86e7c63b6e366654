"""Engines of the embedded store: how SQLite and PostgreSQL connections are opened and configured.

SQLite runs in WAL mode with a busy timeout and `synchronous=FULL`, with driver-level autocommit so
that we, not pysqlite, decide when a transaction begins; an engine from `write_engine` begins with
`BEGIN IMMEDIATE`, so a writer takes the write lock up front and never fails half-way on a stale
snapshot. PostgreSQL gets the configured schema as its `search_path`. Used by `SqlRepository`, the
outbox, migrations, idempotency records and the authorization server's tables.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from adapter.errors import InputError
from adapter.store.sql_driver import _driver_sql

_SCHEMA_RE: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SQLITE_BUSY_TIMEOUT_MS: Final = 10_000
_WRITE_OPTION: Final = "adapter_write_transaction"


def build_engine(database_url: str, schema: str | None = None) -> Engine:
    """One engine per process. `schema` (PostgreSQL only) becomes the connection's search_path.

    SQLite: WAL, a busy timeout, `synchronous=FULL` (a committed referral survives power loss),
    and driver-level autocommit so that we, not pysqlite, decide when a transaction begins.
    """
    url = make_url(database_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False})
        sa.event.listen(engine, "connect", _configure_sqlite_connection)
        sa.event.listen(engine, "begin", _begin_sqlite_transaction)
        return engine
    if backend == "postgresql":
        connect_args: dict[str, Any] = {}
        if schema is not None:
            connect_args["options"] = f"-csearch_path={validated_schema(schema)}"
        return sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    raise InputError(f"Unsupported database backend {backend!r}: use sqlite or postgresql+psycopg")


def validated_schema(schema: str) -> str:
    """Schema names are interpolated into SQL, so only plain lower-case identifiers are accepted."""
    if not _SCHEMA_RE.match(schema):
        raise InputError(f"Invalid database schema name {schema!r}")
    return schema


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # Savepoint and statement journals in memory, not temporary files: each bulk unit is a
        # savepoint and each index write a multi-row statement (12% of the store time of 100-unit
        # batches of DIALOG units). They hold one unit's or one statement's changed pages; a sort
        # too big for the cache would also stay in memory, and searches are paged (`_count`).
        cursor.execute("PRAGMA temp_store = MEMORY")
    finally:
        cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    is_write = bool(connection.get_execution_options().get(_WRITE_OPTION))
    # On the driver: SQLAlchemy's execution path costs ~40 µs here, once per unit of work, which
    # a v2 message (one unit each) pays every time. Errors are wrapped as SQLAlchemy's, as before.
    _driver_sql(connection.dialect).execute(
        connection, "BEGIN IMMEDIATE" if is_write else "BEGIN", ()
    )


def write_engine(engine: Engine) -> Engine:
    """The same pool, marked so that SQLite begins its transactions with `BEGIN IMMEDIATE`."""
    return engine.execution_options(**{_WRITE_OPTION: True})
