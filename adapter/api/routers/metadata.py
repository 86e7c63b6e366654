"""GET /fhir/metadata: a CapabilityStatement built from what is really implemented."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from adapter import __version__
from adapter.api.deps import BaseUrlDep, ServicesDep
from adapter.api.responses import FhirResponse
from adapter.fhir.resource_types import SUPPORTED_TYPES
from adapter.fhir.types import JsonObject

router = APIRouter(tags=["metadata"])

INTERACTIONS = [
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]

#: Hooks other parts (SMART, operations) use to add truthful statements about themselves.
CAPABILITY_HOOKS: list[Any] = []


def capability_statement(services: Any, base: str) -> JsonObject:
    repo = services.repo
    resources = []
    for rt in SUPPORTED_TYPES:
        params = [{"name": p, "type": _param_type(p)} for p in repo.supported_search_params(rt)]
        resources.append(
            {
                "type": rt,
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalUpdate": False,
                "conditionalDelete": "not-supported",
                "interaction": [{"code": c} for c in INTERACTIONS],
                "searchParam": params,
                "operation": [
                    {
                        "name": "validate",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                    }
                ],
            }
        )
    cs: JsonObject = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-26",
        "kind": "instance",
        "software": {"name": "cmh-fhir-adapter", "version": __version__},
        "implementation": {
            "description": "FHIR R4 adapter for UK community mental health services",
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "resource": resources,
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
                "operation": [
                    {
                        "name": "validate",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                    }
                ],
            }
        ],
    }
    for hook in CAPABILITY_HOOKS:
        hook(cs, services, base)
    return cs


def _param_type(name: str) -> str:
    if name == "_lastUpdated":
        return "date"
    if name in ("patient", "subject"):
        return "reference"
    return "token"


@router.get("/metadata")
def metadata(services: ServicesDep, base: BaseUrlDep) -> FhirResponse:
    return FhirResponse(capability_statement(services, base))
