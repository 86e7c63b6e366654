"""Launch context: what patient, encounter and user an authorization request ends up with.

EHR launch: the EHR (or a test) first creates a context with POST /fhir/auth/launch and passes its
id as `launch`; standalone launch with `launch/patient`: the patient is chosen at approval (the
development login takes `dev_patient`). A granted patient/ scope always needs a patient context
(SMART 2.2: "the server SHALL establish a patient context").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapter.auth.scopes import parse_scopes
from adapter.auth.state import AuthState


class LaunchContextError(ValueError):
    """The request cannot be given the context its scopes need (becomes invalid_request)."""


@dataclass(frozen=True, slots=True)
class Approval:
    """What the approving user decided: who they are, and the patient they picked (standalone)."""

    fhir_user: str
    patient: str | None = None


def resolve_context(
    *, state: AuthState, scope: str, launch: str | None, approval: Approval
) -> dict[str, Any]:
    parsed = parse_scopes(scope)
    context: dict[str, Any] = {}
    if "launch" in parsed.other:
        if not launch:
            raise LaunchContextError("scope 'launch' needs the 'launch' parameter from the EHR")
        stored = state.get_launch(launch)
        if stored is None:
            raise LaunchContextError("unknown or expired launch")
        context.update(stored)
    elif launch:
        stored = state.get_launch(launch)
        if stored is None:
            raise LaunchContextError("unknown or expired launch")
        context.update(stored)
    if "launch/patient" in parsed.other and not context.get("patient"):
        if not approval.patient:
            raise LaunchContextError("launch/patient needs a patient to be selected")
        context["patient"] = approval.patient
        context["need_patient_banner"] = True
    if any(r.context == "patient" for r in parsed.rules) and not context.get("patient"):
        raise LaunchContextError(
            "patient/ scopes need a patient context (launch or launch/patient)"
        )
    if "launch/encounter" in parsed.other and not context.get("encounter"):
        raise LaunchContextError("launch/encounter needs an encounter in the launch context")
    context.setdefault("fhirUser", approval.fhir_user)
    if isinstance(context.get("patient"), str) and context["patient"].startswith("Patient/"):
        context["patient"] = context["patient"].split("/", 1)[1]
    return context
