"""GET /fhir/metadata: a CapabilityStatement built from what is really implemented."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from adapter import __version__
from adapter.api.deps import BaseUrlDep, ServicesDep
from adapter.api.responses import FhirResponse
from adapter.api.revinclude import MAX_REVINCLUDED, revinclude_specs
from adapter.fhir.resource_types import SUPPORTED_TYPES
from adapter.fhir.types import JsonObject

router = APIRouter(tags=["metadata"])

INTERACTIONS = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]

#: Search result parameters that work for every type (search.py); `_contained` is reported ignored.
RESULT_PARAMS: list[JsonObject] = [
    {
        "name": "_summary",
        "type": "token",
        "documentation": "true, text, data, count and false, as R4 defines them; subsets are "
        "tagged SUBSETTED. Applies to matches (included resources come whole), and to read.",
    },
    {
        "name": "_elements",
        "type": "string",
        "documentation": "Top-level element names; mandatory elements, id and meta are always "
        "returned; unknown names are reported and ignored. Takes precedence over _summary "
        "(except count). Applies to matches, and to read.",
    },
]

#: Hooks other parts (SMART, operations) use to add truthful statements about themselves.
CAPABILITY_HOOKS: list[Any] = []


def capability_statement(services: Any, base: str) -> JsonObject:
    repo = services.repo
    supported = {rt: repo.supported_search_params(rt) for rt in SUPPORTED_TYPES}
    resources = []
    for rt in SUPPORTED_TYPES:
        params = [{"name": p, "type": _param_type(p)} for p in supported[rt]]
        rev_includes = revinclude_specs(rt, supported)
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
                **({"searchRevInclude": rev_includes} if rev_includes else {}),
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
                "searchParam": RESULT_PARAMS,
                "documentation": f"_revinclude adds at most {MAX_REVINCLUDED} resources to a "
                "page of results, and says so in an OperationOutcome entry when it stops there.",
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
