"""Primitive formats exactly as R4 defines them (regexes from the core definitions) plus JSON kinds.

Decimals arrive as `Decimal` (adapter.fhir.jsonio), so precision is never lost here. Dates and times
are also checked against the calendar (R4's regexes accept 2023-02-30; the spec's text does not).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from functools import cache
from typing import Final

from adapter.conformance.definitions import core_definitions
from adapter.fhir.types import JsonValue

_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
_INTEGER_TYPES: Final = frozenset({"integer", "positiveInt", "unsignedInt"})
_DATE_PREFIX: Final = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
_TZ_REQUIRED: Final = re.compile(r"T.*(Z|[+-]\d{2}:\d{2})$")
_MAX_STRING: Final = 1024 * 1024
_UUID: Final = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@cache
def _regex(type_code: str) -> re.Pattern[str] | None:
    source = core_definitions().primitive_regex.get(type_code)
    return re.compile(source) if source else None


def primitive_problem(type_code: str, value: JsonValue) -> str | None:
    """Why `value` is not a valid R4 `type_code`, or None. The text never echoes the value."""
    return primitive_checker(type_code)(value)


PrimitiveCheck = Callable[[JsonValue], str | None]


def _boolean(value: JsonValue) -> str | None:
    return None if isinstance(value, bool) else "must be a JSON boolean"


def _decimal(value: JsonValue) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, float)):
        return "must be a JSON number"
    return None


def _xhtml(value: JsonValue) -> str | None:
    if not isinstance(value, str):
        return "must be a JSON string"
    return None if value.strip().startswith("<div") else "must be an XHTML <div>"


def _integer_checker(type_code: str) -> PrimitiveCheck:
    low = {"positiveInt": 1, "unsignedInt": 0}.get(type_code)
    too_low = "must be 1 or more" if type_code == "positiveInt" else "must be 0 or more"
    lowest = _INT32_MIN if low is None else low

    def check(value: JsonValue) -> str | None:
        if type(value) is int and lowest <= value <= _INT32_MAX:
            return None  # the common valid value, answered in one test
        if isinstance(value, bool) or not isinstance(value, int):
            if (
                isinstance(value, Decimal)
                and value == value.to_integral_value()
                and "." not in str(value)
                and "e" not in str(value).lower()
            ):
                value = int(value)
            else:
                return "must be a JSON integer"
        if not _INT32_MIN <= value <= _INT32_MAX:
            return "is outside the 32-bit integer range"
        if low is not None and value < low:
            return too_low
        return None

    return check


def _string_checker(type_code: str) -> PrimitiveCheck:
    rx = _regex(type_code) if type_code not in ("string", "markdown") else None
    uuid = type_code in ("uri", "uuid", "url", "canonical")
    calendar = type_code in ("date", "dateTime", "instant")
    invalid = f"is not a valid {type_code}"

    def check(value: JsonValue) -> str | None:
        if not isinstance(value, str):
            return "must be a JSON string"
        if len(value) > _MAX_STRING:
            return "exceeds 1 MB"
        if value == "":
            return "must not be empty"
        if rx is not None and not rx.fullmatch(value):
            return invalid
        if uuid and value.startswith("urn:uuid:") and not _UUID.fullmatch(value):
            return "is not a valid UUID (urn:uuid: with a lowercase RFC 4122 UUID)"
        if calendar:
            return _calendar_problem(value, type_code)
        return None

    if rx is None and not uuid and not calendar:  # string, markdown: one test for a valid value

        def plain(value: JsonValue) -> str | None:
            if type(value) is str and 0 < len(value) <= _MAX_STRING:
                return None
            return check(value)

        return plain
    return check


@cache
def primitive_checker(type_code: str) -> PrimitiveCheck:
    """The format check for `type_code`, built once per type: the walk calls it per value."""
    if type_code.startswith("http://hl7.org/fhirpath/System."):
        type_code = "string"
    if type_code == "boolean":
        return _boolean
    if type_code == "decimal":
        return _decimal
    if type_code in _INTEGER_TYPES:
        return _integer_checker(type_code)
    if type_code == "xhtml":
        return _xhtml
    return _string_checker(type_code)  # every other primitive is a JSON string


def calendar_day_problem(value: str, type_code: str) -> str | None:
    """A date-shaped prefix that names no calendar day (2026-02-30), or None. The R4 regexes allow
    any day 01-31 in any month; the structural check and the walk both ask this."""
    m = _DATE_PREFIX.match(value)
    if m:
        try:
            date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            return f"is not a valid {type_code} (no such calendar day)"
    return None


def _calendar_problem(value: str, type_code: str) -> str | None:
    problem = calendar_day_problem(value, type_code)
    if problem is not None:
        return problem
    if type_code == "dateTime" and "T" in value and not _TZ_REQUIRED.search(value):
        return "is not a valid dateTime (a time needs a timezone)"
    return None
