"""R4 `patch` with JSON Patch (RFC 6902): the document checked, then applied to a resource.

Pure JSON: `Pipeline.patch` reads the current version, applies the document here and sends the
result through the pipeline as an update. A malformed document is an InputError (400); a patch that
cannot be applied to this resource (a failed `test`, a missing path, a change of id or type) is an
UnprocessableError (422). `meta.versionId` and `meta.lastUpdated` are the store's: the patch is
applied to the resource without them.
"""

from __future__ import annotations

from typing import Any, Final

import jsonpatch
import jsonpointer

from adapter.errors import InputError, UnprocessableError
from adapter.fhir import jsonio
from adapter.fhir.meta import without_store_meta
from adapter.fhir.types import JsonObject
from adapter.issue import Issue

PATCH_OPS: Final = frozenset({"add", "remove", "replace", "move", "copy", "test"})


def parse_json_patch(operations: Any) -> jsonpatch.JsonPatch:
    """A JSON Patch document, or a 400 naming the operation that is malformed."""
    if not isinstance(operations, list) or not operations:
        raise InputError(
            [Issue("error", "structure", "A JSON Patch document is a non-empty JSON array")]
        )
    for i, op in enumerate(operations):
        if not isinstance(op, dict) or op.get("op") not in PATCH_OPS or "path" not in op:
            raise InputError(
                [
                    Issue(
                        "error",
                        "structure",
                        f"Operation {i} is not a JSON Patch operation (op one of "
                        f"{', '.join(sorted(PATCH_OPS))}, and a path)",
                        expression=f"[{i}]",
                    )
                ]
            )
    try:
        return jsonpatch.JsonPatch(operations)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise InputError([Issue("error", "structure", f"Invalid JSON Patch: {exc}")]) from exc


def apply_json_patch(
    document: jsonpatch.JsonPatch, current: JsonObject, resource_type: str, id: str
) -> JsonObject:
    base = without_store_meta(current)
    base["id"] = id
    try:
        patched = document.apply(jsonio.copy_json(base))
    except jsonpatch.JsonPatchTestFailed as exc:
        raise UnprocessableError(
            [Issue("error", "processing", f"A JSON Patch test failed: {exc}")]
        ) from exc
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise UnprocessableError(
            [Issue("error", "processing", f"The JSON Patch cannot be applied: {exc}")]
        ) from exc
    if not isinstance(patched, dict) or patched.get("resourceType") != resource_type:
        raise UnprocessableError(
            [Issue("error", "processing", "A patch may not change the resourceType")]
        )
    if patched.get("id") != id:
        raise UnprocessableError(
            [Issue("error", "processing", "A patch may not change the id", expression="id")]
        )
    return patched
