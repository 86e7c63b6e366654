"""Reference parsing: relative, absolute, `urn:uuid`, contained `#id`; and Bundle-local resolution."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal

from adapter.fhir.types import JsonObject, JsonValue

_ID: Final = r"[A-Za-z0-9\-\.]{1,64}"
_TYPE: Final = r"[A-Z][A-Za-z]+"
RELATIVE_RE: Final = re.compile(rf"^(?P<type>{_TYPE})/(?P<id>{_ID})(?:/_history/(?P<vid>{_ID}))?$")
ABSOLUTE_RE: Final = re.compile(
    rf"^(?P<base>https?://[^\s]+?)/(?P<type>{_TYPE})/(?P<id>{_ID})(?:/_history/(?P<vid>{_ID}))?$"
)
URN_UUID_RE: Final = re.compile(
    r"^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
URN_OID_RE: Final = re.compile(r"^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$")

RefKind = Literal["relative", "absolute", "urn-uuid", "urn-oid", "contained", "invalid"]


@dataclass(frozen=True, slots=True)
class ParsedReference:
    kind: RefKind
    resource_type: str | None = None
    id: str | None = None
    version_id: str | None = None
    base: str | None = None


def parse_reference(value: str) -> ParsedReference:
    if value.startswith("#"):
        return (
            ParsedReference("contained", id=value[1:])
            if len(value) > 1
            else ParsedReference("invalid")
        )
    if value.startswith("urn:uuid:"):
        return (
            ParsedReference("urn-uuid") if URN_UUID_RE.match(value) else ParsedReference("invalid")
        )
    if value.startswith("urn:oid:"):
        return ParsedReference("urn-oid") if URN_OID_RE.match(value) else ParsedReference("invalid")
    m = RELATIVE_RE.match(value)
    if m:
        return ParsedReference("relative", m["type"], m["id"], m["vid"])
    m = ABSOLUTE_RE.match(value)
    if m:
        return ParsedReference("absolute", m["type"], m["id"], m["vid"], m["base"])
    return ParsedReference("invalid")


def iter_references(node: JsonValue, path: str) -> Iterator[tuple[str, JsonObject]]:
    """Yields (FHIRPath-ish path, Reference object) for every object carrying `reference`.

    Contained resources are included; `path` uses `[i]` for list positions.
    """
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str) and "resourceType" not in node:
            yield path, node
        for key, value in node.items():
            if key.startswith("_") or key == "resourceType":
                continue
            yield from iter_references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from iter_references(item, f"{path}[{i}]")
