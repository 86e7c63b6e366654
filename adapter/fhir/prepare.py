"""The pipeline's working copy of a resource, made in one walk of the tree.

A Bundle entry is copied (the caller's JSON is never changed), its legacy identifier-system
spellings are normalised (`identifiers.SYSTEM_ALIASES`) and its Bundle-local references (`urn:uuid`
and absolute fullUrls) are pointed at the ids the transaction assigned. These used to be three
walks (`copy_json`, `normalise_identifier_systems`, the pipeline's reference rewrite); on a
four-resource mapped unit they were about a tenth of the pipeline's own time.

What is walked is what the separate walks walked: every object, except the `_x` primitive
extensions, which are copied unchanged. A `reference` is rewritten only in an object without a
`resourceType` (a Reference, not a contained resource that happens to have such an element).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapter.fhir.identifiers import SYSTEM_ALIASES
from adapter.fhir.jsonio import copy_json
from adapter.fhir.types import JsonObject


def prepared_copy(resource: JsonObject, references: Mapping[str, str]) -> tuple[JsonObject, int]:
    """(a deep copy with systems normalised and `references` rewritten, systems rewritten)."""
    counter = [0]
    return _object(resource, references, counter), counter[0]


def _object(node: JsonObject, references: Mapping[str, str], counter: list[int]) -> JsonObject:
    out: JsonObject = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out[key] = (
                copy_json(value) if key.startswith("_") else _object(value, references, counter)
            )
        elif isinstance(value, list):
            out[key] = (
                copy_json(value) if key.startswith("_") else _array(value, references, counter)
            )
        else:
            out[key] = value
    system = out.get("system")
    if isinstance(system, str) and system in SYSTEM_ALIASES:
        out["system"] = SYSTEM_ALIASES[system]
        counter[0] += 1
    ref = out.get("reference")
    if isinstance(ref, str) and ref in references and "resourceType" not in out:
        out["reference"] = references[ref]
    return out


def _array(node: list[Any], references: Mapping[str, str], counter: list[int]) -> list[Any]:
    out: list[Any] = []
    for value in node:
        if isinstance(value, dict):
            out.append(_object(value, references, counter))
        elif isinstance(value, list):
            out.append(_array(value, references, counter))
        else:
            out.append(value)
    return out
