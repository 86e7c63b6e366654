"""The R4 vital signs rule (observation-vitalsigns.html): an Observation of a vital sign conforms to
the core profile of that sign, whose code slice requires the sign's LOINC code ("magic code"). An
Observation coded with another system's code for a vital sign (SNOMED CT below, as the reference
validator maps them) must carry the LOINC code as well; other codes are allowed in addition.
"""

from __future__ import annotations

from typing import Final

from adapter.fhir.types import JsonObject
from adapter.issue import Issue

_LOINC: Final = "http://loinc.org"
_SNOMED: Final = "http://snomed.info/sct"

#: SNOMED CT code -> (profile name, profile id, required LOINC code).
_SNOMED_SIGNS: Final[dict[str, tuple[str, str, str]]] = {
    "276885007": ("Body temperature", "bodytemp", "8310-5"),
    "50373000": ("Body height", "bodyheight", "8302-2"),
    "27113001": ("Body weight", "bodyweight", "29463-7"),
    "363811000": ("Head circumference", "headcircum", "9843-4"),
    "364075005": ("Heart rate", "heartrate", "8867-4"),
    "86290005": ("Respiratory rate", "resprate", "9279-1"),
    "75367002": ("Blood pressure", "bp", "85354-9"),
    "60621009": ("Body mass index", "bmi", "39156-5"),
}


def vital_signs_issues(obs: JsonObject, path: str = "Observation") -> list[Issue]:
    code = obs.get("code")
    codings = (
        [c for c in (code.get("coding") or []) if isinstance(c, dict)]
        if isinstance(code, dict)
        else []
    )
    loinc = {c.get("code") for c in codings if c.get("system") == _LOINC}
    issues: list[Issue] = []
    for c in codings:
        sign = _SNOMED_SIGNS.get(str(c.get("code"))) if c.get("system") == _SNOMED else None
        if sign is None or sign[2] in loinc:
            continue
        name, profile, magic = sign
        issues.append(
            Issue(
                "error",
                "business-rule",
                f"An Observation with the SNOMED CT code {c.get('code')} must conform to the "
                f"{name} profile (http://hl7.org/fhir/StructureDefinition/{profile}), which "
                f"requires the LOINC code {magic}; other codes are allowed in addition",
                f"{path}.code",
            )
        )
        loinc.add(magic)  # one issue per sign
    return issues
