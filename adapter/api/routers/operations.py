"""FHIR operations, registered in one visible table: `$name` -> handler.

`$validate` always answers 200 with an OperationOutcome, whatever the verdict (R4 Resource-validate).
"""

from __future__ import annotations

from fastapi import APIRouter, Query

from adapter.api.deps import BodyDep, PipelineDep, known_type
from adapter.api.responses import FhirResponse
from adapter.errors import InputError
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.outcome import operation_outcome

router = APIRouter(tags=["operations"])


def _unwrap_parameters(body: JsonObject) -> tuple[JsonObject, list[str]]:
    """Accepts a bare resource, or Parameters with `resource` and optional `profile`."""
    if body.get("resourceType") != "Parameters":
        return body, []
    resource: JsonObject | None = None
    profiles: list[str] = []
    for p in body.get("parameter") or []:
        if p.get("name") == "resource" and isinstance(p.get("resource"), dict):
            resource = p["resource"]
        elif p.get("name") == "profile" and isinstance(
            p.get("valueUri") or p.get("valueCanonical"), str
        ):
            profiles.append(p.get("valueUri") or p.get("valueCanonical"))
    if resource is None:
        raise InputError(
            [
                Issue(
                    "error",
                    "required",
                    "Parameters has no 'resource' parameter",
                    expression="Parameters.parameter",
                )
            ]
        )
    return resource, profiles


def _validate(
    body: JsonObject, pipeline: PipelineDep, profile: list[str] | None, resource_type: str | None
) -> FhirResponse:
    resource, profiles = _unwrap_parameters(body)
    profiles += profile or []
    issues = pipeline.validate(resource, profiles=tuple(profiles))
    if resource_type and resource.get("resourceType") != resource_type:
        issues = [
            Issue(
                "error", "invalid", "resourceType does not match the URL", expression="resourceType"
            ),
            *issues,
        ]
    return FhirResponse(operation_outcome(issues), status_code=200)


@router.post("/$validate")
def validate_any(
    body: BodyDep, pipeline: PipelineDep, profile: list[str] | None = Query(default=None)
) -> FhirResponse:
    return _validate(body, pipeline, profile, None)


@router.post("/{resource_type}/$validate")
def validate_type(
    resource_type: str,
    body: BodyDep,
    pipeline: PipelineDep,
    profile: list[str] | None = Query(default=None),
) -> FhirResponse:
    known_type(resource_type)
    return _validate(body, pipeline, profile, resource_type)
