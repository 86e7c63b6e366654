"""Names a caller gives the embedded store: which resource types and logical ids it accepts.

Anything else is a 400 (`InputError`, issue code `value`). Shared by `SqlRepository` (every write
and read) and the search planner in `sql_search`.
"""

from __future__ import annotations

import re
from typing import Final

from adapter.errors import InputError
from adapter.issue import Issue

_ID_RE: Final = re.compile(r"^[A-Za-z0-9\-\.]{1,64}$")
_TYPE_RE: Final = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


def _invalid(text: str, expression: str | None = None) -> InputError:
    return InputError([Issue("error", "value", text, expression=expression)])


def _check_type(resource_type: str) -> str:
    if not _TYPE_RE.match(resource_type):
        raise _invalid(f"Invalid resource type {resource_type!r}")
    return resource_type


def _check_id(resource_id: str, expression: str = "id") -> str:
    if not _ID_RE.match(resource_id):
        raise _invalid("Invalid resource id (1-64 of A-Z, a-z, 0-9, '-', '.')", expression)
    return resource_id
