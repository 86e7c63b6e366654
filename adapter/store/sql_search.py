"""Search SQL of the embedded store: a query planned as shape and values, compiled once per shape.

`_plan_search` checks a query and splits it into a hashable shape and its bind values;
`_build_search` turns a shape into the page and count statements, which `_DriverSql` compiles once
per dialect and caches. SQLite has no statistics, so `_build_search` steers its plan itself.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from datetime import datetime
from typing import Any, Final, cast

import sqlalchemy as sa

from adapter.errors import InputError
from adapter.issue import Issue
from adapter.store import search_index
from adapter.store.models import CURRENT_TABLE, INDEX_TABLE, VERSION_TABLE
from adapter.store.repository import SearchParam, SearchQuery
from adapter.store.sql_checks import _TYPE_RE, _invalid

_SORTS: Final = {"_lastUpdated", "-_lastUpdated", "_id", "-_id"}

_current = CURRENT_TABLE.c
_version = VERSION_TABLE.c

_CURRENT_VERSION_JOIN: Final = sa.and_(
    _current.resource_type == _version.resource_type,
    _current.id == _version.id,
    _current.version_id == _version.version_id,
)
#: The columns every version read returns, in the order `_DriverSql.stored` expects.
_VERSION_COLUMNS: Final = (
    _version.resource_type,
    _version.id,
    _version.version_id,
    _version.last_updated,
    _version.deleted,
    _version.content,
)

# A search is planned in two parts: its *shape* (which parameters, how many values, which kind
# of token or date prefix; hashable, no values) and its *values* (bind parameters named after their
# place in the shape). Statements are built and compiled once per shape and dialect; building one
# through Core cost more than running it. The names: `rt`, `lim`, `off`, and per parameter j
# `p{j}_param`, then per value k `p{j}_{k}` (ids), `p{j}_{k}_value`/`_system` (tokens),
# `p{j}_{k}_id`/`_type` (references), `p{j}_{k}_start`/`_end` (dates).

#: (kind, detail, is_selective) of one search parameter; see `_plan_param`. Selective parameters
#: (`_id`, identifiers, references) match a handful of resources out of many.
_ParamShape = tuple[str, Hashable, bool]
#: (parameter shapes, sort keys)
_SearchShape = tuple[tuple[_ParamShape, ...], tuple[str, ...]]


def _plan_search(resource_type: str, query: SearchQuery) -> tuple[_SearchShape, dict[str, Any]]:
    """Checks the query (same 400s as ever, in the same order) and splits it into shape and values."""
    values: dict[str, Any] = {"rt": resource_type, "lim": query.count + 1, "off": query.offset}
    params = tuple(
        _plan_param(resource_type, param, j, values) for j, param in enumerate(query.params)
    )
    for key in query.sort:
        if key not in _SORTS:
            raise _invalid(f"Unsupported _sort '{key}': use _lastUpdated or _id", "_sort")
    return (params, tuple(query.sort)), values


def _plan_param(
    resource_type: str, param: SearchParam, j: int, values: dict[str, Any]
) -> _ParamShape:
    if not param.values:
        raise _invalid(f"Search parameter '{param.name}' has no value", param.name)
    p = f"p{j}"
    if param.name == "_id":
        if param.modifier is not None:
            raise _unsupported_modifier(param)
        for k, value in enumerate(param.values):
            values[f"{p}_{k}"] = value
        return ("_id", len(param.values), True)
    if param.name == "_lastUpdated":
        if param.modifier is not None:
            raise _unsupported_modifier(param)
        dates = [search_index.parse_date(param.name, value) for value in param.values]
        for k, date in enumerate(dates):
            values[f"{p}_{k}_start"], values[f"{p}_{k}_end"] = date.start, date.end
        return ("_lastUpdated", tuple(date.prefix for date in dates), False)
    definition = search_index.param_definition(resource_type, param.name)
    if definition is None:
        raise _unknown_param(resource_type, param.name)
    values[f"{p}_param"] = param.name
    if definition.kind == "token" or param.modifier == "identifier":
        if definition.kind == "token" and param.modifier is not None:
            raise _unsupported_modifier(param)
        tokens = [search_index.parse_token(param.name, value) for value in param.values]
        flags = []
        for k, token in enumerate(tokens):
            values[f"{p}_{k}_value"], values[f"{p}_{k}_system"] = token.value, token.system
            flags.append((token.value is not None, token.has_system, token.require_no_system))
        if definition.kind == "token":
            return ("token", tuple(flags), param.name == "identifier")
        return ("identifier", tuple(flags), True)
    if param.modifier is not None and not _TYPE_RE.match(param.modifier):
        raise _unsupported_modifier(param)
    references = [
        search_index.parse_reference_value(param.name, value, param.modifier)
        for value in param.values
    ]
    for k, reference in enumerate(references):
        values[f"{p}_{k}_id"], values[f"{p}_{k}_type"] = reference.ref_id, reference.ref_type
    return ("reference", tuple(bool(reference.ref_type) for reference in references), True)


def _build_search(shape: _SearchShape, dialect_name: str) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """The page statement and the count statement of one shape, every value a bind parameter.

    SQLite has no statistics, and for `ORDER BY last_updated LIMIT n` it walked the type's whole
    `(resource_type, last_updated)` index testing each row against the match (0.24 ms per
    conditional-create lookup at 2,000 resources, growing with the table). When a parameter is
    selective, `+last_updated` (SQLite's documented no-op that disqualifies an index) makes it
    fetch the few matches by primary key and sort them instead (0.03 ms, flat).
    """
    params, sort = shape
    sort_by_expression = dialect_name == "sqlite" and any(param[2] for param in params)
    conditions = [_current.resource_type == sa.bindparam("rt"), _current.deleted.is_(False)]
    conditions += [_shaped_condition(j, param) for j, param in enumerate(params)]
    select = (
        sa.select(*_VERSION_COLUMNS)
        .join(CURRENT_TABLE, _CURRENT_VERSION_JOIN)
        .where(*conditions)
        .order_by(*_order_by(sort, sort_by_expression=sort_by_expression))
        .limit(sa.bindparam("lim"))
        .offset(sa.bindparam("off"))
    )
    count = sa.select(sa.func.count()).select_from(CURRENT_TABLE).where(*conditions)
    return select, count


def _order_by(sort: tuple[str, ...], *, sort_by_expression: bool) -> list[sa.ColumnElement[Any]]:
    """Keys already checked by `_plan_search`; `_id` breaks ties so pages are stable."""
    last_updated: sa.ColumnElement[Any] = (
        sa.literal_column(f"+{CURRENT_TABLE.name}.{_current.last_updated.name}")
        if sort_by_expression
        else _current.last_updated
    )
    keys: list[sa.ColumnElement[Any]] = []
    for key in sort or ("_lastUpdated",):
        column = last_updated if key.lstrip("-") == "_lastUpdated" else _current.id
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


def _shaped_condition(j: int, shape: _ParamShape) -> sa.ColumnElement[bool]:
    p = f"p{j}"
    kind, detail, _ = shape
    if kind == "_id":
        count = cast(int, detail)
        return _current.id.in_([sa.bindparam(f"{p}_{k}") for k in range(count)])
    if kind == "_lastUpdated":
        prefixes = cast(tuple[str, ...], detail)
        return sa.or_(
            *(
                _date_condition(_current.last_updated, prefix, f"{p}_{k}")
                for k, prefix in enumerate(prefixes)
            )
        )
    flags = cast(tuple[Any, ...], detail)
    # `id IN (subquery)` rather than a correlated EXISTS: both databases then start from the
    # selective index lookup instead of probing the index once per resource of the type.
    index = _index_alias("i", j)

    def matching(*criteria: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
        owners = sa.select(index.c.resource_id).where(
            index.c.resource_type == sa.bindparam("rt"),
            index.c.param == sa.bindparam(f"{p}_param"),
            *criteria,
        )
        return _current.id.in_(owners)

    if kind == "token":
        return matching(
            sa.or_(*(_token_condition(index, f"{p}_{k}", f) for k, f in enumerate(flags)))
        )
    if kind == "identifier":
        # The reference carries the identifier itself (logical reference), or points at a
        # resource whose `identifier` matches: Patients with this NHS number, then their referrals.
        target = _index_alias("t", j)
        targets = sa.select(target.c.resource_type, target.c.resource_id).where(
            target.c.param == sa.literal("identifier"),
            sa.or_(*(_token_condition(target, f"{p}_{k}", f) for k, f in enumerate(flags))),
        )
        logical = sa.or_(*(_token_condition(index, f"{p}_{k}", f) for k, f in enumerate(flags)))
        return matching(sa.or_(logical, sa.tuple_(index.c.ref_type, index.c.ref_id).in_(targets)))
    return matching(  # reference
        sa.or_(
            *(
                sa.and_(
                    index.c.ref_id == sa.bindparam(f"{p}_{k}_id"),
                    *([index.c.ref_type == sa.bindparam(f"{p}_{k}_type")] if has_type else []),
                )
                for k, has_type in enumerate(flags)
            )
        )
    )


def _token_condition(
    index: sa.FromClause, name: str, flags: tuple[bool, bool, bool]
) -> sa.ColumnElement[bool]:
    has_value, has_system, require_no_system = flags
    conditions: list[sa.ColumnElement[bool]] = []
    if has_value:
        conditions.append(index.c.value == sa.bindparam(f"{name}_value"))
    if has_system:
        conditions.append(index.c.system == sa.bindparam(f"{name}_system"))
    elif require_no_system:
        conditions.append(index.c.system.is_(None))
    return sa.and_(*conditions)


def _date_condition(
    column: sa.ColumnElement[datetime], prefix: str, name: str
) -> sa.ColumnElement[bool]:
    """The stored instant is a point, so the prefixes reduce to comparisons with [start, end)."""
    start: sa.BindParameter[datetime] = sa.bindparam(f"{name}_start")
    end: sa.BindParameter[datetime] = sa.bindparam(f"{name}_end")
    if prefix == "eq":
        return sa.and_(column >= start, column < end)
    if prefix == "ne":
        return sa.or_(column < start, column >= end)
    if prefix in ("gt", "sa"):
        return column >= end
    if prefix in ("lt", "eb"):
        return column < start
    if prefix == "ge":
        return column >= start
    return column < end  # le
