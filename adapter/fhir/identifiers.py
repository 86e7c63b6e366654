"""Canonical identifier systems, their legacy spellings, and the NHS number Modulus 11 check."""

from __future__ import annotations

from typing import Final

NHS_NUMBER_SYSTEM: Final = "https://fhir.nhs.uk/Id/nhs-number"
ODS_ORGANIZATION_SYSTEM: Final = "https://fhir.nhs.uk/Id/ods-organization-code"
ODS_SITE_SYSTEM: Final = "https://fhir.nhs.uk/Id/ods-site-code"
SDS_USER_SYSTEM: Final = "https://fhir.nhs.uk/Id/sds-user-id"
SDS_ROLE_PROFILE_SYSTEM: Final = "https://fhir.nhs.uk/Id/sds-role-profile-id"
GMC_SYSTEM: Final = "https://fhir.hl7.org.uk/Id/gmc-number"
GMP_SYSTEM: Final = "https://fhir.hl7.org.uk/Id/gmp-number"
UBRN_SYSTEM: Final = "https://fhir.nhs.uk/Id/ubr-number"

#: Legacy or mis-cased spellings seen in national artefacts (research/standards.md §0.6),
#: normalised on ingest to the canonical system. FHIR system URIs are case-sensitive, so this
#: table is explicit rather than a case-insensitive match.
SYSTEM_ALIASES: Final[dict[str, str]] = {
    "http://fhir.nhs.net/Id/nhs-number": NHS_NUMBER_SYSTEM,
    "https://fhir.nhs.net/Id/nhs-number": NHS_NUMBER_SYSTEM,
    "http://fhir.nhs.uk/Id/nhs-number": NHS_NUMBER_SYSTEM,
    "https://fhir.nhs.uk/id/nhs-number": NHS_NUMBER_SYSTEM,
    "http://fhir.nhs.net/Id/ods-organization-code": ODS_ORGANIZATION_SYSTEM,
    "https://fhir.nhs.uk/id/ods-organization-code": ODS_ORGANIZATION_SYSTEM,
    "http://fhir.nhs.uk/Id/ods-organization-code": ODS_ORGANIZATION_SYSTEM,
    "https://fhir.nhs.uk/Id/ods-organisation-code": ODS_ORGANIZATION_SYSTEM,
    "http://fhir.nhs.net/Id/ods-site-code": ODS_SITE_SYSTEM,
    "https://fhir.nhs.uk/id/ods-site-code": ODS_SITE_SYSTEM,
    "http://fhir.nhs.net/Id/sds-user-id": SDS_USER_SYSTEM,
    "https://fhir.nhs.uk/id/sds-user-id": SDS_USER_SYSTEM,
    "http://fhir.nhs.net/Id/ubr-number": UBRN_SYSTEM,
    "https://fhir.nhs.uk/id/ubr-number": UBRN_SYSTEM,
}

_WEIGHTS: Final = (10, 9, 8, 7, 6, 5, 4, 3, 2)


def canonical_system(system: str) -> str:
    return SYSTEM_ALIASES.get(system, system)


def nhs_number_is_valid(value: str) -> bool:
    """Modulus 11 only. A check digit that computes to 10 makes the number invalid outright; 11 means 0.

    Spaces (as written on letters, `999 123 4560`) are not accepted: FHIR carries the bare 10 digits.
    """
    if len(value) != 10 or not value.isascii() or not value.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(value[:9], _WEIGHTS, strict=True))
    check = 11 - (total % 11)
    if check == 11:
        check = 0
    if check == 10:
        return False
    return check == int(value[9])


def nhs_number_with_check_digit(first_nine: str) -> str | None:
    """Completes nine digits with their check digit, or None where no valid number exists."""
    total = sum(int(d) * w for d, w in zip(first_nine, _WEIGHTS, strict=True))
    check = 11 - (total % 11)
    if check == 11:
        check = 0
    if check == 10:
        return None
    return first_nine + str(check)


def ods_code_is_well_formed(value: str) -> bool:
    """ODS codes are 3-6 upper-case alphanumerics for organisations, up to 8 for sites (no lookup)."""
    return 3 <= len(value) <= 8 and value.isascii() and value.isalnum() and value.upper() == value


def normalise_identifier_systems(node: object) -> int:
    """Rewrites legacy identifier-system spellings to the canonical ones, in place; returns how many.

    Walks every object with a `system` (Identifier and Coding alike), so a legacy NHS-number system in
    `subject.identifier` is fixed as well as one on Patient.identifier.
    """
    changed = 0
    if isinstance(node, dict):
        system = node.get("system")
        if isinstance(system, str) and system in SYSTEM_ALIASES:
            node["system"] = SYSTEM_ALIASES[system]
            changed += 1
        for key, value in node.items():
            if not key.startswith("_"):
                changed += normalise_identifier_systems(value)
    elif isinstance(node, list):
        for item in node:
            changed += normalise_identifier_systems(item)
    return changed
