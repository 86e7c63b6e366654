"""Reference checks: literal format, allowed target types, resolution in the Bundle or the store.

The walk (structure.py) hands over every Reference with the target types its element allows. A
contained `#id` must resolve inside the resource, a `urn:uuid` inside the Bundle; a relative
reference must resolve only when the resource travels in a Bundle that holds it or the caller asks
for store existence (`ValidationContext.check_store_references`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from adapter.conformance.definitions import core_definitions
from adapter.conformance.structure import FoundReference
from adapter.context import ValidationContext
from adapter.fhir.references import parse_reference
from adapter.fhir.types import JsonObject, JsonValue
from adapter.issue import Issue

#: Absolute URLs that are not RESTful FHIR URLs are legal references (R4 references.html §2.3.0.2).
_ABSOLUTE_URL: Final = re.compile(r"^[a-z][a-z0-9+.\-]*://\S+$")


def _contained_type(resource: JsonObject, cid: str | None) -> str | bool | None:
    """The type of contained resource `cid`; False if there is none with that id."""
    for c in resource.get("contained") or []:
        if isinstance(c, dict) and c.get("id") == cid:
            rt = c.get("resourceType")
            return rt if isinstance(rt, str) else None
    return False


def _bundle_full_urls(bundle: JsonObject | None) -> dict[str, JsonObject]:
    out: dict[str, JsonObject] = {}
    if not bundle:
        return out
    for entry in bundle.get("entry") or []:
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("resource"), dict)
            and isinstance(entry.get("fullUrl"), str)
        ):
            out[entry["fullUrl"]] = entry["resource"]
    return out


_RESTFUL_TAIL: Final = re.compile(r"[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")


def _entries_by_resource(
    bundle: JsonObject | None,
) -> tuple[dict[int, str], list[tuple[str, JsonObject]]] | None:
    """(id(resource) -> fullUrl, [(fullUrl, resource)]) of a Bundle whose references resolve
    uniquely: every type but history and searchset (where versions and repeats are expected)."""
    if bundle is None or bundle.get("type") in ("history", "searchset"):
        return None
    by_resource: dict[int, str] = {}
    listed: list[tuple[str, JsonObject]] = []
    for entry in bundle.get("entry") or []:
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str):
                by_resource[id(entry["resource"])] = full_url
                listed.append((full_url, entry["resource"]))
    return by_resource, listed


def _bundle_resolution_problem(
    entries: tuple[dict[int, str], list[tuple[str, JsonObject]]],
    holder: JsonObject,
    reference: str,
    version_id: str | None,
) -> str | None:
    """R4 bundle.html#references: a relative reference resolves against the base of the holding
    entry's fullUrl; it must not match several entries, and a versioned one needs that version."""
    by_resource, listed = entries
    base_url = by_resource.get(id(holder))
    if base_url is None or not _RESTFUL_TAIL.search(base_url):
        return None
    base = _RESTFUL_TAIL.sub("", base_url)
    target = base + reference.split("/_history/", 1)[0]
    matches = [res for url, res in listed if url == target]
    if version_id is not None and matches:
        if not any((res.get("meta") or {}).get("versionId") == version_id for res in matches):
            return "The Bundle holds this resource, but not the version the reference names"
        return None
    if len(matches) > 1:
        return f"The reference matches {len(matches)} entries of the Bundle"
    return None


def reference_issues(
    found: Iterable[FoundReference],
    ctx: ValidationContext,
    own_bundle: JsonObject | None = None,
) -> list[Issue]:
    """`own_bundle` is set when the resource being validated is itself a Bundle."""
    issues: list[Issue] = []
    bundle_urls: dict[str, JsonObject] | None = None
    entries = _entries_by_resource(own_bundle)
    for ref in found:
        value = str(ref.reference["reference"])
        expr = f"{ref.expression}.reference"
        parsed = parse_reference(value)
        if parsed.kind == "invalid":
            if not _ABSOLUTE_URL.match(value):
                issues.append(
                    Issue("error", "value", "Reference is not a valid literal reference", expr)
                )
            continue
        actual_type: str | None = parsed.resource_type
        if actual_type and not core_definitions().is_resource(actual_type):
            issues.append(
                Issue(
                    "error",
                    "value",
                    f"'{actual_type}' in the reference is not a resource type",
                    expr,
                )
            )
            continue
        declared = ref.reference.get("type")
        if isinstance(declared, str) and actual_type and declared != actual_type:
            issues.append(
                Issue(
                    "error",
                    "value",
                    f"Reference type '{declared}' disagrees with the reference",
                    expr,
                )
            )
        if parsed.kind == "contained":
            holder = ref.root if ref.resource is not ref.root else ref.resource
            found_type = _contained_type(holder, parsed.id)
            if found_type is False:
                issues.append(
                    Issue("error", "not-found", "Contained reference does not resolve", expr)
                )
                continue
            actual_type = found_type if isinstance(found_type, str) else None
        elif parsed.kind == "urn-uuid":
            if bundle_urls is None:
                bundle_urls = _bundle_full_urls(own_bundle or ctx.bundle)
            target = bundle_urls.get(value)
            if target is None and own_bundle is None and ctx.bundle is None:
                continue  # outside any Bundle (e.g. inside Parameters) nothing can resolve it
            if target is None:
                issues.append(
                    Issue(
                        "error",
                        "not-found",
                        "urn:uuid reference does not resolve inside the Bundle",
                        expr,
                    )
                )
                continue
            rt = target.get("resourceType")
            actual_type = rt if isinstance(rt, str) else None
        elif (
            parsed.kind == "relative"
            and own_bundle is None
            and (ctx.bundle is not None or ctx.check_store_references)
            and ctx.resolve(value) is None
        ):
            issues.append(
                Issue(
                    "error",
                    "not-found",
                    f"Reference to {parsed.resource_type} does not resolve in the Bundle or store",
                    expr,
                )
            )
        if parsed.kind == "relative" and entries is not None:
            problem = _bundle_resolution_problem(entries, ref.root, value, parsed.version_id)
            if problem is not None:
                issues.append(Issue("error", "not-found", problem, expr))
        if (
            actual_type
            and ref.targets
            and "Resource" not in ref.targets
            and (actual_type not in ref.targets)
        ):
            allowed = ", ".join(ref.targets)
            issues.append(
                Issue(
                    "error",
                    "structure",
                    f"Reference to {actual_type} is not allowed here (allowed: {allowed})",
                    expr,
                )
            )
    return issues


def _parameter_resources(params: JsonValue) -> Iterable[JsonObject]:
    for p in params if isinstance(params, list) else []:
        if isinstance(p, dict):
            if isinstance(p.get("resource"), dict):
                yield p["resource"]
            yield from _parameter_resources(p.get("part"))


def parameters_reference_issues(
    parameters: JsonObject, found: Iterable[FoundReference]
) -> list[Issue]:
    """The reference validator's `validateReference` inside a Parameters: the resources of its
    parameters travel together, so a relative reference in one of them must name another."""
    resources = list(_parameter_resources(parameters.get("parameter")))
    roots = {id(r) for r in resources}  # each parameter's resource is the root of its own walk
    held = {
        f"{r.get('resourceType')}/{r.get('id')}" for r in resources if isinstance(r.get("id"), str)
    }
    issues: list[Issue] = []
    for ref in found:
        value = str(ref.reference.get("reference"))
        parsed = parse_reference(value)
        if parsed.kind != "relative" or id(ref.root) not in roots:
            continue
        if f"{parsed.resource_type}/{parsed.id}" not in held:
            issues.append(
                Issue(
                    "error",
                    "not-found",
                    f"Unable to resolve resource with reference '{value}'",
                    f"{ref.expression}.reference",
                )
            )
    return issues


_WG_EXTENSION: Final = "http://hl7.org/fhir/StructureDefinition/structuredefinition-wg"
_HL7_URL: Final = re.compile(r"^https?://(terminology\.)?hl7\.org/")


def hl7_publication_issues(resource: JsonObject, rt: str) -> list[Issue]:
    """The reference validator's `for-publication`: a canonical resource HL7 publishes (its url is
    on hl7.org) names its owning work group with the structuredefinition-wg extension."""
    url = resource.get("url")
    if not isinstance(url, str) or not _HL7_URL.match(url) or rt in ("Bundle", "Parameters"):
        return []
    if any(
        isinstance(e, dict) and e.get("url") == _WG_EXTENSION
        for e in resource.get("extension") or []
    ):
        return []
    return [
        Issue(
            "error",
            "business-rule",
            "When HL7 is publishing a resource, the owning committee must be stated using the "
            f"{_WG_EXTENSION} extension",
            rt,
        )
    ]
