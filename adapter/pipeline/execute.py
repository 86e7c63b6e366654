"""One entry of a transaction Bundle written on the unit of work, and its response entry.

`BundleWriter` (bundles.py) prepares and judges every entry first; this writes them, in the order R4
prescribes, once nothing blocks. POST creates (or answers the match of an `ifNoneExist`), PUT updates
(create-only with `ifNoneMatch: *`; a no-op left unwritten; an older source event superseded), DELETE
and GET Type/id. The Provenance of a write with a recorded override goes in the same unit of work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapter.context import ValidationContext
from adapter.errors import Conflict, InputError, PreconditionFailed
from adapter.fhir.source_event import SourceEvent, event_of, superseded_issue
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.outcome import operation_outcome
from adapter.pipeline.entries import Entry
from adapter.store.conditional import superseded_current, unchanged_current
from adapter.store.repository import Repository, StoredResource

if TYPE_CHECKING:
    from adapter.pipeline.core import Pipeline


def execute_entry(
    pipeline: Pipeline, uow: Repository, e: Entry, judged: list[Issue], ctx: ValidationContext
) -> JsonObject:
    """Writes one judged entry of a transaction on the unit of work and answers its response entry
    (R4 http.html#transaction-response). A stamped PUT whose stored version reflects a later event
    of the same sender is answered with that version and a warning, not written
    (`fhir/source_event.py`)."""
    warnings = [i for i in judged if not i.is_blocking]
    outcome = {"outcome": operation_outcome(warnings)} if warnings else {}
    if e.method == "POST" and e.resource is not None:
        if e.skip_create is not None:
            s = e.skip_create
            return {
                "fullUrl": f"{s.resource_type}/{s.id}",
                "response": {
                    "status": "200 OK",
                    "location": f"{s.resource_type}/{s.id}/_history/{s.version_id}",
                    "etag": s.etag,
                    "lastUpdated": s.resource["meta"]["lastUpdated"],
                },
            }
        stored = uow.create(e.resource, id=e.target_id)
        _store_provenance(pipeline, uow, stored, judged, ctx)
        return entry_response(stored, "201 Created", outcome)
    if e.method == "PUT" and e.resource is not None and e.create_only:
        try:
            stored = uow.create(e.resource, id=e.target_id)
        except Conflict as exc:
            raise PreconditionFailed(
                [
                    Issue(
                        "error",
                        "duplicate",
                        f"{e.target_type}/{e.target_id} already exists (ifNoneMatch: *)",
                        expression=f"Bundle.entry[{e.index}].request.ifNoneMatch",
                    )
                ]
            ) from exc
        _store_provenance(pipeline, uow, stored, judged, ctx)
        return entry_response(stored, "201 Created", outcome)
    if e.method == "PUT" and e.resource is not None:
        superseded = superseded_current(uow, e.resource, e.current)
        if superseded is not None:
            current, held = superseded
            return entry_response(
                current, "200 OK", {"outcome": operation_outcome([*warnings, _superseded(e, held)])}
            )
        unchanged = unchanged_current(uow, e.resource, e.if_match, e.current)
        if unchanged is not None:
            return entry_response(unchanged, "200 OK", outcome)
        stored, created = uow.update(e.resource, if_match=e.if_match)
        _store_provenance(pipeline, uow, stored, judged, ctx)
        return entry_response(stored, "201 Created" if created else "200 OK", outcome)
    if e.method == "DELETE" and e.target_type and e.target_id:
        uow.delete(e.target_type, e.target_id, if_match=e.if_match)
        return {"response": {"status": "204 No Content"}}
    if e.method == "GET":
        path = e.url.split("?", 1)[0].strip("/").split("/")
        if len(path) == 2:
            stored = uow.read(path[0], path[1])
            return {
                "fullUrl": f"{stored.resource_type}/{stored.id}",
                "resource": stored.resource,
                "response": {"status": "200 OK", "etag": stored.etag},
            }
        raise InputError(
            [
                Issue(
                    "error",
                    "not-supported",
                    "Only GET Type/id is supported in a transaction",
                    expression=f"Bundle.entry[{e.index}].request.url",
                )
            ]
        )
    raise InputError(
        [Issue("error", "invalid", "Malformed entry", expression=f"Bundle.entry[{e.index}]")]
    )


def _store_provenance(
    pipeline: Pipeline,
    uow: Repository,
    stored: StoredResource,
    judged: list[Issue],
    ctx: ValidationContext,
) -> None:
    prov = pipeline.provenance_for(stored.resource, judged, ctx)
    if prov is not None:
        uow.create(prov)


def entry_response(stored: StoredResource, status: str, extra: JsonObject) -> JsonObject:
    return {
        "fullUrl": f"{stored.resource_type}/{stored.id}",
        "resource": stored.resource,
        "response": {
            "status": status,
            "location": f"{stored.resource_type}/{stored.id}/_history/{stored.version_id}",
            "etag": stored.etag,
            "lastUpdated": stored.resource["meta"]["lastUpdated"],
            **extra,
        },
    }


def _superseded(e: Entry, held: SourceEvent) -> Issue:
    return superseded_issue(
        f"{e.target_type}/{e.target_id}",
        held,
        event_of(e.resource),
        f"Bundle.entry[{e.index}].resource.meta",
    )
