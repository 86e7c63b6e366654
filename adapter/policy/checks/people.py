"""Checks about people: the subject's age on a date, who requested, referenced details present."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from adapter.clock import LONDON
from adapter.context import ValidationContext
from adapter.fhir.types import JsonObject
from adapter.policy.calendar import is_core_hours, london_date, parse_fhir_instant
from adapter.policy.checks import register
from adapter.policy.checks.base import Finding, codes, first, instant, resolve, values


def age_on(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _subject_age(
    resource: JsonObject, ctx: ValidationContext, params: Mapping[str, Any]
) -> int | None:
    subject = resolve(resource, first(resource, str(params.get("subject", "subject"))), ctx)
    birth = parse_fhir_instant(subject.get("birthDate")) if subject else None
    if birth is None:
        return None
    at = instant(resource, str(params.get("at", "authoredOn"))) or ctx.clock.now()
    return age_on(birth.date(), london_date(at))


@register("subject_age")
def subject_age(
    resource: JsonObject, ctx: ValidationContext, params: Mapping[str, Any]
) -> list[Finding]:
    """Age in whole years on `at` (default authoredOn) within [min, max]. Unknown age passes:
    missing data is never a reason to reject (002_b5b903ed5658e1bd.txt:2197-2203)."""
    age = _subject_age(resource, ctx, params)
    if age is None:
        return []
    if "min" in params and age < int(params["min"]):
        return [Finding(f"age {age} is below {params['min']}")]
    if "max" in params and age > int(params["max"]):
        return [Finding(f"age {age} is above {params['max']}")]
    return []


@register("referenced_has")
def referenced_has(
    resource: JsonObject, ctx: ValidationContext, params: Mapping[str, Any]
) -> list[Finding]:
    """The resource at `ref` resolves and has every path in `fields` (contained, Bundle or store)."""
    target = resolve(resource, first(resource, str(params["ref"])), ctx)
    if target is None:
        return [Finding(f"{params['ref']} does not resolve to a record")]
    missing = [f for f in params.get("fields", []) if not values(target, str(f))]
    return [Finding("missing " + ", ".join(missing))] if missing else []


@register("requester_is")
def requester_is(
    resource: JsonObject, ctx: ValidationContext, params: Mapping[str, Any]
) -> list[Finding]:
    """The requester resolves to one of `types`; a RelatedPerson must have a relationship code in
    `relationships` (e.g. donee or deputy for a Part 3 request)."""
    ref = first(resource, "requester")
    target = resolve(resource, ref, ctx)
    kind = target.get("resourceType") if target else (ref or {}).get("type")
    if kind == "RelatedPerson":
        allowed = set(params.get("relationships", []))
        held = codes(target or {}, "relationship.coding", str(params["relationship_system"]))
        if allowed and not held & allowed:
            return [
                Finding("the requesting RelatedPerson is not a " + " or ".join(sorted(allowed)))
            ]
        return []
    if kind not in set(params.get("types", [])):
        return [Finding(f"requester type {kind or 'unknown'} may not make this request")]
    return []


@register("outside_core_hours_requires")
def outside_core_hours_requires(
    resource: JsonObject, ctx: ValidationContext, params: Mapping[str, Any]
) -> list[Finding]:
    """When `at` falls outside Mon-Fri 09:00-17:00 Europe/London (or on a bank holiday) and the
    subject is at least `min_age`, the boolean at `require` must be true."""
    at = instant(resource, str(params.get("at", "authoredOn")))
    if at is None or is_core_hours(at):
        return []
    if "min_age" in params:
        age = _subject_age(resource, ctx, params)
        if age is None or age < int(params["min_age"]):
            return []
    if first(resource, str(params["require"])) is True:
        return []
    return [Finding(f"made out of hours ({at.astimezone(LONDON).strftime('%a %H:%M')} local)")]
