"""FHIR operations, registered in one visible table: `$name` -> handler.

`$validate` always answers 200 with an OperationOutcome, whatever the verdict (R4 Resource-validate).
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from adapter.api.deps import BodyDep, PipelineDep, known_type
from adapter.api.responses import FhirResponse
from adapter.api.security import GrantDep, audited, check_resource, require
from adapter.auth.scopes import SmartGrant
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


def _validate_allowed(grant: SmartGrant, resource: JsonObject) -> None:
    """$validate needs create or update on the type: validation looks up references in the store,
    so its issues could reveal other records. A Bundle is checked entry by entry."""
    if grant.is_development:
        return
    targets = [resource]
    if resource.get("resourceType") == "Bundle":
        targets = [
            e["resource"]
            for e in resource.get("entry") or []
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]
    for target in targets:
        resource_type = str(target.get("resourceType"))
        if not (grant.rules_for("c", resource_type) or grant.rules_for("u", resource_type)):
            require(grant, "create", resource_type)
        interaction = "create" if grant.rules_for("c", resource_type) else "update"
        check_resource(grant, interaction, target)


def _validate(
    request: Request,
    grant: SmartGrant,
    body: JsonObject,
    pipeline: PipelineDep,
    profile: list[str] | None,
    resource_type: str | None,
) -> FhirResponse:
    with audited(request, grant, "operation", resource_type, operation="$validate"):
        resource, profiles = _unwrap_parameters(body)
        _validate_allowed(grant, resource)
        profiles += profile or []
        issues = pipeline.validate(resource, profiles=tuple(profiles))
        if resource_type and resource.get("resourceType") != resource_type:
            issues = [
                Issue(
                    "error",
                    "invalid",
                    "resourceType does not match the URL",
                    expression="resourceType",
                ),
                *issues,
            ]
        return FhirResponse(operation_outcome(issues), status_code=200)


@router.post("/$validate")
def validate_any(
    request: Request,
    body: BodyDep,
    pipeline: PipelineDep,
    grant: GrantDep,
    profile: list[str] | None = Query(default=None),
) -> FhirResponse:
    return _validate(request, grant, body, pipeline, profile, None)


@router.post("/{resource_type}/$validate")
def validate_type(
    resource_type: str,
    request: Request,
    body: BodyDep,
    pipeline: PipelineDep,
    grant: GrantDep,
    profile: list[str] | None = Query(default=None),
) -> FhirResponse:
    known_type(resource_type)
    return _validate(request, grant, body, pipeline, profile, resource_type)
