"""The resource types the adapter holds, and the interactions it offers on each."""

from __future__ import annotations

from typing import Final

#: Clinical record types of the five artefacts, plus the participants and audit trail around them.
SUPPORTED_TYPES: Final[tuple[str, ...]] = (
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "HealthcareService",
    "RelatedPerson",
    "ServiceRequest",
    "CarePlan",
    "CareTeam",
    "Goal",
    "Condition",
    "RiskAssessment",
    "Flag",
    "Questionnaire",
    "QuestionnaireResponse",
    "Observation",
    "Encounter",
    "EpisodeOfCare",
    "Composition",
    "DocumentReference",
    "Consent",
    "Task",
    "Provenance",
    "AuditEvent",
    "MessageHeader",
    "Communication",
    "Appointment",
)

SUPPORTED: Final[frozenset[str]] = frozenset(SUPPORTED_TYPES)
