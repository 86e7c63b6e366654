"""`_revinclude` (R4 search.html §3.1.1.5.4): the resources whose reference parameters point at matches.

Only reference parameters the store indexes (adapter/store/search_index.py), and only where R4 lets
the element point at the searched type, so the referrers are found by composing the store's own
`search` (`Provenance?target=ServiceRequest/1,ServiceRequest/2`): no query of its own. Anything
else is a 400 naming `_revinclude`. `revinclude_specs` says the same in the CapabilityStatement.

The number of resources one search may revinclude is bounded (`MAX_REVINCLUDED`); a truncated
result says so in an outcome entry. Results still pass the grant's visibility filter afterwards
(`filter_bundle_for_grant`); for a grant that may search the referring type, the query is also
narrowed as a search of that type would be, so other patients' records are not even fetched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from adapter.api.summary import element_table
from adapter.auth.access import narrow_search
from adapter.auth.scopes import SmartGrant
from adapter.errors import InputError
from adapter.fhir.resource_types import SUPPORTED_TYPES
from adapter.issue import Issue
from adapter.store.repository import Repository, SearchParam, SearchQuery, StoredResource
from adapter.store.search_index import SEARCH_PARAMETERS

#: At most this many resources are revincluded into one page of search results, over all specs.
MAX_REVINCLUDED: Final = 100


@dataclass(frozen=True, slots=True)
class RevIncludeSpec:
    """`Type:param` or `Type:param:target` of a `_revinclude` value."""

    source_type: str
    param: str
    target_type: str | None = None


@dataclass(slots=True)
class RevIncluded:
    resources: list[StoredResource]
    is_truncated: bool


def _bad(text: str) -> InputError:
    return InputError([Issue("error", "value", text, expression="_revinclude")])


def can_point_at(source_type: str, param: str, resource_type: str) -> bool:
    """Whether `source_type`'s indexed reference parameter `param` can refer to `resource_type`."""
    definition = SEARCH_PARAMETERS.get(source_type, {}).get(param)
    if definition is None or definition.kind != "reference":
        return False
    if definition.target_type is not None:
        return definition.target_type == resource_type
    table = element_table()
    for path in definition.paths:
        element = table.element(f"{source_type}.{path}")
        if element is not None and (
            not element.targets or resource_type in element.targets or "Resource" in element.targets
        ):
            return True
    return False


def revinclude_specs(resource_type: str, supported: dict[str, Sequence[str]]) -> list[str]:
    """Every `Type:param` a search of `resource_type` accepts; `supported` is the store's
    `supported_search_params` per type (a remote store indexes fewer)."""
    return [
        f"{source}:{param}"
        for source in SUPPORTED_TYPES
        for param in sorted(SEARCH_PARAMETERS.get(source, {}))
        if param in supported.get(source, ()) and can_point_at(source, param, resource_type)
    ]


def parse_revinclude(
    value: str, resource_type: str, supported: Sequence[str] | None
) -> RevIncludeSpec:
    """Checks one value against the searched type; `supported` is the store's parameters for the
    source type (None: not asked yet)."""
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise _bad("_revinclude must be Type:parameter or Type:parameter:targetType")
    spec = RevIncludeSpec(parts[0], parts[1], parts[2] if len(parts) == 3 else None)
    if spec.target_type is not None and spec.target_type != resource_type:
        raise _bad(f"_revinclude {value} names a target type other than {resource_type}")
    if (
        spec.source_type not in SUPPORTED_TYPES
        or (supported is not None and spec.param not in supported)
        or not can_point_at(spec.source_type, spec.param, resource_type)
    ):
        raise _bad(
            f"_revinclude {value} is not supported: {spec.param} is not an indexed reference "
            f"parameter of {spec.source_type} that can refer to {resource_type}"
        )
    return spec


def find_referrers(
    repo: Repository,
    grant: SmartGrant,
    specs: Sequence[RevIncludeSpec],
    matches: Sequence[StoredResource],
    seen: set[tuple[str, str]],
) -> RevIncluded:
    """The resources of each spec that point at a match, new to `seen` (which is updated), up to
    MAX_REVINCLUDED in all."""
    out: list[StoredResource] = []
    is_truncated = False
    for spec in specs:
        references = tuple(f"{m.resource_type}/{m.id}" for m in matches)
        if not references:
            continue
        remaining = MAX_REVINCLUDED - len(out)
        if remaining <= 0:
            is_truncated = True
            break
        query = SearchQuery(
            params=(SearchParam(spec.param, references),), count=remaining, total=False
        )
        if grant.rules_for("s", spec.source_type):
            query = narrow_search(grant, spec.source_type, query)
        page = repo.search(spec.source_type, query)
        is_truncated = is_truncated or page.has_next
        for found in page.resources:
            key = (found.resource_type, found.id)
            if key not in seen:
                seen.add(key)
                out.append(found)
    return RevIncluded(out, is_truncated)


def truncation_issue() -> Issue:
    return Issue(
        "warning",
        "incomplete",
        f"_revinclude found more than {MAX_REVINCLUDED} resources; only the first "
        f"{MAX_REVINCLUDED} are included",
        expression="_revinclude",
    )


__all__ = [
    "MAX_REVINCLUDED",
    "RevIncludeSpec",
    "RevIncluded",
    "can_point_at",
    "find_referrers",
    "parse_revinclude",
    "revinclude_specs",
    "truncation_issue",
]
