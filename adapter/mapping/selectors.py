"""Source selectors, parsed once: the ` ?? ` alternatives of a rule's `from` (a 'literal', a
/record key, a group instance picked by `GROUP(key=value).local`, a local key), and `where`
conditions (`!X` for anything but X)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

_SELECT: Final = re.compile(
    r"^(?P<group>[^()]+)\((?P<key>[^=()]+)=(?P<value>[^()]*)\)(?:\.(?P<local>.+))?$"
)

_LITERAL: Final = 0  # 'crisis': the text itself
_ABSOLUTE: Final = 1  # /PID-3: a record key, even inside a group instance
_SELECTED: Final = 2  # PID-3(5=NH).1: the group instance whose key holds the value, then its local
_LOCAL: Final = 3  # OBX-5: the instance's local key, or a record key outside a group
#: (kind, text or key or group, match key, match value, local key)
_Alternative = tuple[int, str, str, str, str]


@lru_cache(maxsize=4096)
def _selector(selector: str) -> tuple[_Alternative, ...]:
    """A selector parsed once: its ` ?? ` alternatives, each classified as `_Run.read` reads it."""
    out: list[_Alternative] = []
    for alternative in selector.split(" ?? ") if " ?? " in selector else (selector,):
        if alternative.startswith("'") and alternative.endswith("'"):
            out.append((_LITERAL, alternative[1:-1], "", "", ""))
        elif alternative.startswith("/"):
            out.append((_ABSOLUTE, alternative[1:], "", "", ""))
        elif (m := _SELECT.match(alternative)) is not None:
            out.append((_SELECTED, m["group"], m["key"], m["value"], m["local"] or "."))
        else:
            out.append((_LOCAL, alternative, "", "", ""))
    return tuple(out)


@lru_cache(maxsize=1024)
def _conditions(where: tuple[tuple[str, str], ...]) -> tuple[tuple[str, bool, str], ...]:
    """`selector: value` pairs as (selector, negated, value): `!X` means anything but X."""
    return tuple(
        (selector, expected.startswith("!"), expected[1:] if expected.startswith("!") else expected)
        for selector, expected in where
    )
