"""R4 interactions on one resource: create, read, vread, update, delete (fhir_rest.py routes them).

Follows https://hl7.org/fhir/R4/http.html: ETag `W/"n"`, Location, Last-Modified, `Prefer: return=`,
`If-None-Exist`, `If-Match` (412 when stale). Writes go to the Pipeline; reads go to the Repository.
The write response and the grant check of the current version are shared with patch.py; the
visibility of a record by id (`read_visible`) with instance history (history.py).
"""

from __future__ import annotations

from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import Header, Request
from starlette.responses import Response

from adapter.api.deps import BaseUrlDep, BodyDep, PipelineDep, RepoDep, known_type
from adapter.api.responses import FhirResponse
from adapter.api.security import GrantDep, audited, check_readable, check_resource, require
from adapter.api.summary import parse_elements, parse_summary, select_elements, summarise
from adapter.auth.scopes import SmartGrant
from adapter.errors import Gone, InputError, NotFound
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.outcome import operation_outcome
from adapter.pipeline import WriteResult, parse_etag
from adapter.store.repository import StoredResource

PreferHeader = Annotated[str | None, Header(alias="Prefer")]


def _resource_headers(stored: StoredResource, base: str) -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Last-Modified": format_datetime(stored.last_updated, usegmt=True),
        "Location": f"{base}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}",
    }


def write_response(result: WriteResult, base: str, prefer: str | None) -> Response:
    stored = result.stored
    assert stored is not None
    headers = _resource_headers(stored, base)
    if prefer and "return=minimal" in prefer:
        return Response(status_code=result.status, headers=headers)
    if prefer and "return=OperationOutcome" in prefer:
        return FhirResponse(
            operation_outcome(result.issues), status_code=result.status, headers=headers
        )
    return FhirResponse(stored.resource, status_code=result.status, headers=headers)


def check_existing(
    request: Request, grant: SmartGrant, interaction: str, resource_type: str, id: str
) -> None:
    """Update, delete and history also need the *current* version to be within the grant."""
    if grant.is_development:
        return
    try:
        existing = request.app.state.services.repo.read(resource_type, id)
    except (NotFound, Gone):
        return
    check_resource(grant, interaction, existing.resource)


def _not_known(resource_type: str, id: str) -> str:
    return f"{resource_type}/{id} is not known"  # the store's words for an absent resource


def _hide_deleted_unless_visible(
    repo: Any, grant: SmartGrant, resource_type: str, id: str, missing_text: str
) -> None:
    """A deleted record answers 410 only to a grant that could see its last content; anyone else
    gets the 404 of an absent one (a 410 would confirm that another patient's record existed)."""
    if grant.is_development:
        return
    offset = 0
    while True:
        page = repo.history(resource_type, id, count=50, offset=offset)
        for version in page.versions:
            if not version.deleted:
                check_readable(grant, "read", version.resource, missing_text=missing_text)
                return
        if not page.has_next:
            raise NotFound(missing_text)
        offset += len(page.versions)


def _subset_for_read(request: Request, resource: JsonObject) -> JsonObject:
    """`_summary` and `_elements` on a read (R4 allows both). `_elements` wins over `_summary`;
    unknown element names are ignored (a read has no place for an outcome); `count` is search only."""
    params = request.query_params
    summary = parse_summary(params.getlist("_summary"))
    if summary == "count":
        raise InputError(
            [Issue("error", "value", "_summary=count applies to searches", expression="_summary")]
        )
    elements = parse_elements(params.getlist("_elements"))
    if elements:
        return select_elements(resource, elements)
    return summarise(resource, summary)


def read_visible(repo: Any, grant: SmartGrant, resource_type: str, id: str) -> StoredResource:
    """The current version, or 404 when it is absent or outside the grant; 410 as
    `_hide_deleted_unless_visible` allows."""
    try:
        stored: StoredResource = repo.read(resource_type, id)
    except Gone:
        _hide_deleted_unless_visible(repo, grant, resource_type, id, _not_known(resource_type, id))
        raise
    check_readable(grant, "read", stored.resource, missing_text=_not_known(resource_type, id))
    return stored


def create(
    resource_type: str,
    request: Request,
    body: BodyDep,
    pipeline: PipelineDep,
    base: BaseUrlDep,
    grant: GrantDep,
    prefer: PreferHeader = None,
    if_none_exist: Annotated[str | None, Header(alias="If-None-Exist")] = None,
) -> Response:
    known_type(resource_type)
    with audited(request, grant, "create", resource_type) as note:
        require(grant, "create", resource_type)
        if body.get("resourceType") != resource_type:
            raise InputError(
                [
                    Issue(
                        "error",
                        "invalid",
                        "resourceType does not match the URL",
                        expression="resourceType",
                    )
                ]
            )
        check_resource(grant, "create", body)
        if if_none_exist:
            require(grant, "search", resource_type)  # a conditional create reveals a match
        result = pipeline.create(body, if_none_exist=if_none_exist, on_write=note.hook)
        if result.stored is not None:
            note.resource_id = result.stored.id
            if not result.created:
                check_resource(grant, "read", result.stored.resource)
        return write_response(result, base, prefer)


def read(
    resource_type: str,
    id: str,
    request: Request,
    repo: RepoDep,
    base: BaseUrlDep,
    grant: GrantDep,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    known_type(resource_type)
    with audited(request, grant, "read", resource_type, id):
        require(grant, "read", resource_type)
        stored = read_visible(repo, grant, resource_type, id)
        body = _subset_for_read(request, stored.resource)
        headers = _resource_headers(stored, base)
        headers.pop("Location")
        if if_none_match and if_none_match.strip() == stored.etag:
            return Response(status_code=304, headers=headers)
        return FhirResponse(body, headers=headers)


def update(
    resource_type: str,
    id: str,
    request: Request,
    body: BodyDep,
    pipeline: PipelineDep,
    base: BaseUrlDep,
    grant: GrantDep,
    prefer: PreferHeader = None,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    known_type(resource_type)
    with audited(request, grant, "update", resource_type, id) as note:
        require(grant, "update", resource_type)
        check_resource(grant, "update", {**body, "id": body.get("id", id)})
        check_existing(request, grant, "update", resource_type, id)
        result = pipeline.update(
            resource_type, id, body, if_match=parse_etag(if_match), on_write=note.hook
        )
        return write_response(result, base, prefer)


def delete(
    resource_type: str,
    id: str,
    request: Request,
    pipeline: PipelineDep,
    grant: GrantDep,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    known_type(resource_type)
    with audited(request, grant, "delete", resource_type, id) as note:
        require(grant, "delete", resource_type)
        check_existing(request, grant, "delete", resource_type, id)
        result = pipeline.delete(
            resource_type, id, if_match=parse_etag(if_match), on_write=note.hook
        )
        headers = {"ETag": result.stored.etag} if result.stored is not None else {}
        return Response(status_code=204, headers=headers)


def vread(
    resource_type: str,
    id: str,
    version_id: str,
    request: Request,
    repo: RepoDep,
    base: BaseUrlDep,
    grant: GrantDep,
) -> FhirResponse:
    known_type(resource_type)
    with audited(request, grant, "vread", resource_type, id):
        require(grant, "vread", resource_type)
        if not version_id.isdigit():
            raise InputError(
                [Issue("error", "value", "versionId must be a number", expression="versionId")]
            )
        missing = f"{resource_type}/{id} has no version {version_id}"  # the store's words
        try:
            stored = repo.vread(resource_type, id, int(version_id))
        except Gone:
            _hide_deleted_unless_visible(repo, grant, resource_type, id, missing)
            raise
        check_readable(grant, "read", stored.resource, missing_text=missing)
        headers = _resource_headers(stored, base)
        headers.pop("Location")
        return FhirResponse(_subset_for_read(request, stored.resource), headers=headers)
