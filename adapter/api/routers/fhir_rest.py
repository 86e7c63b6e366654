"""The R4 RESTful interactions: create, read, vread, update, delete, search, history, Bundles.

Follows https://hl7.org/fhir/R4/http.html: ETag `W/"n"`, Location, Last-Modified, `Prefer: return=`,
`If-None-Exist`, `If-Match` (412 when stale). Writes go to the Pipeline; reads go to the Repository.
"""

from __future__ import annotations

from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from starlette.responses import Response

from adapter.api.deps import BaseUrlDep, BodyDep, PipelineDep, RepoDep, known_type
from adapter.api.responses import FhirResponse
from adapter.errors import Gone, InputError, NotFound
from adapter.fhir.references import parse_reference
from adapter.fhir.search import parse_search
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.outcome import operation_outcome
from adapter.pipeline import WriteResult, parse_etag
from adapter.store.repository import SearchQuery, StoredResource

router = APIRouter(tags=["fhir"])

PreferHeader = Annotated[str | None, Header(alias="Prefer")]


def _resource_headers(stored: StoredResource, base: str) -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Last-Modified": format_datetime(stored.last_updated, usegmt=True),
        "Location": f"{base}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}",
    }


def _write_response(result: WriteResult, base: str, prefer: str | None) -> Response:
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


@router.post("")
@router.post("/")
def post_bundle(pipeline: PipelineDep, body: BodyDep) -> FhirResponse:
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
    return FhirResponse(pipeline.process_bundle(body))


def _searchset(
    request: Request,
    repo: Any,
    resource_type: str,
    query: SearchQuery,
    result_params: dict[str, list[str]],
    base: str,
) -> JsonObject:
    page = repo.search(resource_type, query)
    entries: list[JsonObject] = [
        {
            "fullUrl": f"{base}/{s.resource_type}/{s.id}",
            "resource": s.resource,
            "search": {"mode": "match"},
        }
        for s in page.resources
    ]
    seen = {(s.resource_type, s.id) for s in page.resources}
    for spec in result_params.get("_include", []):
        entries += _includes(repo, page.resources, spec, seen, base)
    bundle: JsonObject = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:
        bundle["total"] = page.total
    self_url = str(request.url)
    links = [{"relation": "self", "url": self_url}]
    if page.has_next:
        links.append(
            {
                "relation": "next",
                "url": _with_offset(
                    request, query.offset + query.count, query.count, base, resource_type
                ),
            }
        )
    if query.offset > 0:
        links.append(
            {
                "relation": "previous",
                "url": _with_offset(
                    request, max(0, query.offset - query.count), query.count, base, resource_type
                ),
            }
        )
    bundle["link"] = links
    bundle["entry"] = entries
    return bundle


def _includes(
    repo: Any, matches: list[StoredResource], spec: str, seen: set[tuple[str, str]], base: str
) -> list[JsonObject]:
    parts = spec.split(":")
    if len(parts) < 2:
        raise InputError(
            [Issue("error", "value", "_include must be Type:element", expression="_include")]
        )
    element = parts[1]
    target = parts[2] if len(parts) > 2 else None
    out: list[JsonObject] = []
    for m in matches:
        if m.resource_type != parts[0]:
            continue
        value = m.resource.get(element)
        refs = value if isinstance(value, list) else [value]
        for ref in refs:
            if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
                continue
            parsed = parse_reference(ref["reference"])
            if parsed.kind != "relative" or not parsed.resource_type or not parsed.id:
                continue
            if target and parsed.resource_type != target:
                continue
            key = (parsed.resource_type, parsed.id)
            if key in seen:
                continue
            seen.add(key)
            try:
                inc = repo.read(parsed.resource_type, parsed.id)
            except (NotFound, Gone):  # a dangling include is simply omitted, as R4 allows
                continue
            out.append(
                {
                    "fullUrl": f"{base}/{inc.resource_type}/{inc.id}",
                    "resource": inc.resource,
                    "search": {"mode": "include"},
                }
            )
    return out


def _with_offset(request: Request, offset: int, count: int, base: str, resource_type: str) -> str:
    from urllib.parse import urlencode

    items = [
        (k, v) for k, v in request.query_params.multi_items() if k not in ("_offset", "_count")
    ]
    items += [("_count", str(count)), ("_offset", str(offset))]
    return f"{base}/{resource_type}?{urlencode(items)}"


def _search(
    request: Request, repo: Any, resource_type: str, items: list[tuple[str, str]], base: str
) -> FhirResponse:
    settings = request.app.state.services.settings
    query, result_params = parse_search(
        items, default_count=settings.default_page_size, max_count=settings.max_page_size
    )
    return FhirResponse(_searchset(request, repo, resource_type, query, result_params, base))


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


def _history_params(request: Request) -> tuple[int, int]:
    settings = request.app.state.services.settings
    query, _ = parse_search(
        [(k, v) for k, v in request.query_params.multi_items() if k in ("_count", "_offset")],
        default_count=settings.default_page_size,
        max_count=settings.max_page_size,
    )
    return query.count, query.offset


@router.get("/_history")
def system_history(request: Request, repo: RepoDep, base: BaseUrlDep) -> FhirResponse:
    count, offset = _history_params(request)
    return FhirResponse(_history_bundle(repo.history(None, None, count=count, offset=offset), base))


@router.get("/{resource_type}")
def search_get(
    resource_type: str, request: Request, repo: RepoDep, base: BaseUrlDep
) -> FhirResponse:
    known_type(resource_type)
    return _search(request, repo, resource_type, list(request.query_params.multi_items()), base)


@router.post("/{resource_type}/_search")
async def search_post(
    resource_type: str, request: Request, repo: RepoDep, base: BaseUrlDep
) -> FhirResponse:
    known_type(resource_type)
    form = await request.form()
    items = list(request.query_params.multi_items()) + [(k, str(v)) for k, v in form.multi_items()]
    return _search(request, repo, resource_type, items, base)


@router.post("/{resource_type}")
def create(
    resource_type: str,
    body: BodyDep,
    pipeline: PipelineDep,
    base: BaseUrlDep,
    prefer: PreferHeader = None,
    if_none_exist: Annotated[str | None, Header(alias="If-None-Exist")] = None,
) -> Response:
    known_type(resource_type)
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
    result = pipeline.create(body, if_none_exist=if_none_exist)
    return _write_response(result, base, prefer)


@router.get("/{resource_type}/_history")
def type_history(
    resource_type: str, request: Request, repo: RepoDep, base: BaseUrlDep
) -> FhirResponse:
    known_type(resource_type)
    count, offset = _history_params(request)
    return FhirResponse(
        _history_bundle(repo.history(resource_type, None, count=count, offset=offset), base)
    )


@router.get("/{resource_type}/{id}")
def read(
    resource_type: str,
    id: str,
    repo: RepoDep,
    base: BaseUrlDep,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    known_type(resource_type)
    stored = repo.read(resource_type, id)
    headers = _resource_headers(stored, base)
    headers.pop("Location")
    if if_none_match and if_none_match.strip() == stored.etag:
        return Response(status_code=304, headers=headers)
    return FhirResponse(stored.resource, headers=headers)


@router.put("/{resource_type}/{id}")
def update(
    resource_type: str,
    id: str,
    body: BodyDep,
    pipeline: PipelineDep,
    base: BaseUrlDep,
    prefer: PreferHeader = None,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    known_type(resource_type)
    result = pipeline.update(resource_type, id, body, if_match=parse_etag(if_match))
    return _write_response(result, base, prefer)


@router.delete("/{resource_type}/{id}")
def delete(
    resource_type: str,
    id: str,
    pipeline: PipelineDep,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    known_type(resource_type)
    result = pipeline.delete(resource_type, id, if_match=parse_etag(if_match))
    headers = {"ETag": result.stored.etag} if result.stored is not None else {}
    return Response(status_code=204, headers=headers)


@router.get("/{resource_type}/{id}/_history")
def instance_history(
    resource_type: str, id: str, request: Request, repo: RepoDep, base: BaseUrlDep
) -> FhirResponse:
    known_type(resource_type)
    count, offset = _history_params(request)
    repo_history = repo.history(resource_type, id, count=count, offset=offset)
    return FhirResponse(_history_bundle(repo_history, base))


@router.get("/{resource_type}/{id}/_history/{version_id}")
def vread(
    resource_type: str, id: str, version_id: str, repo: RepoDep, base: BaseUrlDep
) -> FhirResponse:
    known_type(resource_type)
    if not version_id.isdigit():
        raise InputError(
            [Issue("error", "value", "versionId must be a number", expression="versionId")]
        )
    stored = repo.vread(resource_type, id, int(version_id))
    headers = _resource_headers(stored, base)
    headers.pop("Location")
    return FhirResponse(stored.resource, headers=headers)
