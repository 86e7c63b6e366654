"""Runs the conformance checks over one resource and returns every issue.

Structural parsing (fhir.resources R4B) is done by the pipeline first, so that structurally invalid
input is answered 400 before anything here runs; everything here answers 422. The order is: the
instance walk (formats, bindings, ele-1, invariants), references, UK identifiers, profiles (from
meta.profile and ctx.profiles) and, for a QuestionnaireResponse, its Questionnaire.
"""

from __future__ import annotations

from pathlib import Path

from adapter.conformance.definitions import core_definitions
from adapter.conformance.identifiers import identifier_issues
from adapter.conformance.invariants import InvariantRunner
from adapter.conformance.references import reference_issues
from adapter.conformance.structure import InstanceWalker, WalkResult
from adapter.context import ValidationContext
from adapter.fhir.types import JsonObject
from adapter.issue import Issue


class ConformanceValidator:
    """The conformance stage. Built once at start-up; `validate` is pure and thread-safe."""

    def __init__(self, *, profiles_dir: Path | None = None) -> None:
        if profiles_dir is None:
            from adapter.settings import Settings

            profiles_dir = Settings().profiles_dir
        self.profiles_dir = profiles_dir
        self._walker = InstanceWalker(core_definitions(), InvariantRunner())

    def validate(self, resource: JsonObject, ctx: ValidationContext) -> list[Issue]:
        rt = str(resource.get("resourceType", "Resource"))
        walk = WalkResult()
        self._walker.walk_resource(resource, rt, None, walk)
        issues = walk.issues
        issues += reference_issues(
            walk.references, ctx, own_bundle=resource if rt == "Bundle" else None
        )
        issues += identifier_issues(resource)
        return issues
