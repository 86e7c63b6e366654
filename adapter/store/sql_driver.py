"""Driver SQL: the embedded store's hot statements, run on the DBAPI cursor of a SQLAlchemy connection.

SQLAlchemy keeps the transaction, savepoints and pool; these statements skip only its
per-statement cost (compiled cache lookup, execution context, events, result wrapping), which was
several times the database's own. The fixed statements of the write and read paths are written
once here with `?` placeholders; search statements come from `sql_search` and are compiled once
per shape and dialect. `_driver_sql(dialect)` returns the one `_DriverSql` of a dialect.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple, cast

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect

from adapter.errors import InputError
from adapter.fhir import jsonio
from adapter.store.models import CURRENT_TABLE
from adapter.store.repository import StoredResource
from adapter.store.sql_search import _build_search, _SearchShape

_current = CURRENT_TABLE.c

# The hot statements as driver SQL, written once with `?` for each parameter (`_DriverSql` turns
# that into the driver's paramstyle). Through SQLAlchemy Core each statement cost 5-8 times what
# the database spent on it; these go straight to the DBAPI cursor of the connection's transaction.
_SQL_SELECT_CURRENT: Final = (
    "SELECT version_id, deleted FROM resource_current WHERE resource_type = ? AND id = ?"
)
#: A brand-new resource in one statement; 0 rows when the id is taken (the caller then looks).
_SQL_INSERT_CURRENT_IF_ABSENT: Final = (
    "INSERT INTO resource_current (resource_type, id, version_id, last_updated, deleted) "
    "VALUES (?, ?, 1, ?, ?) ON CONFLICT (resource_type, id) DO NOTHING"
)
#: The next version of a live resource in one statement (read and compare-and-set together); 0
#: rows when it does not exist, is deleted or (with If-Match) is at another version.
_SQL_BUMP_CURRENT: Final = (
    "UPDATE resource_current SET version_id = version_id + 1, last_updated = ? "
    "WHERE resource_type = ? AND id = ? AND deleted = ? RETURNING version_id"
)
_SQL_BUMP_CURRENT_IF_MATCH: Final = (
    "UPDATE resource_current SET version_id = version_id + 1, last_updated = ? "
    "WHERE resource_type = ? AND id = ? AND deleted = ? AND version_id = ? RETURNING version_id"
)
_SQL_COMPARE_AND_SET: Final = (
    "UPDATE resource_current SET version_id = ?, last_updated = ?, deleted = ? "
    "WHERE resource_type = ? AND id = ? AND version_id = ?"
)
_SQL_INSERT_VERSION: Final = (
    "INSERT INTO resource_version (resource_type, id, version_id, last_updated, deleted, content) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_SQL_SELECT_INDEX_ROWS: Final = (
    "SELECT row_id, param, system, value, ref_type, ref_id FROM search_index "
    "WHERE resource_id = ? AND resource_type = ?"
)
_SQL_DELETE_INDEX_ROWS: Final = (
    "DELETE FROM search_index WHERE resource_id = ? AND resource_type = ?"
)
_SQL_DELETE_INDEX_ROW: Final = "DELETE FROM search_index WHERE row_id = ?"
_SQL_INSERT_INDEX_ROW: Final = (
    "INSERT INTO search_index (resource_type, resource_id, param, system, value, ref_type, ref_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SQL_READ_CURRENT: Final = (
    "SELECT v.resource_type, v.id, v.version_id, v.last_updated, v.deleted, v.content "
    "FROM resource_current c JOIN resource_version v ON v.resource_type = c.resource_type "
    "AND v.id = c.id AND v.version_id = c.version_id WHERE c.resource_type = ? AND c.id = ?"
)
_SQL_READ_VERSION: Final = (
    "SELECT resource_type, id, version_id, last_updated, deleted, content FROM resource_version "
    "WHERE resource_type = ? AND id = ? AND version_id = ?"
)
_SQL_ADVISORY_LOCK: Final = "SELECT pg_advisory_xact_lock(?)"
#: Compiled search statements kept per dialect; past this many shapes the cache starts again.
_SEARCH_CACHE_SIZE: Final = 512


class _Compiled(NamedTuple):
    """A Core statement compiled once for one dialect: its SQL, parameter names in the order the
    driver wants them (positional styles) or to pass by name, bind processors, literal defaults."""

    sql: str
    names: tuple[str, ...]
    is_positional: bool
    processors: Mapping[str, Callable[[Any], Any]]
    defaults: dict[str, Any]


class _DriverSql:
    """The hot statements of one dialect, run on the DBAPI cursor of a SQLAlchemy connection.

    The transaction is still SQLAlchemy's (BEGIN IMMEDIATE on SQLite, savepoints, PostgreSQL
    advisory locks all apply); these statements skip only its per-statement machinery (compiled
    cache lookup, execution context, events, result wrapping). Values go through the column types'
    own bind and result processors, so what is stored is byte for byte what Core stored. Driver
    errors are wrapped exactly as Core wraps them, so `translate_db_errors` sees the same classes.
    """

    def __init__(self, dialect: Dialect) -> None:
        if dialect.paramstyle not in ("qmark", "format", "pyformat"):  # pragma: no cover
            raise InputError(f"Unsupported driver paramstyle {dialect.paramstyle!r}")
        version = getattr(dialect.loaded_dbapi, "sqlite_version_info", None)
        if dialect.name == "sqlite" and version is not None and version < (3, 35):
            # pragma: no cover - RETURNING (3.35) and upsert (3.24) are needed by the write path
            raise InputError(f"SQLite {version} is too old: the store needs 3.35 or later")
        self.dialect = dialect
        self._marker = "?" if dialect.paramstyle == "qmark" else "%s"
        self._error: type[Exception] = dialect.loaded_dbapi.Error
        # `dialect_impl` first: a TypeDecorator's own processors wrap the generic type's, which
        # on SQLite would leave datetimes to the driver's (deprecated) adapters.
        instant = _current.last_updated.type.dialect_impl(dialect)
        flag = _current.deleted.type.dialect_impl(dialect)
        self._bind_instant = instant.bind_processor(dialect) or _same
        self._bind_flag = flag.bind_processor(dialect) or _same
        self._result_instant = instant.result_processor(dialect, None) or _same
        self._result_flag = flag.result_processor(dialect, None) or _same
        self._texts: dict[str, str] = {}
        self._searches: dict[Hashable, tuple[_Compiled, _Compiled]] = {}

    def instant(self, moment: datetime) -> Any:
        return self._bind_instant(moment)

    def flag(self, value: bool) -> Any:
        return self._bind_flag(value)

    def _text(self, sql: str) -> str:
        text = self._texts.get(sql)
        if text is None:
            text = sql if self._marker == "?" else sql.replace("?", self._marker)
            self._texts[sql] = text
        return text

    def execute(self, conn: Connection, sql: str, parameters: Sequence[Any]) -> list[Any]:
        """Runs one statement; returns its rows (empty for DML without RETURNING)."""
        return self._run(conn, self._text(sql), parameters, many=False)[0]

    def execute_count(self, conn: Connection, sql: str, parameters: Sequence[Any]) -> int:
        """Runs one DML statement; returns the number of rows it changed."""
        return self._run(conn, self._text(sql), parameters, many=False)[1]

    def execute_many(self, conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._run(conn, self._text(sql), rows, many=True)

    def _run(
        self, conn: Connection, text: str, parameters: Any, *, many: bool
    ) -> tuple[list[Any], int]:
        dbapi_connection = conn.connection.dbapi_connection
        if dbapi_connection is None:  # pragma: no cover - a closed or invalidated connection
            raise sa_exc.ResourceClosedError("The connection is closed")
        cursor = dbapi_connection.cursor()
        try:
            if many:
                cursor.executemany(text, parameters)
            else:
                cursor.execute(text, parameters)
            rows = list(cursor.fetchall()) if cursor.description is not None else []
            return rows, cursor.rowcount
        except self._error as error:
            is_disconnect = self.dialect.is_disconnect(cast(Any, error), dbapi_connection, cursor)
            if is_disconnect:
                conn.invalidate(error)
            raise sa_exc.DBAPIError.instance(
                text,
                None,
                error,
                self._error,
                hide_parameters=True,
                connection_invalidated=is_disconnect,
                dialect=self.dialect,
            ) from error
        finally:
            cursor.close()

    def stored(self, row: Sequence[Any]) -> StoredResource:
        """A row of `_VERSION_COLUMNS` (or the same columns written as driver SQL)."""
        resource_type, resource_id, version_id, last_updated, deleted, content = row
        return StoredResource(
            resource_type=resource_type,
            id=resource_id,
            version_id=int(version_id),
            last_updated=cast(datetime, self._result_instant(last_updated)),
            resource=jsonio.loads(content),
            deleted=bool(self._result_flag(deleted)),
        )

    # -- search statements, compiled once per shape --

    def search_statements(self, shape: _SearchShape) -> tuple[_Compiled, _Compiled]:
        compiled = self._searches.get(shape)
        if compiled is None:
            select, count = _build_search(shape, self.dialect.name)
            compiled = (self._compile(select), self._compile(count))
            if len(self._searches) >= _SEARCH_CACHE_SIZE:
                self._searches.clear()
            self._searches[shape] = compiled
        return compiled

    def _compile(self, statement: sa.Select[Any]) -> _Compiled:
        compiled = statement.compile(dialect=self.dialect)
        if compiled.post_compile_params or compiled.literal_execute_params:  # pragma: no cover
            raise AssertionError("search statements must not need render-time parameters")
        binds = compiled.binds
        processors = {
            name: processor
            for name, bind in binds.items()
            if (processor := bind.type.dialect_impl(self.dialect).bind_processor(self.dialect))
            is not None
        }
        defaults = {name: bind.effective_value for name, bind in binds.items() if not bind.required}
        positional = compiled.positiontup
        names = tuple(positional) if positional is not None else tuple(binds)
        return _Compiled(compiled.string, names, positional is not None, processors, defaults)

    def query(self, conn: Connection, compiled: _Compiled, values: dict[str, Any]) -> list[Any]:
        merged = {**compiled.defaults, **values}
        processors = compiled.processors
        processed = {
            name: processors[name](merged[name]) if name in processors else merged[name]
            for name in compiled.names
        }
        parameters: Any = (
            tuple(processed[name] for name in compiled.names)
            if compiled.is_positional
            else processed
        )
        return self._run(conn, compiled.sql, parameters, many=False)[0]


def _same(value: Any) -> Any:
    return value


_DRIVERS: Final[weakref.WeakKeyDictionary[Dialect, _DriverSql]] = weakref.WeakKeyDictionary()


def _driver_sql(dialect: Dialect) -> _DriverSql:
    driver = _DRIVERS.get(dialect)
    if driver is None:
        driver = _DRIVERS.setdefault(dialect, _DriverSql(dialect))
    return driver
