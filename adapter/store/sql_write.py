"""The embedded store's write path: one resource version written by compare-and-set.

A write is compare-and-set on `resource_current.version_id` (`UPDATE ... WHERE version_id =
:expected`, then check the row count), so two writers holding the same If-Match cannot both win on
either database. The version row and the search index rows go in the same transaction, which the
caller (`SqlRepository` in `sql`) holds; every function here takes its connection and its
`_DriverSql` (`sql_driver`) and runs driver SQL only. Most writes take one statement for the
current row, and index rows are only written where they changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy.engine import Connection

from adapter.clock import Clock
from adapter.errors import Conflict, PreconditionFailed
from adapter.fhir import jsonio
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.store import search_index
from adapter.store.repository import StoredResource
from adapter.store.sql_checks import _invalid
from adapter.store.sql_driver import (
    _SQL_BUMP_CURRENT,
    _SQL_BUMP_CURRENT_IF_MATCH,
    _SQL_COMPARE_AND_SET,
    _SQL_DELETE_INDEX_ROW,
    _SQL_DELETE_INDEX_ROWS,
    _SQL_INSERT_CURRENT_IF_ABSENT,
    _SQL_INSERT_INDEX_ROW,
    _SQL_INSERT_VERSION,
    _SQL_SELECT_CURRENT,
    _SQL_SELECT_INDEX_ROWS,
    _DriverSql,
)
from adapter.store.sql_read import _vread


def format_instant(moment: datetime) -> str:
    """FHIR instant in UTC with milliseconds: `2026-11-26T10:15:30.123Z`."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _now(clock: Clock) -> datetime:
    """The clock's time cut to milliseconds, the precision `meta.lastUpdated` carries."""
    now = clock.now()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


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


def _current_of(
    conn: Connection, driver: _DriverSql, resource_type: str, resource_id: str
) -> _Current | None:
    rows = driver.execute(conn, _SQL_SELECT_CURRENT, (resource_type, resource_id))
    return None if not rows else _Current(int(rows[0][0]), bool(rows[0][1]))


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
    conn: Connection,
    driver: _DriverSql,
    clock: Clock,
    absent: set[tuple[str, str]],
    resource_type: str,
    resource_id: str,
    resource: JsonObject,
    if_match: int | None,
    *,
    must_be_new: bool,
) -> tuple[StoredResource, bool]:
    """Most writes touch the current row with one statement: an update of a live resource
    bumps its version in place (`UPDATE ... RETURNING`: read and compare-and-set at once), and
    a new resource is inserted if its id is free (tried first when the unit of work has just
    read the id as never stored, i.e. it is in `absent`, saving the bump that would find
    nothing). Anything else (a taken id on create, a deleted resource, a stale If-Match, a lost
    race) falls to the general path, which decides."""
    if not isinstance(resource.get("meta", {}), dict):  # before any row changes
        raise _invalid("meta must be an object", f"{resource_type}.meta")
    now = _now(clock)
    known_absent = (resource_type, resource_id) in absent
    if known_absent:
        absent.discard((resource_type, resource_id))
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
            stored = _write_version(
                conn, driver, resource_type, resource_id, resource, version_id, now, is_new=False
            )
            return stored, False
    if if_match is None and _insert_current(conn, driver, resource_type, resource_id, now):
        stored = _write_version(
            conn, driver, resource_type, resource_id, resource, 1, now, is_new=True
        )
        return stored, True
    while True:  # loops only when a concurrent writer won the compare-and-set without If-Match
        current = _current_of(conn, driver, resource_type, resource_id)
        if current is not None and must_be_new and not current.deleted:
            raise Conflict(
                [Issue("error", "duplicate", f"{resource_type}/{resource_id} already exists")]
            )
        if if_match is not None and (current is None or current.version_id != if_match):
            raise _stale(resource_type, if_match, None if current is None else current.version_id)
        now = _now(clock)
        if current is None:
            if not _insert_current(conn, driver, resource_type, resource_id, now):
                continue
            stored = _write_version(
                conn, driver, resource_type, resource_id, resource, 1, now, is_new=True
            )
            return stored, True
        moved_to = _next_version(
            conn, driver, resource_type, resource_id, current, now, if_match, deleted=False
        )
        if moved_to is None:
            continue
        stored = _write_version(
            conn, driver, resource_type, resource_id, resource, moved_to, now, is_new=False
        )
        return stored, current.deleted


def _write_version(
    conn: Connection,
    driver: _DriverSql,
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
    _insert_version(
        conn, driver, resource_type, resource_id, version_id, now, jsonio.dumps(body), deleted=False
    )
    _reindex(conn, driver, resource_type, resource_id, body, had_rows=not is_new)
    return StoredResource(resource_type, resource_id, version_id, now, body)


def _delete(
    conn: Connection,
    driver: _DriverSql,
    clock: Clock,
    resource_type: str,
    resource_id: str,
    if_match: int | None,
) -> StoredResource | None:
    """Soft delete: a new tombstone version, its index rows removed. None if the resource never
    existed; the existing tombstone (no new version) if it is already deleted."""
    while True:
        current = _current_of(conn, driver, resource_type, resource_id)
        if if_match is not None and (current is None or current.version_id != if_match):
            raise _stale(resource_type, if_match, None if current is None else current.version_id)
        if current is None:
            return None
        if current.deleted:
            return _vread(
                conn, driver, resource_type, resource_id, current.version_id, allow_deleted=True
            )
        now = _now(clock)
        version_id = _next_version(
            conn, driver, resource_type, resource_id, current, now, if_match, deleted=True
        )
        if version_id is None:
            continue
        tombstone = _versioned(
            {"resourceType": resource_type}, resource_id, version_id, format_instant(now)
        )
        _insert_version(
            conn,
            driver,
            resource_type,
            resource_id,
            version_id,
            now,
            jsonio.dumps(tombstone),
            deleted=True,
        )
        _reindex(conn, driver, resource_type, resource_id, None, had_rows=True)
        return StoredResource(resource_type, resource_id, version_id, now, tombstone, deleted=True)


def _next_version(
    conn: Connection,
    driver: _DriverSql,
    resource_type: str,
    resource_id: str,
    current: _Current,
    now: datetime,
    if_match: int | None,
    *,
    deleted: bool,
) -> int | None:
    """The version the current row was moved to from `current`; None when a concurrent writer
    moved it first (read again and retry), or a 412 when the caller's If-Match is now stale."""
    version_id = current.version_id + 1
    if _compare_and_set(
        conn,
        driver,
        resource_type,
        resource_id,
        current.version_id,
        version_id,
        now,
        deleted=deleted,
    ):
        return version_id
    if if_match is not None:
        raise _stale(resource_type, if_match, None)
    return None


def _insert_current(
    conn: Connection, driver: _DriverSql, resource_type: str, resource_id: str, now: datetime
) -> bool:
    """Version 1 of a new resource; False (nothing written) if the id is already taken."""
    parameters = (resource_type, resource_id, driver.instant(now), driver.flag(False))
    return driver.execute_count(conn, _SQL_INSERT_CURRENT_IF_ABSENT, parameters) == 1


def _compare_and_set(
    conn: Connection,
    driver: _DriverSql,
    resource_type: str,
    resource_id: str,
    expected: int,
    version_id: int,
    now: datetime,
    *,
    deleted: bool,
) -> bool:
    """Moves the current row from version `expected` to `version_id`; False if another writer
    moved it first (no row matched)."""
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
    conn: Connection,
    driver: _DriverSql,
    resource_type: str,
    resource_id: str,
    version_id: int,
    now: datetime,
    content: str,
    *,
    deleted: bool,
) -> None:
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
    conn: Connection,
    driver: _DriverSql,
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
