"""FHIR messaging and mapped conversions: `POST /$process-message` (BaRS) and `POST /$convert-ers`.

Both map through `mappings/` and store through the pipeline (`adapter.mapping`); this router adds
SMART scopes (each mapped resource is authorised as if written alone, `authorize_bundle`), the audit
trail, and BaRS request/correlation headers echoed back (standards.md §2.1, §2.5).
"""

from __future__ import annotations

import threading
from typing import ClassVar

from fastapi import APIRouter, Request

from adapter.api.deps import BaseUrlDep, BodyDep, ServicesDep
from adapter.api.responses import FhirResponse
from adapter.api.security import GrantDep, audited, authorize_bundle, lookup_for, require
from adapter.errors import AdapterError, InputError
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.mapping.inbound import Inbound
from adapter.mapping.loader import load_registry
from adapter.mapping.messaging import MessageOutcome, outcome_with_rec_codes, process_message
from adapter.mapping.unit import submit, transaction_bundle
from adapter.outcome import operation_outcome
from adapter.sources.fhir_json import record_from_resource
from adapter.wiring import Services

router = APIRouter(tags=["messaging"])
_LOCK = threading.Lock()
_ECHO = ("x-request-id", "x-correlation-id")


class _Answered(AdapterError):
    """Carries a finished error answer out of `audited`, so the audit records the failure status."""

    status: ClassVar[int] = 400

    def __init__(self, outcome: MessageOutcome):
        super().__init__([Issue("error", "processing", f"message answered {outcome.status}")])
        self.outcome = outcome


_ANSWERED: dict[int, type[_Answered]] = {}


def _answered(outcome: MessageOutcome) -> _Answered:
    cls = _ANSWERED.get(outcome.status)
    if cls is None:
        cls = type(f"_Answered{outcome.status}", (_Answered,), {"status": outcome.status})
        _ANSWERED[outcome.status] = cls
    return cls(outcome)


def _inbound(request: Request, services: Services) -> Inbound:
    """One Inbound (mappings loaded and compiled once) per app."""
    inbound: Inbound | None = getattr(request.app.state, "mapping_inbound", None)
    if inbound is None:
        with _LOCK:
            inbound = getattr(request.app.state, "mapping_inbound", None)
            if inbound is None:
                inbound = Inbound(services.pipeline, load_registry(services.settings.mappings_dir))
                request.app.state.mapping_inbound = inbound
    return inbound


def _echo(request: Request) -> dict[str, str]:
    return {name: request.headers[name] for name in _ECHO if name in request.headers}


@router.post("/$process-message")
def process_message_endpoint(
    request: Request, body: BodyDep, grant: GrantDep, services: ServicesDep, base: BaseUrlDep
) -> FhirResponse:
    """BaRS `$process-message`: a message Bundle in, the response message out (200 `ok`, or the
    BaRS status with `fatal-error`/`transient-error` and an OperationOutcome)."""
    require(grant, "create", "ServiceRequest")
    lookup = lookup_for(request)
    inbound = _inbound(request, services)
    try:
        with audited(
            request, grant, "operation", "ServiceRequest", operation="$process-message"
        ) as note:
            outcome = process_message(
                inbound,
                body,
                base_url=base,
                authorize=lambda bundle: authorize_bundle(grant, bundle, lookup),
            )
            if outcome.focus:
                note.resource_id = outcome.focus.split("/", 1)[1]
            if outcome.status >= 400:
                raise _answered(outcome)
    except _Answered as answered:
        outcome = answered.outcome
    return FhirResponse(outcome.body, status_code=outcome.status, headers=_echo(request))


def _unchanged_response(references: list[str]) -> JsonObject:
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {
                "response": {
                    "status": "200 OK",
                    "location": ref,
                    "outcome": operation_outcome(
                        [Issue("information", "informational", "Already stored; unchanged")]
                    ),
                }
            }
            for ref in references
        ],
    }


@router.post("/$convert-ers")
def convert_ers(
    request: Request, body: BodyDep, grant: GrantDep, services: ServicesDep
) -> FhirResponse:
    """An e-RS STU3 ReferralRequest (A005 shape) -> R4 ServiceRequest (+ Patient, DocumentReferences),
    stored; answers the transaction-response Bundle (or, for a re-send, the unchanged entries)."""
    require(grant, "create", "ServiceRequest")
    inbound = _inbound(request, services)
    resource_type = str(body.get("resourceType"))
    spec = inbound.registry.for_resource(resource_type)
    if spec is None:
        raise InputError(
            [
                Issue(
                    "error",
                    "not-supported",
                    f"No mapping converts a {resource_type}",
                    expression="resourceType",
                )
            ]
        )
    lookup = lookup_for(request)
    with audited(request, grant, "operation", "ServiceRequest", operation="$convert-ers"):
        result = inbound.map(spec, record_from_resource(body))
        authorize_bundle(grant, transaction_bundle([m.resource for m in result.resources]), lookup)
        outcome = submit(inbound.pipeline, result)
        if outcome.status == "rejected":
            status = outcome.http_status if outcome.http_status >= 400 else 422
            return FhirResponse(
                outcome_with_rec_codes(outcome.issues, status),
                status_code=status,
                headers=_echo(request),
            )
        payload = (
            outcome.response
            if outcome.response is not None
            else _unchanged_response(outcome.unchanged)
        )
        return FhirResponse(payload, status_code=200, headers=_echo(request))
