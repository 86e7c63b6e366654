"""The R4 RESTful API (https://hl7.org/fhir/R4/http.html) as one route table, in matching order.

The interactions live in crud.py (create, read, vread, update, delete), search.py and history.py;
patch.py has its own router. The one handler here is the whole-system POST of a transaction or
batch Bundle, which the Pipeline processes (adapter/pipeline/bundles.py).

Every interaction takes the caller's SmartGrant (`GrantDep`) and is checked against its scopes
before anything is touched, and again on each resource read or returned (patient compartment,
v2 constraints); each one is audited (`audited`). See adapter/auth/access.py. A read by id
(read, vread, instance history) of a record outside the grant answers 404 as if it were absent,
deleted records included; a scope that does not cover the type or interaction answers 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from fastapi import APIRouter, Request

from adapter.api.deps import BodyDep, PipelineDep
from adapter.api.responses import FhirResponse
from adapter.api.routers import crud, history, search
from adapter.api.security import GrantDep, audited, authorize_bundle, lookup_for
from adapter.errors import InputError
from adapter.issue import Issue

router = APIRouter(tags=["fhir"])


def post_bundle(
    request: Request, pipeline: PipelineDep, body: BodyDep, grant: GrantDep
) -> FhirResponse:
    kind = "batch" if body.get("type") == "batch" else "transaction"
    with audited(request, grant, kind, "Bundle") as note:
        if body.get("resourceType") != "Bundle":
            raise InputError(
                [
                    Issue(
                        "error",
                        "invalid",
                        "POST to the base must carry a transaction or batch Bundle",
                        expression="resourceType",
                    )
                ]
            )
        authorize_bundle(grant, body, lookup_for(request))
        return FhirResponse(pipeline.process_bundle(body, on_write=note.hook))


#: (method, path under /fhir, handler), registered in this order, which is the order of matching:
#: a literal segment (`_history`, `_search`) comes before the `{resource_type}` or `{id}` it would
#: otherwise match. The handler's name is the route's name and part of its OpenAPI operation id.
INTERACTIONS: Final[tuple[tuple[str, str, Callable[..., object]], ...]] = (
    ("POST", "/", post_bundle),
    ("POST", "", post_bundle),
    ("GET", "/_history", history.system_history),
    ("GET", "/{resource_type}", search.search_get),
    ("POST", "/{resource_type}/_search", search.search_post),
    ("POST", "/{resource_type}", crud.create),
    ("GET", "/{resource_type}/_history", history.type_history),
    ("GET", "/{resource_type}/{id}", crud.read),
    ("PUT", "/{resource_type}/{id}", crud.update),
    ("DELETE", "/{resource_type}/{id}", crud.delete),
    ("GET", "/{resource_type}/{id}/_history", history.instance_history),
    ("GET", "/{resource_type}/{id}/_history/{version_id}", crud.vread),
)

for _method, _path, _handler in INTERACTIONS:
    router.add_api_route(_path, _handler, methods=[_method])
