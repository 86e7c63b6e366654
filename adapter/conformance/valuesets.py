"""ValueSet definitions: what `compose.include` / `compose.exclude` may name.

R4 valueset.html: `system` is the absolute URI of a code system (a contained code system is named
by its canonical URL, never by `#id`); an enumerated `concept.code` must exist in that system when
we hold it complete (terminology.py) and, for SNOMED CT, must at least be a well-formed concept id.
"""

from __future__ import annotations

import re
from typing import Final

from adapter.conformance.terminology import CodeSystemTable, KnownArtefacts
from adapter.fhir.types import JsonObject
from adapter.issue import Issue

SNOMED_CT: Final = "http://snomed.info/sct"
_ABSOLUTE_URI: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_CODING_VALUE: Final = re.compile(r"^(\S+?)(?:\|[^#]*)?#(.+)$")
_SCTID: Final = re.compile(r"^[1-9]\d{5,17}$")
#: Verhoeff tables (dihedral group D5), as used by SNOMED CT identifiers.
_D: Final = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P: Final = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def sctid_is_well_formed(code: str) -> bool:
    """6-18 digits, no leading zero, a concept/description/relationship partition, Verhoeff OK.

    Post-coordinated expressions (anything not all digits) are not judged here.
    """
    if not code.isdigit():
        return True
    if not _SCTID.match(code) or code[-3:-1] not in ("00", "01", "02", "10", "11", "12"):
        return False
    check = 0
    for i, digit in enumerate(reversed(code)):
        check = _D[check][_P[i % 8][int(digit)]]
    return check == 0


def compose_issues(include: JsonObject, path: str, known: KnownArtefacts) -> list[Issue]:
    """Issues for one ValueSet.compose.include or .exclude at `path`."""
    system = include.get("system")
    if not isinstance(system, str):
        return []
    if not _ABSOLUTE_URI.match(system):
        return [
            Issue(
                "error",
                "invalid",
                "ValueSet.compose.include.system must be an absolute URI (a contained code system "
                "is named by its canonical URL)",
                path,
            )
        ]
    issues: list[Issue] = _boolean_filter_issues(include, path, known.code_system(system))
    cs = known.code_system(system)
    if cs is not None:
        issues += _filter_issues(include, path, cs, known)
    for i, concept in enumerate(include.get("concept") or []):
        code = concept.get("code") if isinstance(concept, dict) else None
        if not isinstance(code, str):
            continue
        where = f"{path}.concept[{i}].code"
        if cs is not None and not cs.is_supplement and cs.names(code) is None:
            issues.append(
                Issue(
                    "error",
                    "code-invalid",
                    f"Unknown code '{code}' in the CodeSystem '{system}'",
                    where,
                )
            )
        elif system == SNOMED_CT and not sctid_is_well_formed(code):
            issues.append(
                Issue(
                    "error", "code-invalid", f"'{code}' is not a valid SNOMED CT identifier", where
                )
            )
    return issues


#: R4 codesystem.html#defined-props: the FHIR-defined boolean concept properties.
_BOOLEAN_PROPERTIES: Final = frozenset({"inactive", "notSelectable"})


def _boolean_filter_issues(
    include: JsonObject, path: str, cs: CodeSystemTable | None
) -> list[Issue]:
    """An `=` filter on a boolean property (FHIR-defined or declared boolean by the code system)
    takes 'true' or 'false'."""
    issues: list[Issue] = []
    for i, flt in enumerate(include.get("filter") or []):
        if not isinstance(flt, dict) or flt.get("op") != "=":
            continue
        prop, value = flt.get("property"), flt.get("value")
        if not isinstance(prop, str) or not isinstance(value, str) or value in ("true", "false"):
            continue
        declared = cs.property_types.get(prop) if cs is not None else None
        if declared == "boolean" or (declared is None and prop in _BOOLEAN_PROPERTIES):
            issues.append(
                Issue(
                    "error",
                    "invalid",
                    f"The value for a filter based on property '{prop}' must be either 'true' or "
                    f"'false', not '{value}'",
                    f"{path}.filter[{i}].value",
                )
            )
    return issues


def _filter_issues(
    include: JsonObject, path: str, cs: CodeSystemTable, known: KnownArtefacts
) -> list[Issue]:
    """A filter on a property of type Coding takes `system(|version)#code`, a code that exists."""
    issues: list[Issue] = []
    for i, flt in enumerate(include.get("filter") or []):
        if not isinstance(flt, dict) or not isinstance(flt.get("value"), str):
            continue
        if cs.property_types.get(str(flt.get("property"))) != "Coding" or flt.get("op") != "=":
            continue
        where = f"{path}.filter[{i}]"
        m = _CODING_VALUE.match(flt["value"])
        if m is None:
            issues.append(
                Issue(
                    "error",
                    "invalid",
                    f"The value for a filter on the Coding property '{flt.get('property')}' must be "
                    "in the format system(|version)#code",
                    where,
                )
            )
            continue
        target = known.code_system(m.group(1))
        if target is not None and target.names(m.group(2)) is None:
            issues.append(
                Issue(
                    "error",
                    "invalid",
                    f"The filter value names an unknown code in the CodeSystem '{m.group(1)}'",
                    where,
                )
            )
    return issues
