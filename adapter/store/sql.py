"""The embedded store: `SqlRepository`, the `Repository` protocol on SQLite or PostgreSQL.

Writes are compare-and-set on `resource_current.version_id` (`UPDATE ... WHERE version_id =
:expected`, then check the row count), so two writers holding the same If-Match cannot both win on
either database. The version row and the search index rows are written in the same transaction.
SQLite runs in WAL mode and starts write transactions with `BEGIN IMMEDIATE` (`sql_engine`), so a
writer never fails half-way on a stale snapshot; it waits (busy timeout) for the lock instead.

The hot statements (writes, read by id, searches) run as driver SQL on the cursor of the same
SQLAlchemy connection (`sql_driver`); searches are planned and compiled in `sql_search`. Most writes
take one statement for the current row, and index rows are only written where they changed.

Every SQLAlchemy or driver error is translated into the `AdapterError` family by
`translate_db_errors` (`sql_errors`). Create one `SqlRepository` (one engine and pool) per process
and share it between threads; the repository yielded by `unit_of_work()` holds one connection and
belongs to one thread. The names listed in `__all__` stay importable from here.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, Final, NamedTuple, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from adapter.clock import Clock, SystemClock
from adapter.errors import (
    Conflict,
    Gone,
    InputError,
    NotFound,
    PreconditionFailed,
)
from adapter.fhir import jsonio
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.settings import Settings
from adapter.store import search_index
from adapter.store.models import CURRENT_TABLE, VERSION_TABLE
from adapter.store.repository import (
    HistoryPage,
    SearchPage,
    SearchQuery,
    StoredResource,
)
from adapter.store.sql_checks import _check_id, _check_type, _invalid
from adapter.store.sql_driver import (
    _SQL_ADVISORY_LOCK,
    _SQL_BUMP_CURRENT,
    _SQL_BUMP_CURRENT_IF_MATCH,
    _SQL_COMPARE_AND_SET,
    _SQL_DELETE_INDEX_ROW,
    _SQL_DELETE_INDEX_ROWS,
    _SQL_INSERT_CURRENT_IF_ABSENT,
    _SQL_INSERT_INDEX_ROW,
    _SQL_INSERT_VERSION,
    _SQL_READ_CURRENT,
    _SQL_READ_VERSION,
    _SQL_SELECT_CURRENT,
    _SQL_SELECT_INDEX_ROWS,
    _driver_sql,
)
from adapter.store.sql_engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    build_engine,
    validated_schema,
    write_engine,
)
from adapter.store.sql_errors import _Retry, translate_db_errors
from adapter.store.sql_search import _plan_search

# Names other modules import from here; each lives in the module that owns its concept.
__all__ = [
    "SQLITE_BUSY_TIMEOUT_MS",
    "WRITE_ATTEMPTS",
    "SqlRepository",
    "_driver_sql",
    "_plan_search",
    "build_engine",
    "format_instant",
    "translate_db_errors",
    "validated_schema",
    "write_engine",
]


T = TypeVar("T")

#: Attempts of one write outside a unit of work when it loses a race or meets a transient error.
WRITE_ATTEMPTS: Final = 5

_current = CURRENT_TABLE.c
_version = VERSION_TABLE.c

# --- helpers --------------------------------------------------------------------------------


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


#: One search index row as compared between versions: (param, system, value, ref_type, ref_id).
_IndexKey = tuple[str, str | None, str | None, str | None, str | None]


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
        self._driver = _driver_sql(engine.dialect)
        self._savepoint_depth = 0
        #: (type, id) this unit of work read as never stored: an update of one tries the insert
        #: first instead of the in-place bump. Only the order of two statements depends on it; a
        #: stale entry (a concurrent insert) is settled by the general path, as without it.
        self._absent: set[tuple[str, str]] = set()

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
        # Plain SAVEPOINT statements on the driver: a bulk batch takes one per unit, and
        # SQLAlchemy's nested-transaction objects cost several times the statements themselves.
        # Names are by depth (reused names are fine: ROLLBACK TO finds the innermost).
        conn, driver = self._connection, self._driver
        self._savepoint_depth += 1
        name = f"adapter_sp_{self._savepoint_depth}"
        try:
            with translate_db_errors(may_retry=False):
                driver.execute(conn, f"SAVEPOINT {name}", ())
            try:
                yield self
            except BaseException:
                with translate_db_errors(may_retry=False):
                    driver.execute(conn, f"ROLLBACK TO SAVEPOINT {name}", ())
                    driver.execute(conn, f"RELEASE SAVEPOINT {name}", ())
                raise
            with translate_db_errors(may_retry=False):
                driver.execute(conn, f"RELEASE SAVEPOINT {name}", ())
        finally:
            self._savepoint_depth -= 1

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
                self._driver.execute(self._connection, _SQL_ADVISORY_LOCK, (number,))

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

    def _current_of(
        self, conn: Connection, resource_type: str, resource_id: str
    ) -> _Current | None:
        rows = self._driver.execute(conn, _SQL_SELECT_CURRENT, (resource_type, resource_id))
        return None if not rows else _Current(int(rows[0][0]), bool(rows[0][1]))

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
        """Most writes touch the current row with one statement: an update of a live resource
        bumps its version in place (`UPDATE ... RETURNING`: read and compare-and-set at once), and
        a new resource is inserted if its id is free (tried first when this unit of work has just
        read the id as never stored, saving the bump that would find nothing). Anything else (a taken id on create, a
        deleted resource, a stale If-Match, a lost race) falls to the general path, which decides."""
        if not isinstance(resource.get("meta", {}), dict):  # before any row changes
            raise _invalid("meta must be an object", f"{resource_type}.meta")
        driver = self._driver
        now = self._now()
        known_absent = (resource_type, resource_id) in self._absent
        if known_absent:
            self._absent.discard((resource_type, resource_id))
        if not must_be_new and not known_absent:
            live = driver.flag(False)
            rows = (
                driver.execute(
                    conn, _SQL_BUMP_CURRENT, (driver.instant(now), resource_type, resource_id, live)
                )
                if if_match is None
                else driver.execute(
                    conn,
                    _SQL_BUMP_CURRENT_IF_MATCH,
                    (driver.instant(now), resource_type, resource_id, live, if_match),
                )
            )
            if rows:
                version_id = int(rows[0][0])
                stored = self._write_version(
                    conn, resource_type, resource_id, resource, version_id, now, is_new=False
                )
                return stored, False
        if if_match is None and self._insert_current(conn, resource_type, resource_id, now):
            stored = self._write_version(
                conn, resource_type, resource_id, resource, 1, now, is_new=True
            )
            return stored, True
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
            if current is None:
                if not self._insert_current(conn, resource_type, resource_id, now):
                    continue
                stored = self._write_version(
                    conn, resource_type, resource_id, resource, 1, now, is_new=True
                )
                return stored, True
            version_id = current.version_id + 1
            if not self._compare_and_set(
                conn, resource_type, resource_id, current.version_id, version_id, now, deleted=False
            ):
                if if_match is not None:
                    raise self._stale(resource_type, if_match, None)
                continue
            stored = self._write_version(
                conn, resource_type, resource_id, resource, version_id, now, is_new=False
            )
            return stored, current.deleted

    def _write_version(
        self,
        conn: Connection,
        resource_type: str,
        resource_id: str,
        resource: JsonObject,
        version_id: int,
        now: datetime,
        *,
        is_new: bool,
    ) -> StoredResource:
        """The version row and the index rows of a version whose current row is already written."""
        body = _versioned(resource, resource_id, version_id, format_instant(now))
        self._insert_version(
            conn, resource_type, resource_id, version_id, now, jsonio.dumps(body), deleted=False
        )
        self._reindex(conn, resource_type, resource_id, body, had_rows=not is_new)
        return StoredResource(resource_type, resource_id, version_id, now, body)

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
            if not self._compare_and_set(
                conn, resource_type, resource_id, current.version_id, version_id, now, deleted=True
            ):
                if if_match is not None:
                    raise self._stale(resource_type, if_match, None)
                continue
            tombstone = _versioned(
                {"resourceType": resource_type}, resource_id, version_id, format_instant(now)
            )
            self._insert_version(
                conn,
                resource_type,
                resource_id,
                version_id,
                now,
                jsonio.dumps(tombstone),
                deleted=True,
            )
            self._reindex(conn, resource_type, resource_id, None, had_rows=True)
            return StoredResource(
                resource_type, resource_id, version_id, now, tombstone, deleted=True
            )

    def _insert_current(
        self, conn: Connection, resource_type: str, resource_id: str, now: datetime
    ) -> bool:
        """Version 1 of a new resource; False (nothing written) if the id is already taken."""
        driver = self._driver
        parameters = (resource_type, resource_id, driver.instant(now), driver.flag(False))
        return driver.execute_count(conn, _SQL_INSERT_CURRENT_IF_ABSENT, parameters) == 1

    def _compare_and_set(
        self,
        conn: Connection,
        resource_type: str,
        resource_id: str,
        expected: int,
        version_id: int,
        now: datetime,
        *,
        deleted: bool,
    ) -> bool:
        driver = self._driver
        parameters = (
            version_id,
            driver.instant(now),
            driver.flag(deleted),
            resource_type,
            resource_id,
            expected,
        )
        return driver.execute_count(conn, _SQL_COMPARE_AND_SET, parameters) == 1

    def _insert_version(
        self,
        conn: Connection,
        resource_type: str,
        resource_id: str,
        version_id: int,
        now: datetime,
        content: str,
        *,
        deleted: bool,
    ) -> None:
        driver = self._driver
        parameters = (
            resource_type,
            resource_id,
            version_id,
            driver.instant(now),
            driver.flag(deleted),
            content,
        )
        driver.execute(conn, _SQL_INSERT_VERSION, parameters)

    def _reindex(
        self,
        conn: Connection,
        resource_type: str,
        resource_id: str,
        body: JsonObject | None,
        *,
        had_rows: bool,
    ) -> None:
        """Brings the index rows in line with `body` (None: no rows, the resource is deleted).

        Rows already right are left alone, so an update that changes no searchable value writes
        nothing here, and one that changes a status rewrites that row only.
        """
        driver = self._driver
        if body is None:
            if had_rows:
                driver.execute(conn, _SQL_DELETE_INDEX_ROWS, (resource_id, resource_type))
            return
        wanted: dict[_IndexKey, None] = {
            (e.param, e.system, e.value, e.ref_type, e.ref_id): None
            for e in search_index.extract_index_entries(body)
        }
        if had_rows:
            stale: list[tuple[Any]] = []
            for row_id, *key in driver.execute(
                conn, _SQL_SELECT_INDEX_ROWS, (resource_id, resource_type)
            ):
                try:
                    del wanted[cast(_IndexKey, tuple(key))]
                except KeyError:  # not wanted any more, or a duplicate of a row already kept
                    stale.append((row_id,))
            if stale:
                driver.execute_many(conn, _SQL_DELETE_INDEX_ROW, stale)
        if wanted:
            driver.execute_many(
                conn,
                _SQL_INSERT_INDEX_ROW,
                [(resource_type, resource_id, *key) for key in wanted],
            )

    # -- reads --

    def read(self, resource_type: str, id: str) -> StoredResource:
        _check_type(resource_type)
        _check_id(id)
        driver = self._driver

        def operation(conn: Connection) -> StoredResource:
            rows = driver.execute(conn, _SQL_READ_CURRENT, (resource_type, id))
            if not rows:
                if self._connection is not None:
                    self._absent.add((resource_type, id))
                raise NotFound(f"{resource_type}/{id} is not known")
            stored = driver.stored(rows[0])
            if stored.deleted:
                raise Gone(f"{resource_type}/{id} was deleted")
            return stored

        return self._read(operation)

    def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource:
        _check_type(resource_type)
        _check_id(id)
        return self._read(
            lambda conn: self._vread(conn, resource_type, id, version_id, allow_deleted=False)
        )

    def _vread(
        self,
        conn: Connection,
        resource_type: str,
        resource_id: str,
        version_id: int,
        *,
        allow_deleted: bool,
    ) -> StoredResource:
        rows = self._driver.execute(
            conn, _SQL_READ_VERSION, (resource_type, resource_id, version_id)
        )
        if not rows:
            raise NotFound(f"{resource_type}/{resource_id} has no version {version_id}")
        stored = self._driver.stored(rows[0])
        if stored.deleted and not allow_deleted:
            raise Gone(f"Version {version_id} of {resource_type}/{resource_id} is a deletion")
        return stored

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
        shape, values = _plan_search(resource_type, query)
        driver = self._driver
        select, count = driver.search_statements(shape)

        def operation(conn: Connection) -> SearchPage:
            rows = driver.query(conn, select, values)
            has_next = len(rows) > query.count
            resources = [driver.stored(row) for row in rows[: query.count]]
            total: int | None = None
            if query.total:
                if query.offset == 0 and not has_next:
                    total = len(resources)
                else:
                    total = int(driver.query(conn, count, values)[0][0])
            return SearchPage(resources, total, has_next)

        return self._read(operation)
