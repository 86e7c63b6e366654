"""FHIR messaging in the BaRS pattern (standards.md §2): a message Bundle in, a response message out.

`process_message` is transport-free (the router in `adapter/api/routers/messaging.py` adds HTTP,
SMART scopes and audit). The message is mapped by the mapping whose `source.event` is the
MessageHeader event, then judged and stored as one unit through the pipeline (`unit.submit`).

Idempotency: every mapped resource has a deterministic id, and the MessageHeader itself is stored
(id from the sender's MessageHeader.id). Re-sending the same message writes nothing and answers the
same `ok` response; re-using a message id for different content is refused as 409 `duplicate`
(BaRS REC_CONFLICT, "already processed").

Errors (standards.md §2.5): an OperationOutcome whose error issues carry a
`https://fhir.nhs.uk/CodeSystem/http-error-codes` REC_ coding. When the message could be identified,
it is wrapped in a response message whose MessageHeader.response.code is `fatal-error` (or
`transient-error` for a store outage), with `response.details` pointing at the OperationOutcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import exc as sa_exc

from adapter.errors import AdapterError, Gone, NotFound
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.mapping.engine import MappedResource
from adapter.mapping.ids import deterministic_id
from adapter.mapping.inbound import Inbound
from adapter.mapping.unit import plan, submit, transaction_bundle
from adapter.outcome import operation_outcome
from adapter.sources.fhir_json import record_from_resource

EVENTS_SYSTEM: Final = "https://fhir.nhs.uk/CodeSystem/message-events-bars"
HTTP_ERROR_CODES: Final = "https://fhir.nhs.uk/CodeSystem/http-error-codes"
RESPONSE_EVENT: Final = {
    "servicerequest-request": "servicerequest-response",
    "booking-request": "booking-response",
}
REC_CODES: Final = {
    400: "REC_BAD_REQUEST",
    401: "REC_UNAUTHORIZED",
    403: "REC_FORBIDDEN",
    404: "REC_NOT_FOUND",
    409: "REC_CONFLICT",
    422: "REC_UNPROCESSABLE_ENTITY",
    500: "REC_SERVER_ERROR",
    503: "REC_SERVICE_UNAVAILABLE",
}

Authorize = Callable[[JsonObject], None]


@dataclass(slots=True)
class MessageOutcome:
    status: int
    body: JsonObject
    #: `ok`, `transient-error` or `fatal-error`; None when no response message could be made
    code: str | None = None
    focus: str | None = None
    written: list[str] = field(default_factory=list)


def outcome_with_rec_codes(issues: list[Issue], status: int) -> JsonObject:
    """An OperationOutcome whose error issues also carry the BaRS REC_ http-error-code."""
    oo = operation_outcome(issues, id=str(uuid.uuid4()))
    rec = REC_CODES.get(status, "REC_SERVER_ERROR" if status >= 500 else "REC_BAD_REQUEST")
    for issue in oo["issue"]:
        if issue["severity"] in ("fatal", "error"):
            details = issue.setdefault("details", {})
            details.setdefault("coding", []).append({"system": HTTP_ERROR_CODES, "code": rec})
    return oo


def _bad(status: int, code: str, text: str, expression: str) -> MessageOutcome:
    issues = [Issue("error", code, text, expression=expression)]  # type: ignore[arg-type]
    return MessageOutcome(status, outcome_with_rec_codes(issues, status))


def _header(bundle: JsonObject) -> JsonObject | None:
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        return None
    first = entries[0].get("resource")
    return (
        first if isinstance(first, dict) and first.get("resourceType") == "MessageHeader" else None
    )


def _focus_resource(bundle: JsonObject, header: JsonObject) -> JsonObject | None:
    focus = header.get("focus") or []
    wanted = focus[0].get("reference") if focus and isinstance(focus[0], dict) else None
    if not wanted:
        return None
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        local = f"{resource.get('resourceType')}/{resource.get('id')}"
        if wanted in (entry.get("fullUrl"), local):
            return resource
    return None


def _response(
    request: JsonObject,
    header: JsonObject,
    code: str,
    *,
    base_url: str,
    now: str,
    focus: JsonObject | None,
    issues: list[Issue],
    status: int,
) -> JsonObject:
    """The response message: MessageHeader (response.code), the focus as stored, an OperationOutcome."""
    event = str((header.get("eventCoding") or {}).get("code", ""))
    message_id = str(header.get("id") or request.get("id") or "")
    response_header_id = deterministic_id("MessageHeader", message_id, "response")
    oo = (
        outcome_with_rec_codes(issues, status)
        if code != "ok"
        else operation_outcome(issues, id=str(uuid.uuid4()))
    )
    response_header: JsonObject = {
        "resourceType": "MessageHeader",
        "id": response_header_id,
        "eventCoding": {
            "system": EVENTS_SYSTEM,
            "code": RESPONSE_EVENT.get(event, f"{event}-response"),
        },
        "destination": [{"endpoint": str((header.get("source") or {}).get("endpoint", "unknown"))}],
        "source": {"endpoint": base_url},
        "response": {
            "identifier": str(request.get("id") or message_id),
            "code": code,
            "details": {"reference": f"urn:uuid:{oo['id']}"},
        },
    }
    entries: list[JsonObject] = [
        {"fullUrl": f"urn:uuid:{response_header_id}", "resource": response_header}
    ]
    if focus is not None:
        ref = f"{focus['resourceType']}/{focus['id']}"
        response_header["focus"] = [{"reference": ref}]
        entries.append({"fullUrl": f"{base_url}/{ref}", "resource": focus})
    entries.append({"fullUrl": f"urn:uuid:{oo['id']}", "resource": oo})
    return {
        "resourceType": "Bundle",
        "id": deterministic_id("Bundle", message_id, "response"),
        "meta": {"lastUpdated": now},
        "type": "message",
        "timestamp": now,
        "entry": entries,
    }


def process_message(
    inbound: Inbound,
    bundle: JsonObject,
    *,
    base_url: str,
    authorize: Authorize,
    _settled: bool = False,
) -> MessageOutcome:
    """Maps, judges and stores one message; answers the response message BaRS expects.

    A new MessageHeader is written create-only, so of two messages that reuse one id at the same
    moment only one is stored; the other is answered again from what is then stored (the same
    answer for an identical re-send, 409 for different content)."""
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "message":
        return _bad(
            400, "invalid", "$process-message takes a Bundle of type message", "Bundle.type"
        )
    header = _header(bundle)
    if header is None:
        return _bad(
            400,
            "invalid",
            "The first entry of a message Bundle is its MessageHeader",
            "Bundle.entry[0]",
        )
    if not (bundle.get("meta") or {}).get("versionId"):
        return _bad(
            400,
            "invariant",
            "Bundle.meta.versionId must carry the application version (BaRS)",
            "Bundle.meta.versionId",
        )
    if not header.get("id"):
        return _bad(
            400,
            "required",
            "MessageHeader.id identifies the message (re-sends are matched on it)",
            "Bundle.entry[0].resource.id",
        )
    now = inbound.pipeline.clock.now().isoformat()
    event = str((header.get("eventCoding") or {}).get("code", ""))
    spec = inbound.registry.for_event(event)

    def answer(
        status: int, code: str, issues: list[Issue], focus: JsonObject | None = None
    ) -> MessageOutcome:
        body = _response(
            bundle,
            header,
            code,
            base_url=base_url,
            now=now,
            focus=focus,
            issues=issues,
            status=status,
        )
        return MessageOutcome(
            status, body, code, f"{focus['resourceType']}/{focus['id']}" if focus else None
        )

    if spec is None:
        return answer(
            422,
            "fatal-error",
            [
                Issue(
                    "error",
                    "not-supported",
                    f"Message event '{event}' is not supported here",
                    expression="MessageHeader.eventCoding",
                )
            ],
        )
    source_focus = _focus_resource(bundle, header)
    if source_focus is None:
        return answer(
            400,
            "fatal-error",
            [
                Issue(
                    "error",
                    "invariant",
                    "MessageHeader.focus must reference an entry of the message",
                    expression="MessageHeader.focus",
                )
            ],
        )
    record = record_from_resource(bundle, f"message {header['id']}")
    result = inbound.map(spec, record)
    if any(i.is_blocking for i in result.issues):
        return answer(400, "fatal-error", result.issues)
    try:
        authorize(transaction_bundle([m.resource for m in result.resources]))
        planned = plan(inbound.pipeline, result.resources)
        to_write, _ = planned
        header_ref = next(
            (
                m.reference
                for m in result.resources
                if m.resource["resourceType"] == "MessageHeader"
            ),
            None,
        )
        if (
            header_ref is not None
            and to_write
            and not any(f"{r['resourceType']}/{r['id']}" == header_ref for r in to_write)
        ):
            return answer(
                409,
                "fatal-error",
                [
                    Issue(
                        "error",
                        "duplicate",
                        "This MessageHeader.id was already processed with different content; "
                        "send a new message id",
                        expression="MessageHeader.id",
                    )
                ],
            )
        header_is_new = header_ref is not None and any(
            f"{r['resourceType']}/{r['id']}" == header_ref for r in to_write
        )
        outcome = submit(
            inbound.pipeline,
            result,
            planned,
            create_only={header_ref} if header_is_new and header_ref is not None else (),
        )
    except AdapterError as exc:
        code = "transient-error" if exc.status in (502, 503, 504) else "fatal-error"
        return answer(exc.status, code, exc.issues)
    except sa_exc.OperationalError:
        return answer(
            503,
            "transient-error",
            [Issue("error", "transient", "The store is unavailable; retry later")],
        )
    if outcome.status == "rejected" and outcome.http_status == 412 and not _settled:
        # a concurrent message with this MessageHeader.id was stored first: answer against it
        return process_message(
            inbound, bundle, base_url=base_url, authorize=authorize, _settled=True
        )
    if outcome.status == "rejected":
        status = outcome.http_status if outcome.http_status >= 400 else 422
        return answer(status, "fatal-error", outcome.issues)
    focus = _stored_focus(inbound, result.resources, str(source_focus.get("resourceType")))
    out = answer(200, "ok", [i for i in outcome.issues if i.severity != "information"], focus)
    out.written = outcome.written
    return out


def _references_after_plan(inbound: Inbound, mapped: MappedResource) -> list[str]:
    """A found-or-created resource may live under the stored id, not the mapped one."""
    if mapped.match is None:
        return []
    from adapter.store.repository import SearchParam, find_one_or_none

    system, value = mapped.match
    rt = str(mapped.resource["resourceType"])
    found = find_one_or_none(
        inbound.pipeline.repo, rt, [SearchParam("identifier", (f"{system}|{value}",))]
    )
    return [f"{rt}/{found.id}"] if found is not None else []


def _stored_focus(
    inbound: Inbound, resources: list[MappedResource], resource_type: str
) -> JsonObject | None:
    for mapped in resources:
        if mapped.resource["resourceType"] == resource_type:
            ref = next((r for r in _references_after_plan(inbound, mapped)), mapped.reference)
            rt, _, rid = ref.partition("/")
            try:
                return inbound.pipeline.repo.read(rt, rid).resource
            except (NotFound, Gone):
                return None
    return None
