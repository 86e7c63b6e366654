"""R4 type-level search (https://hl7.org/fhir/R4/search.html), by GET or by POST to `_search`.

The searchset is narrowed to the caller's grant before the query runs and filtered by it after
(adapter/api/security.py); `_include`, `_revinclude` (revinclude.py), paging links, `_total`, and
`_summary`/`_elements` subsetting (summary.py) shape it. fhir_rest.py routes the two endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from fastapi import Request

from adapter.api.deps import BaseUrlDep, RepoDep, known_type
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
    filter_bundle_for_grant,
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
from adapter.errors import Gone, InputError, NotFound
from adapter.fhir.references import parse_reference
from adapter.fhir.search import parse_search
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.outcome import operation_outcome
from adapter.store.repository import SearchQuery, StoredResource, iter_pages

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


def search_get(
    resource_type: str, request: Request, repo: RepoDep, base: BaseUrlDep, grant: GrantDep
) -> FhirResponse:
    known_type(resource_type)
    items = list(request.query_params.multi_items())
    return _search(request, repo, resource_type, items, base, grant)


async def search_post(
    resource_type: str, request: Request, repo: RepoDep, base: BaseUrlDep, grant: GrantDep
) -> FhirResponse:
    known_type(resource_type)
    form = await request.form()
    items = list(request.query_params.multi_items()) + [(k, str(v)) for k, v in form.multi_items()]
    return _search(request, repo, resource_type, items, base, grant)
