"""R4 history (https://hl7.org/fhir/R4/http.html#history) at system, type and instance level.

Each version in a history Bundle is checked against the caller's grant on its own: a resource may
have moved between patients. System history needs an unconstrained `*.s` scope; instance history
answers 404 for a record the grant could not read (crud.py:read_visible). fhir_rest.py routes them.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from fastapi import Request

from adapter.api.deps import BaseUrlDep, RepoDep, known_type
from adapter.api.responses import FhirResponse
from adapter.api.routers.crud import read_visible
from adapter.api.security import GrantDep, audited, filter_bundle_for_grant, require
from adapter.auth.scopes import SmartGrant
from adapter.errors import Forbidden, Gone
from adapter.fhir.search import parse_search
from adapter.fhir.types import JsonObject
from adapter.issue import Issue


def _history_bundle(page: Any, base: str) -> JsonObject:
    entries = []
    for s in page.versions:
        entry: JsonObject = {"fullUrl": f"{base}/{s.resource_type}/{s.id}"}
        if s.deleted:
            entry["request"] = {"method": "DELETE", "url": f"{s.resource_type}/{s.id}"}
            entry["response"] = {"status": "204", "etag": s.etag}
        else:
            entry["resource"] = s.resource
            entry["request"] = {
                "method": "POST" if s.version_id == 1 else "PUT",
                "url": s.resource_type if s.version_id == 1 else f"{s.resource_type}/{s.id}",
            }
            entry["response"] = {"status": "201" if s.version_id == 1 else "200", "etag": s.etag}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "history", "total": page.total, "entry": entries}


def _filter_history(grant: SmartGrant, bundle: JsonObject, interaction: str) -> JsonObject:
    """History versions are checked one by one: a resource may have moved between patients."""
    if grant.is_development:
        return bundle
    out = filter_bundle_for_grant(grant, bundle, match_interaction=interaction)
    if any(r.context == "patient" for r in grant.rules):
        out["entry"] = [e for e in out["entry"] if isinstance(e.get("resource"), dict)]
        out.pop("total", None)
    return out


def _history_params(request: Request) -> tuple[int, int]:
    settings = request.app.state.services.settings
    query, _ = parse_search(
        [(k, v) for k, v in request.query_params.multi_items() if k in ("_count", "_offset")],
        default_count=settings.default_page_size,
        max_count=settings.max_page_size,
    )
    return query.count, query.offset


def system_history(
    request: Request, repo: RepoDep, base: BaseUrlDep, grant: GrantDep
) -> FhirResponse:
    with audited(request, grant, "history-system"):
        if not any(
            r.resource_type == "*"
            and r.context != "patient"
            and "s" in r.permissions
            and not r.constraints
            for r in grant.rules
        ):
            raise Forbidden(
                [Issue("error", "forbidden", "System history needs a user/*.s or system/*.s scope")]
            )
        count, offset = _history_params(request)
        page = repo.history(None, None, count=count, offset=offset)
        return FhirResponse(_history_bundle(page, base))


def type_history(
    resource_type: str, request: Request, repo: RepoDep, base: BaseUrlDep, grant: GrantDep
) -> FhirResponse:
    known_type(resource_type)
    with audited(request, grant, "history-type", resource_type):
        require(grant, "history-type", resource_type)
        count, offset = _history_params(request)
        page = repo.history(resource_type, None, count=count, offset=offset)
        return FhirResponse(_filter_history(grant, _history_bundle(page, base), "search"))


def instance_history(
    resource_type: str, id: str, request: Request, repo: RepoDep, base: BaseUrlDep, grant: GrantDep
) -> FhirResponse:
    known_type(resource_type)
    with audited(request, grant, "history-instance", resource_type, id):
        require(grant, "history-instance", resource_type)
        with suppress(Gone):  # deleted, and the grant could see it: the history shows that
            read_visible(repo, grant, resource_type, id)  # absent or hidden: 404
        count, offset = _history_params(request)
        page = repo.history(resource_type, id, count=count, offset=offset)
        return FhirResponse(_filter_history(grant, _history_bundle(page, base), "read"))
