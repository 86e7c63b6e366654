"""Primitive formats exactly as R4 defines them (regexes from the core definitions) plus JSON kinds.

Decimals arrive as `Decimal` (adapter.fhir.jsonio), so precision is never lost here. Dates and times
are also checked against the calendar (R4's regexes accept 2023-02-30; the spec's text does not).
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from functools import cache
from typing import Final

from adapter.conformance.definitions import core_definitions
from adapter.fhir.types import JsonValue

_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
_STRING_TYPES: Final = frozenset(
    {
        "string",
        "code",
        "id",
        "markdown",
        "uri",
        "url",
        "canonical",
        "oid",
        "uuid",
        "base64Binary",
        "date",
        "dateTime",
        "instant",
        "time",
        "xhtml",
    }
)
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
    if type_code.startswith("http://hl7.org/fhirpath/System."):
        type_code = "string"
    if type_code == "boolean":
        return None if isinstance(value, bool) else "must be a JSON boolean"
    if type_code == "decimal":
        if isinstance(value, bool) or not isinstance(value, (int, Decimal, float)):
            return "must be a JSON number"
        return None
    if type_code in _INTEGER_TYPES:
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
        if type_code == "positiveInt" and value < 1:
            return "must be 1 or more"
        if type_code == "unsignedInt" and value < 0:
            return "must be 0 or more"
        return None
    if type_code in _STRING_TYPES or type_code not in ("boolean", "decimal"):
        if not isinstance(value, str):
            return "must be a JSON string"
        if type_code == "xhtml":
            return None if value.strip().startswith("<div") else "must be an XHTML <div>"
        if len(value) > _MAX_STRING:
            return "exceeds 1 MB"
        if value == "":
            return "must not be empty"
        rx = _regex(type_code)
        if rx is not None and type_code not in ("string", "markdown") and not rx.fullmatch(value):
            return f"is not a valid {type_code}"
        if (
            value.startswith("urn:uuid:")
            and type_code in ("uri", "uuid", "url", "canonical")
            and (not _UUID.fullmatch(value))
        ):
            return "is not a valid UUID (urn:uuid: with a lowercase RFC 4122 UUID)"
        if type_code in ("date", "dateTime", "instant"):
            return _calendar_problem(value, type_code)
    return None


def _calendar_problem(value: str, type_code: str) -> str | None:
    m = _DATE_PREFIX.match(value)
    if m:
        try:
            date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            return f"is not a valid {type_code} (no such calendar day)"
    if type_code == "dateTime" and "T" in value and not _TZ_REQUIRED.search(value):
        return "is not a valid dateTime (a time needs a timezone)"
    return None
