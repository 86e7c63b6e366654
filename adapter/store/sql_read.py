"""The embedded store's read path: what `SqlRepository` (`sql`) answers without writing.

Read by id, read by version, history, count and search. Each name is planned (and its arguments
checked, a 400 before any database work) outside the connection, then run on the connection the
repository lends it. Read by id, by version and search run as driver SQL (`sql_driver`, searches
planned in `sql_search`); history and count are rarer and stay SQLAlchemy Core.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from adapter.errors import Gone, NotFound
from adapter.fhir import jsonio
from adapter.store.models import CURRENT_TABLE, VERSION_TABLE
from adapter.store.repository import HistoryPage, SearchPage, SearchQuery, StoredResource
from adapter.store.sql_checks import _check_id, _check_type, _invalid
from adapter.store.sql_driver import _SQL_READ_CURRENT, _SQL_READ_VERSION, _Compiled, _DriverSql
from adapter.store.sql_search import _plan_search

_current = CURRENT_TABLE.c
_version = VERSION_TABLE.c


def _stored(row: sa.Row[Any]) -> StoredResource:
    return StoredResource(
        resource_type=row.resource_type,
        id=row.id,
        version_id=row.version_id,
        last_updated=row.last_updated,
        resource=jsonio.loads(row.content),
        deleted=row.deleted,
    )


def _read(
    conn: Connection,
    driver: _DriverSql,
    resource_type: str,
    resource_id: str,
    absent: set[tuple[str, str]] | None,
) -> StoredResource:
    """The current version. An id never stored is noted in `absent` (the unit of work's set, None
    outside one), so a following update of it tries the insert first (`sql_write._put`)."""
    rows = driver.execute(conn, _SQL_READ_CURRENT, (resource_type, resource_id))
    if not rows:
        if absent is not None:
            absent.add((resource_type, resource_id))
        raise NotFound(f"{resource_type}/{resource_id} is not known")
    stored = driver.stored(rows[0])
    if stored.deleted:
        raise Gone(f"{resource_type}/{resource_id} was deleted")
    return stored


def _vread(
    conn: Connection,
    driver: _DriverSql,
    resource_type: str,
    resource_id: str,
    version_id: int,
    *,
    allow_deleted: bool,
) -> StoredResource:
    rows = driver.execute(conn, _SQL_READ_VERSION, (resource_type, resource_id, version_id))
    if not rows:
        raise NotFound(f"{resource_type}/{resource_id} has no version {version_id}")
    stored = driver.stored(rows[0])
    if stored.deleted and not allow_deleted:
        raise Gone(f"Version {version_id} of {resource_type}/{resource_id} is a deletion")
    return stored


class _HistoryPlan(NamedTuple):
    conditions: list[sa.ColumnElement[bool]]
    order: tuple[sa.ColumnElement[Any], ...]
    #: "Type/id" of an instance history (404 when it has no versions); None for type or system.
    instance: str | None
    limit: int
    offset: int


def _plan_history(
    resource_type: str | None, id: str | None, *, count: int, offset: int
) -> _HistoryPlan:
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
    instance = None if id is None else f"{resource_type}/{id}"
    return _HistoryPlan(conditions, order, instance, count, offset)


def _history(conn: Connection, plan: _HistoryPlan) -> HistoryPage:
    total = conn.execute(
        sa.select(sa.func.count()).select_from(VERSION_TABLE).where(*plan.conditions)
    )
    total_count = int(total.scalar_one())
    if plan.instance is not None and total_count == 0:
        raise NotFound(f"{plan.instance} is not known")
    rows = conn.execute(
        sa.select(VERSION_TABLE)
        .where(*plan.conditions)
        .order_by(*plan.order)
        .limit(plan.limit)
        .offset(plan.offset)
    ).all()
    versions = [_stored(row) for row in rows]
    return HistoryPage(versions, total_count, plan.offset + len(versions) < total_count)


def _count_statement(resource_type: str | None) -> sa.Select[int]:
    """Live (not deleted) resources, of one type or of all."""
    conditions: list[sa.ColumnElement[bool]] = [_current.deleted.is_(False)]
    if resource_type is not None:
        conditions.append(_current.resource_type == _check_type(resource_type))
    return sa.select(sa.func.count()).select_from(CURRENT_TABLE).where(*conditions)


class _SearchPlan(NamedTuple):
    select: _Compiled
    total: _Compiled
    values: dict[str, Any]


def _plan_search_statements(
    driver: _DriverSql, resource_type: str, query: SearchQuery
) -> _SearchPlan:
    _check_type(resource_type)
    if query.count < 0 or query.offset < 0:
        raise _invalid("_count and offset must not be negative")
    shape, values = _plan_search(resource_type, query)
    select, count = driver.search_statements(shape)
    return _SearchPlan(select, count, values)


def _search(
    conn: Connection, driver: _DriverSql, plan: _SearchPlan, query: SearchQuery
) -> SearchPage:
    """One page, fetched one row long to learn whether a next page exists; the total is counted
    only when asked for and the page alone cannot tell it."""
    rows = driver.query(conn, plan.select, plan.values)
    has_next = len(rows) > query.count
    resources = [driver.stored(row) for row in rows[: query.count]]
    total: int | None = None
    if query.total:
        if query.offset == 0 and not has_next:
            total = len(resources)
        else:
            total = int(driver.query(conn, plan.total, plan.values)[0][0])
    return SearchPage(resources, total, has_next)
