"""The store's own part of `Resource.meta`: `versionId` and `lastUpdated`.

The store writes them on every version; they are not the content. `without_store_meta` is the
resource as its content: what a no-op update compares, what a JSON Patch is applied to, and what
is sent to a backing server that keeps its own versions.
"""

from __future__ import annotations

from typing import Final

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
