"""Canonical URL bases of this adapter's policy vocabulary (profiles/policy/vocab/ holds the
CodeSystems and ValueSets) and the extensions the rules read."""

from __future__ import annotations

from typing import Final

BASE: Final = "https://fhir.cmh-adapter.example"
SD: Final = f"{BASE}/StructureDefinition/"
CS: Final = f"{BASE}/CodeSystem/"
#: Short form used in rule files: `{EXT}name` is `{SD}name`.
EXT: Final = SD
RULE_SYSTEM: Final = f"{BASE}/rules"

POLICY_OVERRIDE_URL: Final = f"{SD}policy-override"
ODS_SYSTEM: Final = "https://fhir.nhs.uk/Id/ods-organization-code"
JURISDICTION_SYSTEM: Final = f"{CS}policy-jurisdiction"
ISO_3166_2: Final = "urn:iso:std:iso:3166:-2"
#: Welsh health boards' ODS codes begin 7A (7A1 Betsi Cadwaladr ... 7A7 Aneurin Bevan).
WELSH_HEALTH_BOARD_ODS_PREFIX: Final = "7A"
#: Codes that only exist under the Mental Health (Wales) Measure: the data itself selects Wales.
WALES_ONLY_CODES: Final = frozenset(
    {
        (f"{CS}care-plan-type", "welsh-ctp"),
        (f"{CS}wales-request-type", "part3-assessment"),
        (f"{CS}wales-document-type", "part3-report"),
        (f"{CS}wales-document-type", "smhs-discharge-information"),
    }
)
