"""The R4 RESTful interactions: create, read, vread, update, delete, search, history, Bundles.

Follows https://hl7.org/fhir/R4/http.html: ETag `W/"n"`, Location, Last-Modified, `Prefer: return=`,
`If-None-Exist`, `If-Match` (412 when stale). Writes go to the Pipeline; reads go to the Repository.

Every interaction takes the caller's SmartGrant (`GrantDep`) and is checked against its scopes
before anything is touched, and again on each resource read or returned (patient compartment,
v2 constraints); each one is audited (`audited`). See adapter/auth/access.py. A read by id
(read, vread, instance history) of a record outside the grant answers 404 as if it were absent,
deleted records included; a scope that does not cover the type or interaction answers 403.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, replace
from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from starlette.responses import Response

from adapter.api.deps import BaseUrlDep, BodyDep, PipelineDep, RepoDep, known_type
from adapter.api.responses import FhirResponse
from adapter.api.revinclude import (
    RevIncludeSpec,
    find_referrers,
    parse_revinclude,
    truncation_issue,
)
from adapter.api.security import (
    GrantDep,
    audited,
    authorize_bundle,
    check_readable,
    check_resource,
    filter_bundle_for_grant,
    lookup_for,
    may_access,
    narrow_search,
    require,
)
from adapter.api.summary import (
    SummaryMode,
    parse_elements,
    parse_summary,
    select_elements,
    summarise,
    unknown_elements,
)
from adapter.auth.scopes import SmartGrant
from adapter.errors import Forbidden, Gone, InputError, NotFound
from adapter.fhir.references import parse_reference
from adapter.fhir.search import parse_search
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.outcome import operation_outcome
from adapter.pipeline import WriteResult, parse_etag
from adapter.store.repository import SearchQuery, StoredResource, iter_pages

router = APIRouter(tags=["fhir"])

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


@router.post("")
@router.post("/")
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


#: Accepted but not implemented: reported in the searchset as an OperationOutcome, never silently.
IGNORED_RESULT_PARAMS = frozenset({"_contained"})


@dataclass(frozen=True, slots=True)
class ResultShape:
    """The result parameters that shape a searchset, checked before the search runs (400s first).

    Precedence: `_summary=count` (no entries), then `_elements`, then the other `_summary` modes;
    a `_summary` that `_elements` overrides is reported. Subsetting applies to matches only;
    included resources are returned whole, so a reader can always tell whose record it is."""

    summary: SummaryMode | None
    elements: tuple[str, ...]
    revincludes: tuple[RevIncludeSpec, ...]
    issues: tuple[Issue, ...]

    @property
    def is_count(self) -> bool:
        return self.summary == "count"


def _result_shape(
    repo: Any, resource_type: str, result_params: dict[str, list[str]]
) -> ResultShape:
    summary = parse_summary(result_params.get("_summary", []))
    elements = tuple(parse_elements(result_params.get("_elements", [])))
    revincludes = tuple(
        parse_revinclude(v, resource_type, repo.supported_search_params(v.split(":")[0]))
        for v in result_params.get("_revinclude", [])
    )
    issues: list[Issue] = []
    # R4 lets a server ignore result parameters it does not support; it should say so.
    ignored = sorted(
        k
        for k in result_params
        if k in IGNORED_RESULT_PARAMS or k.startswith(("_include:", "_revinclude:"))
    )
    issues += [
        Issue(
            "warning",
            "not-supported",
            f"Search result parameter {name} is not supported and was ignored",
            expression=name,
        )
        for name in ignored
    ]
    if elements:
        unknown = unknown_elements(resource_type, list(elements))
        if unknown:
            issues.append(
                Issue(
                    "warning",
                    "not-found",
                    f"_elements names no top-level element of {resource_type}: "
                    + ", ".join(unknown)
                    + " (ignored)",
                    expression="_elements",
                )
            )
        if summary in ("true", "text", "data"):
            issues.append(
                Issue(
                    "warning",
                    "not-supported",
                    f"_summary={summary} was ignored: _elements takes precedence",
                    expression="_summary",
                )
            )
            summary = None
    return ResultShape(summary, elements, revincludes, tuple(issues))


def _subset(
    resource: JsonObject, shape_summary: SummaryMode | None, elements: tuple[str, ...]
) -> JsonObject:
    if elements:
        return select_elements(resource, list(elements))
    return summarise(resource, shape_summary)


def _subset_matches(bundle: JsonObject, shape: ResultShape) -> JsonObject:
    """Runs after the grant filter: the filter judges whole resources (a subset may lack the very
    element that puts it in, or out of, a patient's compartment)."""
    if not shape.elements and shape.summary in (None, "false"):
        return bundle
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource")
        if isinstance(resource, dict) and (entry.get("search") or {}).get("mode") == "match":
            entry["resource"] = _subset(resource, shape.summary, shape.elements)
    return bundle


def _outcome_entry(issues: list[Issue] | tuple[Issue, ...]) -> JsonObject:
    return {"resource": operation_outcome(list(issues)), "search": {"mode": "outcome"}}


def _searchset(
    request: Request,
    repo: Any,
    grant: SmartGrant,
    resource_type: str,
    query: SearchQuery,
    result_params: dict[str, list[str]],
    shape: ResultShape,
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
    issues = list(shape.issues)
    if shape.revincludes:
        found = find_referrers(repo, grant, shape.revincludes, page.resources, seen)
        entries += [
            {
                "fullUrl": f"{base}/{s.resource_type}/{s.id}",
                "resource": s.resource,
                "search": {"mode": "include"},
            }
            for s in found.resources
        ]
        if found.is_truncated:
            issues.append(truncation_issue())
    if issues:
        entries.append(_outcome_entry(issues))
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


def _count_bundle(
    request: Request,
    repo: Any,
    grant: SmartGrant,
    resource_type: str,
    query: SearchQuery,
    shape: ResultShape,
    page_size: int,
) -> JsonObject:
    """`_summary=count`: the total alone. Counted by the store when every match is visible to the
    grant (an unconstrained user/ or system/ rule); otherwise match by match through the same
    check as the searchset filter, so a count never reveals records the grant could not see."""
    if not query.total:
        raise InputError(
            [
                Issue(
                    "error",
                    "value",
                    "_summary=count asks for the total, which _total=none declines",
                    expression="_total",
                )
            ]
        )
    everything_visible = grant.is_development or any(
        r.context != "patient" and not r.constraints for r in grant.rules_for("s", resource_type)
    )
    if everything_visible:
        total = repo.search(resource_type, replace(query, count=0, offset=0)).total
    else:
        total = sum(
            1
            for s in iter_pages(repo, resource_type, replace(query, count=page_size, offset=0))
            if may_access(grant, "search", s.resource)
        )
    bundle: JsonObject = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": [{"relation": "self", "url": str(request.url)}],
    }
    if shape.issues:
        bundle["entry"] = [_outcome_entry(shape.issues)]
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
    request: Request,
    repo: Any,
    resource_type: str,
    items: list[tuple[str, str]],
    base: str,
    grant: SmartGrant,
) -> FhirResponse:
    settings = request.app.state.services.settings
    with audited(request, grant, "search", resource_type):
        require(grant, "search", resource_type)
        query, result_params = parse_search(
            items, default_count=settings.default_page_size, max_count=settings.max_page_size
        )
        query = narrow_search(grant, resource_type, query)
        shape = _result_shape(repo, resource_type, result_params)
        if shape.is_count:
            return FhirResponse(
                _count_bundle(
                    request, repo, grant, resource_type, query, shape, settings.max_page_size
                )
            )
        bundle = _searchset(request, repo, grant, resource_type, query, result_params, shape, base)
        return FhirResponse(_subset_matches(filter_bundle_for_grant(grant, bundle), shape))


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
    elements = tuple(parse_elements(params.getlist("_elements")))
    return _subset(resource, None if elements else summary, elements)


def _read_visible(repo: Any, grant: SmartGrant, resource_type: str, id: str) -> StoredResource:
    try:
        stored: StoredResource = repo.read(resource_type, id)
    except Gone:
        _hide_deleted_unless_visible(repo, grant, resource_type, id, _not_known(resource_type, id))
        raise
    check_readable(grant, "read", stored.resource, missing_text=_not_known(resource_type, id))
    return stored


@router.get("/_history")
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


@router.get("/{resource_type}")
def search_get(
    resource_type: str, request: Request, repo: RepoDep, base: BaseUrlDep, grant: GrantDep
) -> FhirResponse:
    known_type(resource_type)
    items = list(request.query_params.multi_items())
    return _search(request, repo, resource_type, items, base, grant)


@router.post("/{resource_type}/_search")
async def search_post(
    resource_type: str, request: Request, repo: RepoDep, base: BaseUrlDep, grant: GrantDep
) -> FhirResponse:
    known_type(resource_type)
    form = await request.form()
    items = list(request.query_params.multi_items()) + [(k, str(v)) for k, v in form.multi_items()]
    return _search(request, repo, resource_type, items, base, grant)


@router.post("/{resource_type}")
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


@router.get("/{resource_type}/_history")
def type_history(
    resource_type: str, request: Request, repo: RepoDep, base: BaseUrlDep, grant: GrantDep
) -> FhirResponse:
    known_type(resource_type)
    with audited(request, grant, "history-type", resource_type):
        require(grant, "history-type", resource_type)
        count, offset = _history_params(request)
        page = repo.history(resource_type, None, count=count, offset=offset)
        return FhirResponse(_filter_history(grant, _history_bundle(page, base), "search"))


@router.get("/{resource_type}/{id}")
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
        stored = _read_visible(repo, grant, resource_type, id)
        body = _subset_for_read(request, stored.resource)
        headers = _resource_headers(stored, base)
        headers.pop("Location")
        if if_none_match and if_none_match.strip() == stored.etag:
            return Response(status_code=304, headers=headers)
        return FhirResponse(body, headers=headers)


@router.put("/{resource_type}/{id}")
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


@router.delete("/{resource_type}/{id}")
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


@router.get("/{resource_type}/{id}/_history")
def instance_history(
    resource_type: str, id: str, request: Request, repo: RepoDep, base: BaseUrlDep, grant: GrantDep
) -> FhirResponse:
    known_type(resource_type)
    with audited(request, grant, "history-instance", resource_type, id):
        require(grant, "history-instance", resource_type)
        with suppress(Gone):  # deleted, and the grant could see it: the history shows that
            _read_visible(repo, grant, resource_type, id)  # absent or hidden: 404
        count, offset = _history_params(request)
        page = repo.history(resource_type, id, count=count, offset=offset)
        return FhirResponse(_filter_history(grant, _history_bundle(page, base), "read"))


@router.get("/{resource_type}/{id}/_history/{version_id}")
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
