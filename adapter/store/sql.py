"""The embedded store: `SqlRepository`, the `Repository` protocol on SQLite or PostgreSQL.

Writes are compare-and-set on `resource_current.version_id` (`UPDATE ... WHERE version_id =
:expected`, then check the row count), so two writers holding the same If-Match cannot both win on
either database. The version row and the search index rows are written in the same transaction.
SQLite runs in WAL mode and starts write transactions with `BEGIN IMMEDIATE`, so a writer never
fails half-way on a stale snapshot; it waits (busy timeout) for the lock instead.

Every SQLAlchemy or driver error is translated into the `AdapterError` family in `translate_db_errors`.
Create one `SqlRepository` (one engine and pool) per process and share it between threads; the
repository yielded by `unit_of_work()` holds one connection and belongs to one thread.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url

from adapter.clock import Clock, SystemClock
from adapter.errors import (
    AdapterError,
    Conflict,
    Gone,
    InputError,
    NotFound,
    PreconditionFailed,
    UpstreamUnavailable,
)
from adapter.fhir import jsonio
from adapter.fhir.types import JsonObject
from adapter.issue import Issue, IssueCode
from adapter.settings import Settings
from adapter.store import search_index
from adapter.store.models import CURRENT_TABLE, INDEX_TABLE, VERSION_TABLE
from adapter.store.repository import (
    HistoryPage,
    SearchPage,
    SearchParam,
    SearchQuery,
    StoredResource,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_ID_RE: Final = re.compile(r"^[A-Za-z0-9\-\.]{1,64}$")
_TYPE_RE: Final = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_SCHEMA_RE: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
#: Attempts of one write outside a unit of work when it loses a race or meets a transient error.
WRITE_ATTEMPTS: Final = 5
SQLITE_BUSY_TIMEOUT_MS: Final = 10_000
_WRITE_OPTION: Final = "adapter_write_transaction"
#: PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock.
_RETRYABLE_SQLSTATES: Final = frozenset({"40001", "40P01"})
_SORTS: Final = {"_lastUpdated", "-_lastUpdated", "_id", "-_id"}

_current = CURRENT_TABLE.c
_version = VERSION_TABLE.c

# Statements of the hot paths, built once: building a statement costs more than running it on SQLite.
_SELECT_CURRENT: Final = sa.select(_current.version_id, _current.deleted).where(
    _current.resource_type == sa.bindparam("rt"), _current.id == sa.bindparam("rid")
)
_INSERT_CURRENT: Final = sa.insert(CURRENT_TABLE)
_COMPARE_AND_SET: Final = sa.update(CURRENT_TABLE).where(
    _current.resource_type == sa.bindparam("rt"),
    _current.id == sa.bindparam("rid"),
    _current.version_id == sa.bindparam("expected"),
)
_INSERT_VERSION: Final = sa.insert(VERSION_TABLE)
_DELETE_INDEX_ROWS: Final = sa.delete(INDEX_TABLE).where(
    INDEX_TABLE.c.resource_id == sa.bindparam("rid"),
    INDEX_TABLE.c.resource_type == sa.bindparam("rt"),
)
_INSERT_INDEX_ROW: Final = sa.insert(INDEX_TABLE)
_CURRENT_VERSION_JOIN: Final = sa.and_(
    _current.resource_type == _version.resource_type,
    _current.id == _version.id,
    _current.version_id == _version.version_id,
)
_READ_CURRENT: Final = (
    sa.select(VERSION_TABLE)
    .join(CURRENT_TABLE, _CURRENT_VERSION_JOIN)
    .where(_current.resource_type == sa.bindparam("rt"), _current.id == sa.bindparam("rid"))
)
_READ_VERSION: Final = sa.select(VERSION_TABLE).where(
    _version.resource_type == sa.bindparam("rt"),
    _version.id == sa.bindparam("rid"),
    _version.version_id == sa.bindparam("vid"),
)


# --- engine ---------------------------------------------------------------------------------


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
    finally:
        cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    is_write = bool(connection.get_execution_options().get(_WRITE_OPTION))
    connection.exec_driver_sql("BEGIN IMMEDIATE" if is_write else "BEGIN")


def write_engine(engine: Engine) -> Engine:
    """The same pool, marked so that SQLite begins its transactions with `BEGIN IMMEDIATE`."""
    return engine.execution_options(**{_WRITE_OPTION: True})


# --- errors ---------------------------------------------------------------------------------


class _Retry(Exception):
    """Internal: the transaction lost a race or met a transient error, and may simply be rerun."""


def _sqlstate(error: sa_exc.DBAPIError) -> str | None:
    state = getattr(error.orig, "sqlstate", None)
    return state if isinstance(state, str) else None


@contextmanager
def translate_db_errors(*, may_retry: bool) -> Iterator[None]:
    """Turns SQLAlchemy and driver errors into our family; the statement and its data never leak."""
    try:
        yield
    except AdapterError:
        raise
    except sa_exc.IntegrityError as error:
        if may_retry:
            raise _Retry from error
        raise Conflict(
            [Issue("error", "conflict", "A concurrent write created the same resource")]
        ) from error
    except sa_exc.DBAPIError as error:
        state = _sqlstate(error)
        locked = "database is locked" in str(error.orig) or "database is busy" in str(error.orig)
        if may_retry and (locked or state in _RETRYABLE_SQLSTATES):
            raise _Retry from error
        log.warning("store error %s sqlstate=%s", type(error.orig).__name__, state)
        code: IssueCode = "lock-error" if locked else "transient"
        raise UpstreamUnavailable(
            [Issue("error", code, f"The database is unavailable ({type(error.orig).__name__})")]
        ) from error
    except sa_exc.SQLAlchemyError as error:
        log.warning("store error %s", type(error).__name__)
        raise UpstreamUnavailable(
            [Issue("error", "exception", f"The database failed ({type(error).__name__})")]
        ) from error


# --- helpers --------------------------------------------------------------------------------


def _invalid(text: str, expression: str | None = None) -> InputError:
    return InputError([Issue("error", "value", text, expression=expression)])


def _check_type(resource_type: str) -> str:
    if not _TYPE_RE.match(resource_type):
        raise _invalid(f"Invalid resource type {resource_type!r}")
    return resource_type


def _check_id(resource_id: str, expression: str = "id") -> str:
    if not _ID_RE.match(resource_id):
        raise _invalid("Invalid resource id (1-64 of A-Z, a-z, 0-9, '-', '.')", expression)
    return resource_id


def format_instant(moment: datetime) -> str:
    """FHIR instant in UTC with milliseconds: `2026-11-26T10:15:30.123Z`."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _stored(row: sa.Row[Any]) -> StoredResource:
    return StoredResource(
        resource_type=row.resource_type,
        id=row.id,
        version_id=row.version_id,
        last_updated=row.last_updated,
        resource=jsonio.loads(row.content),
        deleted=row.deleted,
    )


def _versioned(resource: JsonObject, resource_id: str, version_id: int, instant: str) -> JsonObject:
    """A copy with `id` and `meta.versionId/lastUpdated` set; the caller's dict is left alone."""
    meta = resource.get("meta", {})
    if not isinstance(meta, dict):
        raise _invalid("meta must be an object", f"{resource['resourceType']}.meta")
    body: JsonObject = {
        "resourceType": resource["resourceType"],
        "id": resource_id,
        "meta": {**meta, "versionId": str(version_id), "lastUpdated": instant},
    }
    body.update((k, v) for k, v in resource.items() if k not in body)
    return body


class _Current(NamedTuple):
    version_id: int
    deleted: bool


# --- the repository -------------------------------------------------------------------------


class SqlRepository:
    """The embedded FHIR store. See the module docstring for the concurrency rules."""

    def __init__(
        self, engine: Engine, *, clock: Clock | None = None, _connection: Connection | None = None
    ):
        self._engine = engine
        self._write_engine = write_engine(engine)
        self._clock: Clock = clock or SystemClock()
        self._connection = _connection

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock | None = None) -> SqlRepository:
        """Builds the engine. Migrating is the caller's step (`adapter.store.migrate.upgrade`)."""
        return cls(build_engine(settings.database_url, settings.database_schema), clock=clock)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def connection(self) -> Connection | None:
        """The open unit of work's connection (None outside one), so a collaborator such as the
        outbox can write its own rows in the same database transaction. Read-only."""
        return self._connection

    @contextmanager
    def savepoint(self) -> Iterator[SqlRepository]:
        """A nested all-or-nothing step inside an open unit of work (SAVEPOINT)."""
        if self._connection is None:
            raise RuntimeError("savepoint() needs a unit of work")
        with translate_db_errors(may_retry=False):
            nested = self._connection.begin_nested()
        try:
            yield self
        except BaseException:
            with translate_db_errors(may_retry=False):
                nested.rollback()
            raise
        with translate_db_errors(may_retry=False):
            nested.commit()

    def lock(self, key: str) -> None:
        """Serialises conditional writes on the same criteria (two re-deliveries of one referral
        must not both see "no match" and both create). Inside a unit of work only; PostgreSQL takes
        a transaction-scoped advisory lock; SQLite units of work already hold the write lock
        (BEGIN IMMEDIATE), so nothing more is needed there."""
        if self._connection is None:
            raise RuntimeError("lock() needs a unit of work")
        if self._engine.dialect.name == "postgresql":
            digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
            number = int.from_bytes(digest, "big", signed=True)
            with translate_db_errors(may_retry=False):
                self._connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": number})

    def close(self) -> None:
        """Closes the pool. Only the owner of the engine (the app's lifespan) should call this."""
        self._engine.dispose()

    # -- transactions --

    def _write(self, operation: Callable[[Connection], T]) -> T:
        if self._connection is not None:
            with translate_db_errors(may_retry=False):
                return operation(self._connection)
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with (
                    translate_db_errors(may_retry=attempt < WRITE_ATTEMPTS - 1),
                    self._write_engine.begin() as conn,
                ):
                    return operation(conn)
            except _Retry:
                time.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable: the last attempt does not retry")  # pragma: no cover

    def _read(self, operation: Callable[[Connection], T]) -> T:
        if self._connection is not None:
            with translate_db_errors(may_retry=False):
                return operation(self._connection)
        with translate_db_errors(may_retry=False), self._engine.connect() as conn, conn.begin():
            return operation(conn)

    def unit_of_work(self) -> AbstractContextManager[SqlRepository]:
        """All writes inside commit together, or roll back on any exception. Nested calls join."""
        return self._unit_of_work()

    @contextmanager
    def _unit_of_work(self) -> Iterator[SqlRepository]:
        if self._connection is not None:
            yield self
            return
        with translate_db_errors(may_retry=False):
            conn = self._write_engine.connect()
        try:
            with translate_db_errors(may_retry=False):
                transaction = conn.begin()
            try:
                yield SqlRepository(self._engine, clock=self._clock, _connection=conn)
            except BaseException:
                with translate_db_errors(may_retry=False):
                    transaction.rollback()
                raise
            with translate_db_errors(may_retry=False):
                transaction.commit()
        finally:
            with translate_db_errors(may_retry=False):
                conn.close()

    # -- writes --

    def create(self, resource: JsonObject, *, id: str | None = None) -> StoredResource:
        resource_type = self._resource_type_of(resource)
        resource_id = _check_id(id) if id is not None else str(uuid.uuid4())
        stored, _ = self._write(
            lambda conn: self._put(
                conn, resource_type, resource_id, resource, None, must_be_new=True
            )
        )
        return stored

    def update(
        self, resource: JsonObject, *, if_match: int | None = None
    ) -> tuple[StoredResource, bool]:
        resource_type = self._resource_type_of(resource)
        raw_id = resource.get("id")
        if not isinstance(raw_id, str):
            raise InputError(
                [Issue("error", "required", "Update needs the resource id", f"{resource_type}.id")]
            )
        resource_id = _check_id(raw_id, f"{resource_type}.id")
        return self._write(
            lambda conn: self._put(
                conn, resource_type, resource_id, resource, if_match, must_be_new=False
            )
        )

    def delete(
        self, resource_type: str, id: str, *, if_match: int | None = None
    ) -> StoredResource | None:
        """Soft delete: a new tombstone version. Returns None if the resource never existed, and the
        existing tombstone (no new version) if it is already deleted."""
        _check_type(resource_type)
        _check_id(id)
        return self._write(lambda conn: self._delete(conn, resource_type, id, if_match))

    def _now(self) -> datetime:
        now = self._clock.now()
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    @staticmethod
    def _resource_type_of(resource: JsonObject) -> str:
        resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(resource_type, str):
            raise InputError([Issue("error", "required", "The resource has no resourceType")])
        return _check_type(resource_type)

    @staticmethod
    def _current_of(conn: Connection, resource_type: str, resource_id: str) -> _Current | None:
        row = conn.execute(_SELECT_CURRENT, {"rt": resource_type, "rid": resource_id}).first()
        return None if row is None else _Current(int(row.version_id), bool(row.deleted))

    @staticmethod
    def _stale(resource_type: str, if_match: int, current: int | None) -> PreconditionFailed:
        found = "does not exist" if current is None else f"is at version {current}"
        return PreconditionFailed(
            [
                Issue(
                    "error",
                    "conflict",
                    f"If-Match version {if_match} is stale: the {resource_type} {found}",
                )
            ]
        )

    def _put(
        self,
        conn: Connection,
        resource_type: str,
        resource_id: str,
        resource: JsonObject,
        if_match: int | None,
        *,
        must_be_new: bool,
    ) -> tuple[StoredResource, bool]:
        while True:  # loops only when a concurrent writer won the compare-and-set without If-Match
            current = self._current_of(conn, resource_type, resource_id)
            if current is not None and must_be_new and not current.deleted:
                raise Conflict(
                    [Issue("error", "duplicate", f"{resource_type}/{resource_id} already exists")]
                )
            if if_match is not None and (current is None or current.version_id != if_match):
                raise self._stale(
                    resource_type, if_match, None if current is None else current.version_id
                )
            now = self._now()
            version_id = 1 if current is None else current.version_id + 1
            values = {"version_id": version_id, "last_updated": now, "deleted": False}
            if current is None:
                conn.execute(
                    _INSERT_CURRENT, {"resource_type": resource_type, "id": resource_id, **values}
                )
            elif not self._compare_and_set(
                conn, resource_type, resource_id, current.version_id, values
            ):
                if if_match is not None:
                    raise self._stale(resource_type, if_match, None)
                continue
            body = _versioned(resource, resource_id, version_id, format_instant(now))
            self._insert_version(conn, resource_type, resource_id, values, jsonio.dumps(body))
            self._reindex(conn, resource_type, resource_id, body, had_rows=current is not None)
            stored = StoredResource(resource_type, resource_id, version_id, now, body)
            return stored, current is None or bool(current.deleted)

    def _delete(
        self, conn: Connection, resource_type: str, resource_id: str, if_match: int | None
    ) -> StoredResource | None:
        while True:
            current = self._current_of(conn, resource_type, resource_id)
            if if_match is not None and (current is None or current.version_id != if_match):
                raise self._stale(
                    resource_type, if_match, None if current is None else current.version_id
                )
            if current is None:
                return None
            if current.deleted:
                return self._vread(
                    conn, resource_type, resource_id, current.version_id, allow_deleted=True
                )
            now = self._now()
            version_id = current.version_id + 1
            values = {"version_id": version_id, "last_updated": now, "deleted": True}
            if not self._compare_and_set(
                conn, resource_type, resource_id, current.version_id, values
            ):
                if if_match is not None:
                    raise self._stale(resource_type, if_match, None)
                continue
            tombstone = _versioned(
                {"resourceType": resource_type}, resource_id, version_id, format_instant(now)
            )
            self._insert_version(conn, resource_type, resource_id, values, jsonio.dumps(tombstone))
            self._reindex(conn, resource_type, resource_id, None, had_rows=True)
            return StoredResource(
                resource_type, resource_id, version_id, now, tombstone, deleted=True
            )

    @staticmethod
    def _compare_and_set(
        conn: Connection,
        resource_type: str,
        resource_id: str,
        expected: int,
        values: dict[str, Any],
    ) -> bool:
        parameters = {"rt": resource_type, "rid": resource_id, "expected": expected, **values}
        return conn.execute(_COMPARE_AND_SET, parameters).rowcount == 1

    @staticmethod
    def _insert_version(
        conn: Connection, resource_type: str, resource_id: str, values: dict[str, Any], content: str
    ) -> None:
        parameters = {
            "resource_type": resource_type,
            "id": resource_id,
            "content": content,
            **values,
        }
        conn.execute(_INSERT_VERSION, parameters)

    @staticmethod
    def _reindex(
        conn: Connection,
        resource_type: str,
        resource_id: str,
        body: JsonObject | None,
        *,
        had_rows: bool,
    ) -> None:
        if had_rows:
            conn.execute(_DELETE_INDEX_ROWS, {"rt": resource_type, "rid": resource_id})
        if body is None:
            return
        entries = search_index.extract_index_entries(body)
        if entries:
            conn.execute(
                _INSERT_INDEX_ROW,
                [
                    {
                        "resource_type": resource_type,
                        "resource_id": resource_id,
                        "param": e.param,
                        "system": e.system,
                        "value": e.value,
                        "ref_type": e.ref_type,
                        "ref_id": e.ref_id,
                    }
                    for e in entries
                ],
            )

    # -- reads --

    def read(self, resource_type: str, id: str) -> StoredResource:
        _check_type(resource_type)
        _check_id(id)

        def operation(conn: Connection) -> StoredResource:
            row = conn.execute(_READ_CURRENT, {"rt": resource_type, "rid": id}).first()
            if row is None:
                raise NotFound(f"{resource_type}/{id} is not known")
            if row.deleted:
                raise Gone(f"{resource_type}/{id} was deleted")
            return _stored(row)

        return self._read(operation)

    def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource:
        _check_type(resource_type)
        _check_id(id)
        return self._read(
            lambda conn: self._vread(conn, resource_type, id, version_id, allow_deleted=False)
        )

    @staticmethod
    def _vread(
        conn: Connection,
        resource_type: str,
        resource_id: str,
        version_id: int,
        *,
        allow_deleted: bool,
    ) -> StoredResource:
        parameters = {"rt": resource_type, "rid": resource_id, "vid": version_id}
        row = conn.execute(_READ_VERSION, parameters).first()
        if row is None:
            raise NotFound(f"{resource_type}/{resource_id} has no version {version_id}")
        if row.deleted and not allow_deleted:
            raise Gone(f"Version {version_id} of {resource_type}/{resource_id} is a deletion")
        return _stored(row)

    def history(
        self, resource_type: str | None, id: str | None, *, count: int, offset: int
    ) -> HistoryPage:
        """Newest first. Instance history of an unknown resource is 404; type and system history
        may be empty. Deletions appear as versions with `deleted=True`."""
        if count < 0 or offset < 0:
            raise _invalid("_count and offset must not be negative")
        conditions: list[sa.ColumnElement[bool]] = []
        if resource_type is not None:
            conditions.append(_version.resource_type == _check_type(resource_type))
        if id is not None:
            if resource_type is None:
                raise _invalid("Instance history needs a resource type")
            conditions.append(_version.id == _check_id(id))
            order: tuple[sa.ColumnElement[Any], ...] = (_version.version_id.desc(),)
        else:
            order = (
                _version.last_updated.desc(),
                _version.resource_type,
                _version.id,
                _version.version_id.desc(),
            )

        def operation(conn: Connection) -> HistoryPage:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(VERSION_TABLE).where(*conditions)
            )
            total_count = int(total.scalar_one())
            if id is not None and total_count == 0:
                raise NotFound(f"{resource_type}/{id} is not known")
            rows = conn.execute(
                sa.select(VERSION_TABLE)
                .where(*conditions)
                .order_by(*order)
                .limit(count)
                .offset(offset)
            ).all()
            versions = [_stored(row) for row in rows]
            return HistoryPage(versions, total_count, offset + len(versions) < total_count)

        return self._read(operation)

    def count(self, resource_type: str | None = None) -> int:
        conditions: list[sa.ColumnElement[bool]] = [_current.deleted.is_(False)]
        if resource_type is not None:
            conditions.append(_current.resource_type == _check_type(resource_type))
        statement = sa.select(sa.func.count()).select_from(CURRENT_TABLE).where(*conditions)
        return self._read(lambda conn: int(conn.execute(statement).scalar_one()))

    def supported_search_params(self, resource_type: str) -> Sequence[str]:
        return search_index.supported_params(resource_type)

    # -- search --

    def search(self, resource_type: str, query: SearchQuery) -> SearchPage:
        """Repeated parameters AND, values within one parameter OR. Unknown parameters are a 400."""
        _check_type(resource_type)
        if query.count < 0 or query.offset < 0:
            raise _invalid("_count and offset must not be negative")
        conditions = [_current.resource_type == resource_type, _current.deleted.is_(False)]
        conditions += [
            _param_condition(resource_type, param, n) for n, param in enumerate(query.params)
        ]
        statement = (
            sa.select(VERSION_TABLE)
            .join(CURRENT_TABLE, _CURRENT_VERSION_JOIN)
            .where(*conditions)
            .order_by(*_order_by(query.sort))
            .limit(query.count + 1)
            .offset(query.offset)
        )
        count_statement = sa.select(sa.func.count()).select_from(CURRENT_TABLE).where(*conditions)

        def operation(conn: Connection) -> SearchPage:
            rows = conn.execute(statement).all()
            has_next = len(rows) > query.count
            resources = [_stored(row) for row in rows[: query.count]]
            total: int | None = None
            if query.total:
                if query.offset == 0 and not has_next:
                    total = len(resources)
                else:
                    total = int(conn.execute(count_statement).scalar_one())
            return SearchPage(resources, total, has_next)

        return self._read(operation)


# --- search SQL -----------------------------------------------------------------------------


def _order_by(sort: tuple[str, ...]) -> list[sa.ColumnElement[Any]]:
    keys: list[sa.ColumnElement[Any]] = []
    for key in sort or ("_lastUpdated",):
        if key not in _SORTS:
            raise _invalid(f"Unsupported _sort '{key}': use _lastUpdated or _id", "_sort")
        column = _current.last_updated if key.lstrip("-") == "_lastUpdated" else _current.id
        keys.append(column.desc() if key.startswith("-") else column.asc())
    if not any(key.lstrip("-") == "_id" for key in sort):
        keys.append(_current.id.asc())
    return keys


def _unknown_param(resource_type: str, name: str) -> InputError:
    return InputError(
        [
            Issue(
                "error",
                "not-supported",
                f"Unknown search parameter '{name}' for {resource_type}",
                expression=name,
            )
        ]
    )


def _unsupported_modifier(param: SearchParam) -> InputError:
    return InputError(
        [
            Issue(
                "error",
                "not-supported",
                f"Unsupported modifier ':{param.modifier}' on search parameter '{param.name}'",
                expression=param.name,
            )
        ]
    )


@functools.cache
def _index_alias(prefix: str, n: int) -> sa.TableClause:
    """Aliases are built once: making one copies every column, which cost more than the query."""
    return INDEX_TABLE.alias(f"{prefix}{n}")  # type: ignore[return-value]


def _param_condition(resource_type: str, param: SearchParam, n: int) -> sa.ColumnElement[bool]:
    if not param.values:
        raise _invalid(f"Search parameter '{param.name}' has no value", param.name)
    if param.name == "_id":
        if param.modifier is not None:
            raise _unsupported_modifier(param)
        return _current.id.in_(param.values)
    if param.name == "_lastUpdated":
        if param.modifier is not None:
            raise _unsupported_modifier(param)
        criteria = [search_index.parse_date(param.name, value) for value in param.values]
        return sa.or_(*(_date_condition(_current.last_updated, c) for c in criteria))
    definition = search_index.param_definition(resource_type, param.name)
    if definition is None:
        raise _unknown_param(resource_type, param.name)
    # `id IN (subquery)` rather than a correlated EXISTS: both databases then start from the
    # selective index lookup instead of probing the index once per resource of the type.
    index = _index_alias("i", n)

    def matching(*criteria: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
        owners = sa.select(index.c.resource_id).where(
            index.c.resource_type == resource_type, index.c.param == param.name, *criteria
        )
        return _current.id.in_(owners)

    if definition.kind == "token":
        if param.modifier is not None:
            raise _unsupported_modifier(param)
        tokens = [search_index.parse_token(param.name, value) for value in param.values]
        return matching(sa.or_(*(_token_condition(index, t) for t in tokens)))
    if param.modifier == "identifier":
        # The reference carries the identifier itself (logical reference), or points at a
        # resource whose `identifier` matches: Patients with this NHS number, then their referrals.
        tokens = [search_index.parse_token(param.name, value) for value in param.values]
        target = _index_alias("t", n)
        targets = sa.select(target.c.resource_type, target.c.resource_id).where(
            target.c.param == "identifier", sa.or_(*(_token_condition(target, t) for t in tokens))
        )
        logical = sa.or_(*(_token_condition(index, t) for t in tokens))
        return matching(sa.or_(logical, sa.tuple_(index.c.ref_type, index.c.ref_id).in_(targets)))
    if param.modifier is not None and not _TYPE_RE.match(param.modifier):
        raise _unsupported_modifier(param)
    references = [
        search_index.parse_reference_value(param.name, value, param.modifier)
        for value in param.values
    ]
    return matching(
        sa.or_(
            *(
                sa.and_(
                    index.c.ref_id == r.ref_id,
                    *([index.c.ref_type == r.ref_type] if r.ref_type else []),
                )
                for r in references
            )
        )
    )


def _token_condition(
    index: sa.FromClause, token: search_index.TokenCriterion
) -> sa.ColumnElement[bool]:
    conditions: list[sa.ColumnElement[bool]] = []
    if token.value is not None:
        conditions.append(index.c.value == token.value)
    if token.has_system:
        conditions.append(index.c.system == token.system)
    elif token.require_no_system:
        conditions.append(index.c.system.is_(None))
    return sa.and_(*conditions)


def _date_condition(
    column: sa.ColumnElement[datetime], c: search_index.DateCriterion
) -> sa.ColumnElement[bool]:
    """The stored instant is a point, so the prefixes reduce to comparisons with [start, end)."""
    if c.prefix == "eq":
        return sa.and_(column >= c.start, column < c.end)
    if c.prefix == "ne":
        return sa.or_(column < c.start, column >= c.end)
    if c.prefix in ("gt", "sa"):
        return column >= c.end
    if c.prefix in ("lt", "eb"):
        return column < c.start
    if c.prefix == "ge":
        return column >= c.start
    return column < c.end  # le
