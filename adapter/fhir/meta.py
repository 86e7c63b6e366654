"""The store's own part of `Resource.meta`: `versionId` and `lastUpdated`.

The store writes them on every version; they are not the content. `without_store_meta` is the
resource as its content: what a no-op update compares (with `same_json`), what a JSON Patch is
applied to, and what is sent to a backing server that keeps its own versions.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from adapter.fhir.types import JsonObject

STORE_META: Final = frozenset({"versionId", "lastUpdated"})


def without_store_meta(resource: JsonObject) -> JsonObject:
    """A shallow copy without meta.versionId and meta.lastUpdated (meta itself dropped when nothing
    else is in it), other elements in their order."""
    out: JsonObject = {}
    for key, value in resource.items():
        if key != "meta":
            out[key] = value
        elif isinstance(value, dict):
            rest = {k: v for k, v in value.items() if k not in STORE_META}
            if rest:
                out[key] = rest
    return out


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON: the same keys, items and values, where numbers compare by their decimal value
    (a mapping's float `4.38` and the store's `Decimal('4.38')`, read back from the same text, are
    one JSON number; `==` says they differ, because the float is not exactly 4.38) and a boolean
    is never a number. Used where `==` said no, to tell a real change from a representation one."""
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(same_json(value, b[key]) for key, value in a.items())
        )
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(same_json(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        return _decimal(a) == _decimal(b)
    return type(a) is type(b) and bool(a == b)


def _decimal(number: int | float | Decimal) -> Decimal:
    # repr: the shortest text that reads back as this float, which is what JSON wrote for it
    return Decimal(repr(number)) if isinstance(number, float) else Decimal(number)
