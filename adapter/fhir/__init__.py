"""The thin layer over fhir.resources.R4B: parsing, identifiers, references."""

from __future__ import annotations

from adapter.fhir.identifiers import (
    NHS_NUMBER_SYSTEM,
    ODS_ORGANIZATION_SYSTEM,
    canonical_system,
    nhs_number_is_valid,
)
from adapter.fhir.parse import parse_json_bytes, structural_issues
from adapter.fhir.references import ParsedReference, iter_references, parse_reference
from adapter.fhir.types import JsonObject

__all__ = [
    "NHS_NUMBER_SYSTEM",
    "ODS_ORGANIZATION_SYSTEM",
    "JsonObject",
    "ParsedReference",
    "canonical_system",
    "iter_references",
    "nhs_number_is_valid",
    "parse_json_bytes",
    "parse_reference",
    "structural_issues",
]
