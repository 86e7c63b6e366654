"""The Patient compartment (R4 CompartmentDefinition/patient), for the types this adapter holds.

A `patient/` scope reaches only resources in the launch patient's compartment. Membership is decided
on the resource itself (the elements below, which the R4 definition names through its search
parameters), so it holds for reads, search results, includes, history versions and writes alike.

Deliberately absent: AuditEvent (the audit trail is for system scopes only), and the types R4 leaves
outside the compartment (Practitioner, PractitionerRole, Organization, Location, HealthcareService,
Questionnaire, MessageHeader): a patient/ scope never reaches them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

from adapter.fhir.references import parse_reference
from adapter.fhir.types import JsonObject, JsonValue

#: resource type -> element paths whose references put a resource in a Patient's compartment.
PATIENT_COMPARTMENT: Final[Mapping[str, tuple[str, ...]]] = {
    "Patient": ("link.other",),
    "RelatedPerson": ("patient",),
    "ServiceRequest": ("subject", "performer"),
    "CarePlan": ("subject", "activity.detail.performer"),
    "CareTeam": ("subject", "participant.member"),
    "Goal": ("subject",),
    "Condition": ("subject", "asserter"),
    "RiskAssessment": ("subject",),
    "Flag": ("subject",),
    "QuestionnaireResponse": ("subject", "author"),
    "Observation": ("subject", "performer"),
    "Encounter": ("subject",),
    "EpisodeOfCare": ("patient",),
    "Composition": ("subject", "author", "attester.party"),
    "DocumentReference": ("subject", "author"),
    "Consent": ("patient",),
    "Task": ("for",),
    "Provenance": ("target",),
    "Communication": ("subject", "sender", "recipient"),
    "Appointment": ("participant.actor",),
}

#: Search parameter of the embedded store that narrows a type to one patient ("patient=Patient/x").
NARROWING_PARAM: Final[Mapping[str, str]] = {
    rt: "patient"
    for rt in PATIENT_COMPARTMENT
    if rt not in ("Patient", "RelatedPerson", "Communication", "Appointment")
}


def _walk(node: JsonValue, parts: list[str]) -> Iterator[JsonValue]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, parts)
        return
    if not parts:
        yield node
        return
    if isinstance(node, dict) and parts[0] in node:
        yield from _walk(node[parts[0]], parts[1:])


def referenced_patients(resource: JsonObject) -> set[str]:
    """Ids of the Patients this resource's compartment elements point at (relative or absolute)."""
    found: set[str] = set()
    for path in PATIENT_COMPARTMENT.get(str(resource.get("resourceType")), ()):
        for value in _walk(resource, path.split(".")):
            if not isinstance(value, dict) or not isinstance(value.get("reference"), str):
                continue
            parsed = parse_reference(value["reference"])
            if (
                parsed.kind in ("relative", "absolute")
                and parsed.resource_type == "Patient"
                and parsed.id
            ):
                found.add(parsed.id)
    return found


def in_patient_compartment(resource: JsonObject, patient_id: str) -> bool:
    """True if `resource` is in Patient/`patient_id`'s compartment (the Patient itself included)."""
    resource_type = resource.get("resourceType")
    if resource_type == "Patient" and resource.get("id") == patient_id:
        return True
    if resource_type not in PATIENT_COMPARTMENT:
        return False
    return patient_id in referenced_patients(resource)
