"""Parses FHIR search query strings into a SearchQuery (pure; shared by the REST facade and If-None-Exist)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qsl

from adapter.errors import InputError
from adapter.issue import Issue
from adapter.store.repository import SearchParam, SearchQuery

#: Result parameters we accept but that do not filter (ignored ones are reported, never silently).
RESULT_PARAMS: Final = frozenset(
    {
        "_count",
        "_offset",
        "_total",
        "_sort",
        "_format",
        "_pretty",
        "_summary",
        "_elements",
        "_include",
        "_revinclude",
        "_contained",
    }
)


def _int(name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InputError(
            [Issue("error", "value", f"{name} must be an integer", expression=name)]
        ) from None
    if number < minimum:
        raise InputError([Issue("error", "value", f"{name} must be >= {minimum}", expression=name)])
    return number


def parse_search(
    items: Iterable[tuple[str, str]], *, default_count: int = 20, max_count: int = 500
) -> tuple[SearchQuery, dict[str, list[str]]]:
    """Returns the query, and the result parameters (`_include`, `_summary`...) for the caller."""
    params: list[SearchParam] = []
    result: dict[str, list[str]] = {}
    count, offset, total = default_count, 0, True
    sort: tuple[str, ...] = ()
    for raw_name, value in items:
        name, _, modifier = raw_name.partition(":")
        if name == "_count":
            count = min(_int("_count", value, 0), max_count)
        elif name == "_offset":
            offset = _int("_offset", value, 0)
        elif name == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise InputError(
                    [
                        Issue(
                            "error",
                            "value",
                            "_total must be none, estimate or accurate",
                            expression="_total",
                        )
                    ]
                )
            total = value != "none"
        elif name == "_sort":
            sort = tuple(s for s in value.split(",") if s)
        elif name in RESULT_PARAMS:
            result.setdefault(raw_name, []).append(value)
        else:
            params.append(
                SearchParam(name=name, modifier=modifier or None, values=tuple(value.split(",")))
            )
    query = SearchQuery(params=tuple(params), count=count, offset=offset, total=total, sort=sort)
    return query, result


def parse_query_string(qs: str) -> SearchQuery:
    """For `If-None-Exist: identifier=sys|val` and Bundle `request.ifNoneExist`."""
    query, _ = parse_search(parse_qsl(qs.lstrip("?"), keep_blank_values=True))
    if not query.params:
        raise InputError([Issue("error", "invalid", "Conditional criteria are empty")])
    return query
