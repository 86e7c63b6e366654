"""FHIR JSON (R4 or STU3) as a SourceRecord: every leaf keyed by its path, e.g. `subject.identifier.value`.

Arrays keep their indexes (`supportingInfo[0].reference`) and are the record's repeating groups.
Contained resources stay where they are (`contained[1].type.coding[0].code`), so a mapping can
follow a `#local` reference to them.
"""

from __future__ import annotations

from typing import Any

from adapter.fhir import jsonio
from adapter.fhir.types import JsonObject
from adapter.sources.record import SourceRecord, prefix_groups


def flatten(node: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    _flatten(node, prefix, out)
    return out


def _flatten(node: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(value, f"{prefix}.{key}" if prefix else key, out)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _flatten(value, f"{prefix}[{i}]", out)
    elif node is None:
        return
    elif isinstance(node, bool):
        out[prefix] = "true" if node else "false"
    else:
        out[prefix] = str(node)


def record_from_resource(resource: JsonObject, locator: str | None = None) -> SourceRecord:
    rt = str(resource.get("resourceType", ""))
    where = locator or f"{rt}/{resource.get('id', '')}"
    values = flatten(resource)
    values.pop("resourceType", None)
    positions = {k: f"{rt}.{k}" for k in values}
    return SourceRecord(
        "fhir",
        where,
        values,
        positions,
        raw=jsonio.dumps(resource),
        header={"resourceType": rt},
        group_finder=prefix_groups,
    )
