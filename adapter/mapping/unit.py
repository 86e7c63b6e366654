"""One unit of work: a MappingResult turned into a transaction Bundle and sent through the pipeline.

Identity is settled here, read-only, before the pipeline judges and writes:
- a `match` resource (a Patient by NHS number) that is already stored is reused, never overwritten,
  and references to it are pointed at the stored id;
- a PUT whose content equals the stored version is left out, so re-sending a message or re-ingesting
  a file writes nothing and adds no versions.
Everything that remains is one transaction: written whole or not at all, by `Pipeline.transaction`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC
from typing import Any, Final, Literal

from adapter.errors import AdapterError
from adapter.fhir import jsonio
from adapter.fhir.source_event import superseding
from adapter.fhir.types import JsonObject
from adapter.issue import Issue, has_blocking
from adapter.mapping.engine import MappedResource, MappingResult
from adapter.pipeline import Pipeline
from adapter.store.conditional import unchanged_current
from adapter.store.repository import SearchParam, find_one_or_none
from adapter.store.sql import format_instant

Status = Literal["stored", "unchanged", "rejected"]
_ENTRY: Final = re.compile(r"^Bundle\.entry\[(\d+)\]\.resource\.?(.*)$")


@dataclass(slots=True)
class UnitOutcome:
    result: MappingResult
    status: Status
    issues: list[Issue] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: Left unwritten because the stored version reflects a later event of the same sender
    #: (`fhir/source_event.py`); also counted in `unchanged`.
    superseded: list[str] = field(default_factory=list)
    #: HTTP-style status of the rejection (400 input, 422 conformance/policy), 200 otherwise
    http_status: int = 200
    response: JsonObject | None = None


def _rewrite(node: Any, old: str, new: str) -> None:
    if isinstance(node, dict):
        if node.get("reference") == old:
            node["reference"] = new
        for value in node.values():
            _rewrite(value, old, new)
    elif isinstance(node, list):
        for item in node:
            _rewrite(item, old, new)


def plan(pipeline: Pipeline, resources: list[MappedResource]) -> tuple[list[JsonObject], list[str]]:
    """(resources to PUT, references left out as unchanged or reused)."""
    working = [jsonio.copy_json(m.resource) for m in resources]
    skipped: list[str] = []
    keep = [True] * len(working)
    for i, mapped in enumerate(resources):
        if mapped.match is None:
            continue
        system, value = mapped.match
        rt = str(mapped.resource["resourceType"])
        existing = find_one_or_none(
            pipeline.repo, rt, [SearchParam("identifier", (f"{system}|{value}",))]
        )
        if existing is None:
            continue
        keep[i] = False
        old, new = mapped.reference, f"{rt}/{existing.id}"
        skipped.append(new)
        if old != new:
            for other in working:
                _rewrite(other, old, new)
    for i, resource in enumerate(working):
        if not keep[i]:
            continue
        if unchanged_current(pipeline.repo, resource, None) is not None:
            keep[i] = False
            skipped.append(f"{resource['resourceType']}/{resource['id']}")
    return [r for i, r in enumerate(working) if keep[i]], skipped


def transaction_bundle(
    resources: list[JsonObject], create_only: Collection[str] = ()
) -> JsonObject:
    """PUTs to the resources' ids; those named in `create_only` carry `ifNoneMatch: *` (written
    only if absent, 412 otherwise, settled by the store's primary key)."""

    def request(r: JsonObject) -> JsonObject:
        ref = f"{r['resourceType']}/{r['id']}"
        out: JsonObject = {"method": "PUT", "url": ref}
        if ref in create_only:
            out["ifNoneMatch"] = "*"
        return out

    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r, "request": request(r)}
            for r in resources
        ],
    }


def point_at_source(result: MappingResult, bundle: JsonObject, issues: list[Issue]) -> list[Issue]:
    """Pipeline issues are FHIRPath into the Bundle; name the source field behind each as well."""
    out: list[Issue] = []
    entries = bundle.get("entry") or []
    for issue in issues:
        m = _ENTRY.match(issue.expression or "")
        if m is None or int(m[1]) >= len(entries):
            out.append(issue)
            continue
        resource = entries[int(m[1])]["resource"]
        ref = f"{resource['resourceType']}/{resource['id']}"
        source = result.source_of(ref, m[2])
        fhir_path = f"{resource['resourceType']}.{m[2]}" if m[2] else str(resource["resourceType"])
        if source is None:
            out.append(replace(issue, expression=fhir_path))
        else:
            detail = f"FHIR element {fhir_path}" + (
                f"; {issue.diagnostics}" if issue.diagnostics else ""
            )
            out.append(replace(issue, expression=source, diagnostics=detail))
    return out


def submit(
    pipeline: Pipeline,
    result: MappingResult,
    planned: tuple[list[JsonObject], list[str]] | None = None,
    create_only: Collection[str] = (),
) -> UnitOutcome:
    """Judges and writes the mapped resources as one unit; never raises for bad content.

    `planned` is a `plan(...)` the caller already made (e.g. to check a message id first);
    `create_only` names planned resources that must not exist when written (412 if they do)."""
    if has_blocking(result.issues):
        return UnitOutcome(result, "rejected", list(result.issues), http_status=422)
    if planned is None:
        # No reads first: conditional creates and no-op PUTs are settled on the connection that
        # writes, inside one unit of work (a batch of one).
        try:
            return submit_batch(pipeline, [result])[0]
        except AdapterError as exc:  # the commit itself failed: nothing of the unit was stored
            return UnitOutcome(
                result, "rejected", result.issues + list(exc.issues), http_status=exc.status
            )
    to_write, skipped = planned
    if not to_write:
        return UnitOutcome(result, "unchanged", list(result.issues), unchanged=skipped)
    bundle = transaction_bundle(to_write, create_only)
    try:
        response = pipeline.transaction(bundle)
    except AdapterError as exc:
        return UnitOutcome(
            result,
            "rejected",
            result.issues + point_at_source(result, bundle, exc.issues),
            http_status=exc.status,
        )
    written = [f"{r['resourceType']}/{r['id']}" for r in to_write]
    return UnitOutcome(
        result, "stored", list(result.issues), written=written, unchanged=skipped, response=response
    )


# -- many units in one commit (bulk ingest) --------------------------------------------------------
def conditional_bundle(resources: list[MappedResource]) -> JsonObject:
    """The transaction for one unit with no reads first: a `match` resource is a conditional create
    (`POST` + `ifNoneExist: identifier=system|value`), found-or-created by the pipeline on the
    connection that writes, so a unit in a batch sees the units before it; its fullUrl is the
    reference the mapping gave it, which the pipeline points at the stored or created id. Everything
    else is a `PUT` to its deterministic id; the pipeline leaves a PUT that changes nothing unwritten."""
    entries: list[JsonObject] = []
    for mapped in resources:
        r = mapped.resource
        if mapped.match is not None:
            system, value = mapped.match
            entries.append(
                {
                    "fullUrl": mapped.reference,
                    "resource": r,
                    "request": {
                        "method": "POST",
                        "url": str(r["resourceType"]),
                        "ifNoneExist": f"identifier={system}|{value}",
                    },
                }
            )
        else:
            entries.append(
                {
                    "fullUrl": mapped.reference,
                    "resource": r,
                    "request": {"method": "PUT", "url": mapped.reference},
                }
            )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _split_response(
    response: JsonObject, bundle: JsonObject, since: str
) -> tuple[list[str], list[str], list[str]]:
    """(written, unchanged, superseded) references from a transaction-response. A conditional
    create that matched answers 200 with no resource; a PUT that changed nothing answers 200 with
    the version stored before this batch (lastUpdated earlier than `since`); a superseded PUT
    answers 200 with the stored version, whose source event is later than the one sent (it may
    have been written earlier in this batch, so lastUpdated cannot tell). Superseded references
    are listed as unchanged too: nothing of them was written."""
    written: list[str] = []
    unchanged: list[str] = []
    superseded: list[str] = []
    for sent, got in zip(bundle["entry"], response.get("entry") or [], strict=False):
        reply = got.get("response") or {}
        ref = str(got.get("fullUrl") or sent["fullUrl"])
        status = str(reply.get("status", ""))
        put = sent["request"]["method"] == "PUT"
        if put and superseding(got.get("resource"), sent["resource"]) is not None:
            superseded.append(ref)
            unchanged.append(ref)
        elif status.startswith("201") or (put and str(reply.get("lastUpdated", "")) >= since):
            written.append(ref)
        else:
            unchanged.append(ref)
    return written, unchanged, superseded


def submit_batch(pipeline: Pipeline, results: list[MappingResult]) -> list[UnitOutcome]:
    """Judges and writes many units in one database commit (`Pipeline.transaction_batch`): each is
    still all or nothing and sees the writes of the ones before it. Nothing is durable until this
    returns, so callers report a unit as stored only afterwards. Never raises for bad content."""
    outcomes: list[UnitOutcome | None] = [None] * len(results)
    sendable: list[int] = []
    bundles: list[JsonObject] = []
    for i, result in enumerate(results):
        if has_blocking(result.issues):
            outcomes[i] = UnitOutcome(result, "rejected", list(result.issues), http_status=422)
            continue
        sendable.append(i)
        bundles.append(conditional_bundle(result.resources))
    since = format_instant(pipeline.clock.now().astimezone(UTC))
    replies = pipeline.transaction_batch(bundles) if bundles else []
    for i, bundle, reply in zip(sendable, bundles, replies, strict=True):
        result = results[i]
        if isinstance(reply, AdapterError):
            outcomes[i] = UnitOutcome(
                result,
                "rejected",
                result.issues + point_at_source(result, bundle, reply.issues),
                http_status=reply.status,
            )
            continue
        written, unchanged, superseded = _split_response(reply, bundle, since)
        outcomes[i] = UnitOutcome(
            result,
            "stored" if written else "unchanged",
            list(result.issues),
            written=written,
            unchanged=unchanged,
            superseded=superseded,
            response=reply,
        )
    return [o for o in outcomes if o is not None]
