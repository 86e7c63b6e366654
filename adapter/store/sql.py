"""The embedded store: `SqlRepository`, the `Repository` protocol on SQLite or PostgreSQL.

This module holds the repository's transactions: the unit of work, savepoints, locks, and the
retry of a write that loses a race. The write path (compare-and-set, version and index rows) is
in `sql_write`, the read path (by id, by version, history, count, search) in `sql_read`; both run
on the connection lent from here. SQLite runs in WAL mode and starts write transactions with
`BEGIN IMMEDIATE` (`sql_engine`), so a writer never fails half-way on a stale snapshot; it waits
(busy timeout) for the lock instead.

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
from typing import Final, TypeVar

from sqlalchemy.engine import Connection, Engine

from adapter.clock import Clock, SystemClock
from adapter.errors import InputError
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.settings import Settings
from adapter.store import search_index
from adapter.store.repository import HistoryPage, SearchPage, SearchQuery, StoredResource
from adapter.store.sql_checks import _check_id, _check_type
from adapter.store.sql_driver import _SQL_ADVISORY_LOCK, _driver_sql
from adapter.store.sql_engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    build_engine,
    validated_schema,
    write_engine,
)
from adapter.store.sql_errors import _Retry, translate_db_errors
from adapter.store.sql_read import (
    _count_statement,
    _history,
    _plan_history,
    _plan_search_statements,
    _read,
    _search,
    _vread,
)
from adapter.store.sql_search import _plan_search
from adapter.store.sql_write import _delete, _put, format_instant

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

    # -- writes (`sql_write`) --

    def create(self, resource: JsonObject, *, id: str | None = None) -> StoredResource:
        resource_type = self._resource_type_of(resource)
        resource_id = _check_id(id) if id is not None else str(uuid.uuid4())
        stored, _ = self._put(resource_type, resource_id, resource, None, must_be_new=True)
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
        return self._put(resource_type, resource_id, resource, if_match, must_be_new=False)

    def _put(
        self,
        resource_type: str,
        resource_id: str,
        resource: JsonObject,
        if_match: int | None,
        *,
        must_be_new: bool,
    ) -> tuple[StoredResource, bool]:
        """Create or update through `sql_write._put`, on this unit of work or a retried one."""
        driver, clock, absent = self._driver, self._clock, self._absent
        return self._write(
            lambda conn: _put(
                conn,
                driver,
                clock,
                absent,
                resource_type,
                resource_id,
                resource,
                if_match,
                must_be_new=must_be_new,
            )
        )

    def delete(
        self, resource_type: str, id: str, *, if_match: int | None = None
    ) -> StoredResource | None:
        """Soft delete: a new tombstone version. Returns None if the resource never existed, and the
        existing tombstone (no new version) if it is already deleted."""
        _check_type(resource_type)
        _check_id(id)
        driver, clock = self._driver, self._clock
        return self._write(lambda conn: _delete(conn, driver, clock, resource_type, id, if_match))

    @staticmethod
    def _resource_type_of(resource: JsonObject) -> str:
        resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(resource_type, str):
            raise InputError([Issue("error", "required", "The resource has no resourceType")])
        return _check_type(resource_type)

    # -- reads (`sql_read`) --

    def read(self, resource_type: str, id: str) -> StoredResource:
        _check_type(resource_type)
        _check_id(id)
        driver = self._driver
        absent = self._absent if self._connection is not None else None
        return self._read(lambda conn: _read(conn, driver, resource_type, id, absent))

    def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource:
        _check_type(resource_type)
        _check_id(id)
        driver = self._driver
        return self._read(
            lambda conn: _vread(conn, driver, resource_type, id, version_id, allow_deleted=False)
        )

    def history(
        self, resource_type: str | None, id: str | None, *, count: int, offset: int
    ) -> HistoryPage:
        """Newest first. Instance history of an unknown resource is 404; type and system history
        may be empty. Deletions appear as versions with `deleted=True`."""
        plan = _plan_history(resource_type, id, count=count, offset=offset)
        return self._read(lambda conn: _history(conn, plan))

    def count(self, resource_type: str | None = None) -> int:
        statement = _count_statement(resource_type)
        return self._read(lambda conn: int(conn.execute(statement).scalar_one()))

    def supported_search_params(self, resource_type: str) -> Sequence[str]:
        return search_index.supported_params(resource_type)

    def search(self, resource_type: str, query: SearchQuery) -> SearchPage:
        """Repeated parameters AND, values within one parameter OR. Unknown parameters are a 400."""
        driver = self._driver
        plan = _plan_search_statements(driver, resource_type, query)
        return self._read(lambda conn: _search(conn, driver, plan, query))
