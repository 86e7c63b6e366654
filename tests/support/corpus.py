"""The official R4 examples the corpus tests and the conformance bench both read."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

EXAMPLES_TGZ = "hl7.fhir.r4.examples-4.0.1.tgz"

#: The clinical and participant types whose official examples must validate with no error.
EXAMPLE_TYPES: frozenset[str] = frozenset(
    {
        "ServiceRequest", "CarePlan", "CareTeam", "Goal", "Questionnaire",
        "QuestionnaireResponse", "Encounter", "EpisodeOfCare", "RiskAssessment", "Observation",
        "Composition", "Flag", "Task", "Provenance", "AuditEvent", "Patient", "Practitioner",
        "PractitionerRole", "Organization", "DocumentReference", "Consent", "Condition",
    }
)  # fmt: skip


def example_files(tgz: Path, types: frozenset[str]) -> Iterator[tuple[str, bytes]]:
    """(file name, bytes) of the package's `<Type>-<id>.json` files whose type is in `types`."""
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if name.split("-", 1)[0] not in types:
                continue
            fh = tar.extractfile(member)
            if fh is not None:
                yield name, fh.read()
