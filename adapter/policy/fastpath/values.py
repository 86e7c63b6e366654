"""Where the subset's value semantics are certain: a singleton boolean, equality of plain values,
the verdict of a `where`/`all` criterion; a `Fallback` wherever FHIRPath's full semantics could
differ (date-like strings, complex values, mixed types, non-booleans)."""

from __future__ import annotations

import re
from typing import Any, Final

from adapter.policy.fastpath.dispatch import FastFn
from adapter.policy.fastpath.errors import Fallback

_DATE_LIKE: Final = re.compile(r"^@?\d{4}(-\d\d(-\d\d(T[\d:.]*(Z|[+-]\d\d:\d\d)?)?)?)?$")


#: First characters that rule a string out of `_DATE_LIKE` without running it (ASCII other than
#: `@` and digits; `\d` also matches non-ASCII digits, so anything else still goes to the regex).
#: `value[:1] in _NOT_DATE_START or not _DATE_LIKE.match(value)` is the hot-loop form.
_NOT_DATE_START: Final = frozenset(chr(c) for c in range(128)) - frozenset("@0123456789")


def _singleton_bool(result: list[Any]) -> bool | None:
    if not result:
        return None
    if len(result) == 1 and isinstance(result[0], bool):
        return result[0]
    raise Fallback("not a boolean")


def _plain(value: Any) -> Any:
    if isinstance(value, dict | list):
        raise Fallback("complex value compared")
    if isinstance(value, str) and _DATE_LIKE.match(value):
        raise Fallback("date-like value compared")
    return value


def _equal(a: Any, b: Any) -> bool:
    a, b = _plain(a), _plain(b)
    if isinstance(a, bool) or isinstance(b, bool):
        if type(a) is not type(b):
            raise Fallback("boolean compared with another type")
        return bool(a == b)
    if isinstance(a, str) != isinstance(b, str):
        raise Fallback("string compared with a number")
    return bool(a == b)


def _keep(crit: FastFn, item: Any) -> bool:
    result = crit([item])
    if not result:
        return False
    if isinstance(result[0], bool):
        return result[0]
    raise Fallback("where criterion is not boolean")


def _all_holds(crit: FastFn, item: Any) -> bool:
    result = crit([item])
    if result == [True]:
        return True
    if result == [] or result == [False]:
        return False
    raise Fallback("all criterion is not boolean")
