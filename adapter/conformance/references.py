"""Reference checks: literal format, and resolution inside the Bundle (or the store when asked)."""

from __future__ import annotations

from adapter.context import ValidationContext
from adapter.fhir.references import iter_references, parse_reference
from adapter.fhir.types import JsonObject
from adapter.issue import Issue


def reference_issues(resource: JsonObject, ctx: ValidationContext) -> list[Issue]:
    root = str(resource.get("resourceType", "Resource"))
    contained_ids = {
        c.get("id") for c in resource.get("contained") or [] if isinstance(c, dict)
    }
    issues: list[Issue] = []
    for path, ref in iter_references(resource, root):
        value = str(ref["reference"])
        parsed = parse_reference(value)
        expr = f"{path}.reference"
        if parsed.kind == "invalid":
            issues.append(Issue("error", "value", "Reference is not a valid literal reference", expr))
            continue
        declared = ref.get("type")
        if isinstance(declared, str) and parsed.resource_type and declared != parsed.resource_type:
            issues.append(
                Issue("error", "value", f"Reference type '{declared}' disagrees with the reference", expr)
            )
        if parsed.kind == "contained":
            if parsed.id not in contained_ids:
                issues.append(Issue("error", "not-found", "Contained reference does not resolve", expr))
            continue
        if parsed.kind == "urn-uuid":
            if ctx.bundle is None or ctx.resolve(value) is None:
                issues.append(
                    Issue("error", "not-found", "urn:uuid reference does not resolve inside the Bundle", expr)
                )
            continue
        if parsed.kind == "relative" and (ctx.bundle is not None or ctx.check_store_references):
            if ctx.resolve(value) is None:
                issues.append(
                    Issue(
                        "error",
                        "not-found",
                        f"Reference to {parsed.resource_type} does not resolve in the Bundle or the store",
                        expr,
                    )
                )
    return issues
