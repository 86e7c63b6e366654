"""UK identifier checks: NHS number (Modulus 11) and ODS code form, wherever the canonical system is used.

Identifiers are found anywhere in the resource (Patient.identifier, Reference.identifier, ...), so a
bad NHS number in a logical reference is caught as well as one on the Patient.
"""

from __future__ import annotations

from collections.abc import Iterator

from adapter.fhir.identifiers import (
    NHS_NUMBER_SYSTEM,
    ODS_ORGANIZATION_SYSTEM,
    SYSTEM_ALIASES,
    nhs_number_is_valid,
    ods_code_is_well_formed,
)
from adapter.fhir.types import JsonObject, JsonValue
from adapter.issue import Issue


def _iter_identifiers(node: JsonValue, path: str) -> Iterator[tuple[str, JsonObject]]:
    if isinstance(node, dict):
        if (
            "system" in node
            and "value" in node
            and "resourceType" not in node
            and "code" not in node
        ):
            yield path, node
        for key, value in node.items():
            if key.startswith("_") or key == "resourceType":
                continue
            yield from _iter_identifiers(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _iter_identifiers(item, f"{path}[{i}]")


def identifier_issues(resource: JsonObject) -> list[Issue]:
    """Every identifier-like node of the resource (a standalone walk; the validator uses the
    instance walk, which calls `one_identifier_issues` on each Identifier)."""
    root = str(resource.get("resourceType", "Resource"))
    issues: list[Issue] = []
    for path, ident in _iter_identifiers(resource, root):
        issues += one_identifier_issues(ident, path)
    return issues


def one_identifier_issues(ident: JsonObject, path: str) -> list[Issue]:
    """The UK checks on one Identifier at `path`."""
    system, value = ident.get("system"), ident.get("value")
    if not isinstance(system, str) or not isinstance(value, str):
        return []
    if system in SYSTEM_ALIASES:
        text = f"Identifier system is a non-canonical spelling; use {SYSTEM_ALIASES[system]}"
        return [Issue("error", "value", text, expression=f"{path}.system")]
    issues: list[Issue] = []
    if system == NHS_NUMBER_SYSTEM and not nhs_number_is_valid(value):
        text = "NHS number fails the Modulus 11 check (or is not 10 digits)"
        issues.append(Issue("error", "value", text, expression=f"{path}.value"))
    if system == ODS_ORGANIZATION_SYSTEM and not ods_code_is_well_formed(value):
        text = "ODS organisation code is not well formed"
        issues.append(Issue("error", "value", text, expression=f"{path}.value"))
    return issues
