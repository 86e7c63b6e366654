"""Scope enforcement: may this grant do this interaction on this type, on this resource?

The REST layer (and `$process-message`) calls these helpers for every interaction:

- `require(grant, "create", "ServiceRequest")` before anything is touched (type level);
- `check_resource(grant, "update", resource)` on each resource written (instance level: patient
  compartment and v2 search-parameter constraints), and `check_readable(...)` on each resource
  read by id (read, vread, instance history), which answers 404 instead of 403 so that a
  patient/ token cannot learn that another patient's record exists;
- `narrow_search(...)` adds the compartment parameter to a patient/ search, and
  `filter_bundle_for_grant(...)` drops anything the grant may not see from a result Bundle
  (defence in depth: matches, `_include`d resources, history versions);
- `authorize_bundle(...)` checks each transaction/batch entry as if it were sent alone.

Denials raise `Forbidden` (403) with an OperationOutcome issue; texts name types and scopes only.
The one exception is an instance the grant may not see on a read by id: `NotFound` (404), worded
as the store words a missing resource. A scope that does not cover the type or the interaction at
all stays 403: that reveals nothing about any record.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Final

from adapter.auth.compartment import NARROWING_PARAM, in_patient_compartment
from adapter.auth.scopes import INTERACTIONS, Interaction, ScopeRule, SmartGrant
from adapter.errors import Forbidden, NotFound
from adapter.fhir.references import parse_reference
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.store.repository import SearchParam, SearchQuery

_NAMES: Final = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


def _letter(interaction: str) -> Interaction:
    if interaction in INTERACTIONS:
        return INTERACTIONS[interaction]
    if interaction in ("c", "r", "u", "d", "s"):
        return interaction  # type: ignore[return-value]  # one of the five letters
    raise ValueError(f"unknown interaction {interaction!r}")


def _forbidden(text: str, expression: str | None = None) -> Forbidden:
    return Forbidden([Issue("error", "forbidden", text, expression=expression)])


def require(grant: SmartGrant, interaction: str, resource_type: str) -> tuple[ScopeRule, ...]:
    """Type-level check. Returns the rules that allow it; raises Forbidden if none does."""
    letter = _letter(interaction)
    rules = grant.rules_for(letter, resource_type)
    if not rules:
        raise _forbidden(f"The granted scopes do not allow {_NAMES[letter]} on {resource_type}")
    return rules


def _matches_constraints(resource: JsonObject, constraints: Iterable[tuple[str, str]]) -> bool:
    """v2 granular scope constraints, evaluated with the store's own search-parameter table.

    Token (`system|code`, `code`, `|code`) and reference (`Type/id`) values; a comma means OR.
    A parameter we cannot evaluate never matches (fail closed).
    """
    from adapter.store.search_index import extract_index_entries

    entries = extract_index_entries(resource)
    if resource.get("id"):
        from adapter.store.search_index import IndexEntry

        entries = [*entries, IndexEntry("_id", value=str(resource["id"]))]
    for param, raw in constraints:
        ok = False
        for alternative in raw.split(","):
            for entry in entries:
                if entry.param != param:
                    continue
                if entry.ref_id is not None:
                    ref = parse_reference(alternative)
                    if ref.id == entry.ref_id and ref.resource_type in (None, entry.ref_type):
                        ok = True
                elif "|" in alternative:
                    system, _, code = alternative.partition("|")
                    if code == entry.value and (system or None) == (entry.system or None):
                        ok = True
                elif alternative == entry.value:
                    ok = True
        if not ok:
            return False
    return True


def rule_allows(grant: SmartGrant, rule: ScopeRule, resource: JsonObject) -> bool:
    if rule.context == "patient" and (
        grant.patient is None or not in_patient_compartment(resource, grant.patient)
    ):
        return False
    return not rule.constraints or _matches_constraints(resource, rule.constraints)


def may_access(grant: SmartGrant, interaction: str, resource: JsonObject) -> bool:
    letter = _letter(interaction)
    resource_type = str(resource.get("resourceType"))
    return any(
        rule_allows(grant, rule, resource) for rule in grant.rules_for(letter, resource_type)
    )


def check_resource(
    grant: SmartGrant, interaction: str, resource: JsonObject, *, expression: str | None = None
) -> None:
    """Instance-level check. A read outside the grant answers 403, never the content."""
    if grant.is_development:
        return
    require(grant, interaction, str(resource.get("resourceType")))
    if not may_access(grant, interaction, resource):
        raise _forbidden(
            f"{resource.get('resourceType')} is outside what the granted scopes allow "
            "(patient compartment or scope constraints)",
            expression,
        )


def narrow_search(grant: SmartGrant, resource_type: str, query: SearchQuery) -> SearchQuery:
    """Adds the compartment (and single-rule constraint) parameters to a search, so totals and
    paging stay right. The result is still filtered afterwards."""
    rules = require(grant, "search", resource_type)
    if grant.is_development:
        return query
    extra: list[SearchParam] = []
    if all(r.context == "patient" for r in rules):
        if grant.patient is None:
            raise _forbidden("A patient/ scope needs a launch patient; this token has none")
        if resource_type == "Patient":
            extra.append(SearchParam("_id", (grant.patient,)))
        elif resource_type in NARROWING_PARAM:
            extra.append(SearchParam(NARROWING_PARAM[resource_type], (f"Patient/{grant.patient}",)))
    if len(rules) == 1 and rules[0].constraints:
        extra += [SearchParam(p, tuple(v.split(","))) for p, v in rules[0].constraints]
    if not extra:
        return query
    return SearchQuery(
        params=(*query.params, *extra),
        count=query.count,
        offset=query.offset,
        total=query.total,
        sort=query.sort,
    )


def filter_bundle_for_grant(
    grant: SmartGrant, bundle: JsonObject, *, match_interaction: str = "search"
) -> JsonObject:
    """Removes every entry whose resource the grant may not see. `search.mode = include` entries
    need read; others need `match_interaction`. If a match is removed, `total` is dropped."""
    if grant.is_development:
        return bundle
    kept: list[JsonObject] = []
    dropped_match = False
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            kept.append(entry)
            continue
        is_include = (entry.get("search") or {}).get("mode") == "include"
        interaction = "read" if is_include else match_interaction
        if may_access(grant, interaction, resource):
            kept.append(entry)
        elif not is_include:
            dropped_match = True
    out = dict(bundle)
    out["entry"] = kept
    if dropped_match:
        out.pop("total", None)
    return out


Lookup = Callable[[str, str], JsonObject | None]


def authorize_bundle(grant: SmartGrant, bundle: JsonObject, lookup: Lookup) -> None:
    """Checks every transaction/batch entry as if it were sent alone (SMART: no Bundle scope).

    POST needs create and the new resource in reach; PUT needs update and both the new and any
    existing version in reach; DELETE needs delete and the existing one in reach; GET needs read
    (Type/id) or search (Type?...). All denials are collected into one 403.
    """
    if grant.is_development:
        return
    issues: list[Issue] = []
    for i, raw in enumerate(bundle.get("entry") or []):
        where = f"Bundle.entry[{i}]"
        request = raw.get("request") or {}
        method = str(request.get("method", "")).upper()
        path = str(request.get("url", "")).split("?", 1)[0].strip("/")
        parts = path.split("/") if path else []
        resource = raw.get("resource") if isinstance(raw.get("resource"), dict) else None
        try:
            if method == "POST" and resource is not None:
                check_resource(grant, "create", resource, expression=f"{where}.resource")
            elif method == "PUT" and resource is not None:
                check_resource(
                    grant, "update", _with_id(resource, parts), expression=f"{where}.resource"
                )
                _check_existing(grant, "update", parts, lookup, where)
                if len(parts) < 2 and any(
                    r.context == "patient" or r.constraints
                    for r in grant.rules_for("u", str(resource.get("resourceType")))
                ):
                    # the match of a conditional update is unknown until the pipeline runs
                    raise _forbidden(
                        "Conditional update needs Type/id with patient/ or constrained scopes",
                        f"{where}.request.url",
                    )
            elif method == "DELETE":
                _check_existing(grant, "delete", parts, lookup, where, required=True)
            elif method == "GET" and len(parts) >= 2:
                _check_existing(grant, "read", parts, lookup, where, required=True)
            elif method == "GET" and parts:
                require(grant, "search", parts[0])
                if any(r.context == "patient" for r in grant.rules_for("s", parts[0])):
                    raise _forbidden(
                        "Searches inside a Bundle are not allowed with patient/ scopes",
                        f"{where}.request.url",
                    )
            elif resource is not None:
                check_resource(grant, "create", resource, expression=f"{where}.resource")
        except Forbidden as exc:
            issues += [x if x.expression else x.rebased(where) for x in exc.issues]
    if issues:
        raise Forbidden(issues)


def _with_id(resource: JsonObject, parts: list[str]) -> JsonObject:
    if len(parts) >= 2 and resource.get("id") is None:
        resource = copy.copy(resource)
        resource["id"] = parts[1]
    return resource


def _check_existing(
    grant: SmartGrant,
    interaction: str,
    parts: list[str],
    lookup: Lookup,
    where: str,
    *,
    required: bool = False,
) -> None:
    if len(parts) < 2:
        if required:
            require(grant, interaction, parts[0] if parts else "Resource")
            raise _forbidden(
                "Conditional operations in a Bundle need an explicit Type/id",
                f"{where}.request.url",
            )
        return
    require(grant, interaction, parts[0])
    existing = lookup(parts[0], parts[1])
    if existing is not None:
        check_resource(grant, interaction, existing, expression=f"{where}.request.url")


def check_readable(
    grant: SmartGrant, interaction: str, resource: JsonObject, *, missing_text: str
) -> None:
    """Instance-level check of a read by id (read, vread, instance history).

    The type-level check stays a 403; a resource outside the compartment or the scope constraints
    raises NotFound with `missing_text` (the store's own words for an absent resource), so the
    answer is the same whether the record is someone else's or not there at all.
    """
    if grant.is_development:
        return
    require(grant, interaction, str(resource.get("resourceType")))
    if not may_access(grant, interaction, resource):
        raise NotFound(missing_text)


__all__ = [
    "NotFound",
    "authorize_bundle",
    "check_readable",
    "check_resource",
    "filter_bundle_for_grant",
    "may_access",
    "narrow_search",
    "require",
    "rule_allows",
]
