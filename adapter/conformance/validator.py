"""Runs the conformance checks over one resource and returns every issue.

Structural parsing (fhir.resources R4B) is done by the pipeline first, so that structurally invalid
input is answered 400 before anything here runs; everything here answers 422.
"""

from __future__ import annotations

from adapter.conformance.identifiers import identifier_issues
from adapter.conformance.references import reference_issues
from adapter.context import ValidationContext
from adapter.fhir.types import JsonObject
from adapter.issue import Issue


class ConformanceValidator:
    """The conformance stage. Built once at start-up; `validate` is pure and thread-safe."""

    def validate(self, resource: JsonObject, ctx: ValidationContext) -> list[Issue]:
        issues: list[Issue] = []
        issues += identifier_issues(resource)
        issues += reference_issues(resource, ctx)
        return issues
