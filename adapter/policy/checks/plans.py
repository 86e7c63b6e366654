"""Checks over plan structure and over several resources: outcomes with actions, crisis contacts,
signatures, changes against the previous version, and DIALOG eligibility from the Bundle."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapter.context import ValidationContext
from adapter.fhir.types import JsonObject
from adapter.policy.checks import register
from adapter.policy.checks.base import Finding, codes, first, resolve, values


@register("goals_have_actions")
def goals_have_actions(
    resource: JsonObject, _ctx: ValidationContext, params: Mapping[str, Any]
) -> list[Finding]:
    """Every goal (outcome) has an activity naming it, with what, when and by whom
    (002_b5b903ed5658e1bd.txt:2620-2622)."""
    found: list[Finding] = []
    goal_refs = [g.get("reference") for g in resource.get("goal") or [] if isinstance(g, dict)]
    activities = [a.get("detail") or {} for a in resource.get("activity") or []]
    for index, ref in enumerate(goal_refs):
        linked = [d for d in activities if ref in {g.get("reference") for g in d.get("goal") or []}]
        if not linked:
            found.append(Finding("an outcome has no service or action", f"CarePlan.goal[{index}]"))
            continue
        for need in params.get("require", ["description", "scheduled", "performer"]):
            if not any(_has(d, str(need)) for d in linked):
                found.append(
                    Finding(f"an outcome's actions do not say {need}", f"CarePlan.goal[{index}]")
                )
    return found


def _has(detail: JsonObject, need: str) -> bool:
    if need == "scheduled":
        return any(k.startswith("scheduled") for k in detail)
    return bool(detail.get(need))


@register("contacts_reachable")
def contacts_reachable(
    resource: JsonObject, ctx: ValidationContext, params: Mapping[str, Any]
) -> list[Finding]:
    """Each service to contact in the crisis plan has a telephone number and hours of availability."""
    found: list[Finding] = []
    for ref in values(resource, str(params["performers"])):
        target = resolve(resource, ref, ctx)
        if target is None:
            found.append(Finding("a crisis contact does not resolve to a service record"))
            continue
        if not [t for t in target.get("telecom") or [] if t.get("system") == "phone"]:
            found.append(Finding("a crisis contact has no telephone number"))
        if not (target.get("availableTime") or target.get("availabilityExceptions")):
            found.append(Finding("a crisis contact has no times of availability"))
    return found


@register("same_reference")
def same_reference(
    resource: JsonObject, _ctx: ValidationContext, params: Mapping[str, Any]
) -> list[Finding]:
    """The reference at `left` is one of the references at `right` (e.g. the CTP signatory is the
    acting care coordinator)."""
    left = first(resource, str(params["left"]))
    rights = {
        r.get("reference") for r in values(resource, str(params["right"])) if isinstance(r, dict)
    }
    if not isinstance(left, dict) or not left.get("reference"):
        return []
    return (
        [] if left.get("reference") in rights else [Finding(str(params.get("detail", "mismatch")))]
    )


@register("changed_requires")
def changed_requires(
    resource: JsonObject, ctx: ValidationContext, params: Mapping[str, Any]
) -> list[Finding]:
    """On update: when `path` changed from the previous stored version (optionally from `from` to
    `to`), `require` must be present on the new version."""
    if ctx.previous is None:
        return []
    before = {str(v) for v in values(ctx.previous, str(params["path"])) if not isinstance(v, dict)}
    after = {str(v) for v in values(resource, str(params["path"])) if not isinstance(v, dict)}
    if before == after or not before:
        return []
    if "from" in params and str(params["from"]) not in before:
        return []
    if "to" in params and str(params["to"]) not in after:
        return []
    if values(resource, str(params["require"])):
        return []
    return [
        Finding(f"changed from {', '.join(sorted(before))} to {', '.join(sorted(after)) or 'none'}")
    ]


@register("bundle_has_no_condition")
def bundle_has_no_condition(
    resource: JsonObject, ctx: ValidationContext, params: Mapping[str, Any]
) -> list[Finding]:
    """No Condition in the same Bundle for the same subject carries one of `codes` (`system`):
    DIALOG is for functional, not organic, presentations (001_8d61c32d75af2131.txt:9998-9999)."""
    subject = (first(resource, "subject") or {}).get("reference")
    wanted = set(params["codes"])
    for _, _, other in ctx.bundle_resources():
        if other.get("resourceType") != "Condition":
            continue
        if subject and (first(other, "subject") or {}).get("reference") != subject:
            continue
        if codes(other, "code.coding", str(params["system"])) & wanted:
            return [Finding("the Bundle records an organic condition for this person")]
    return []


def _care_team_participants(resource: JsonObject, ctx: ValidationContext) -> list[JsonObject]:
    """Participants of every care team of the plan: contained, or referenced from `careTeam` and
    resolved in the Bundle or the store (the care-plan mapping sends the CareTeam alongside)."""
    teams = [c for c in resource.get("contained") or [] if c.get("resourceType") == "CareTeam"]
    for ref in resource.get("careTeam") or []:
        if isinstance(ref, dict) and not str(ref.get("reference", "")).startswith("#"):
            team = resolve(resource, ref, ctx)
            if team is not None:
                teams.append(team)
    return [p for t in teams for p in t.get("participant") or [] if isinstance(p, dict)]


@register("care_team_role")
def care_team_role(
    resource: JsonObject, ctx: ValidationContext, params: Mapping[str, Any]
) -> list[Finding]:
    """Participants holding `role` (a code in `system`, default care-team-role) with a member:
    at least `min`; and, when `max_current` is set, at most that many without a period end."""
    role, system = str(params["role"]), str(params["system"])
    holders = [
        p
        for p in _care_team_participants(resource, ctx)
        if role in codes(p, "role.coding", system) and p.get("member")
    ]
    found: list[Finding] = []
    if len(holders) < int(params.get("min", 0)):
        found.append(Finding(f"no care team participant with role {role}"))
    if "max_current" in params:
        current = [p for p in holders if not (p.get("period") or {}).get("end")]
        if len(current) > int(params["max_current"]):
            found.append(Finding(f"{len(current)} current participants with role {role}"))
    return found


@register("linked_plan")
def linked_plan(
    resource: JsonObject, ctx: ValidationContext, params: Mapping[str, Any]
) -> list[Finding]:
    """The plan holds a section (`activity.detail.code` `section` in `section_system`), or links
    a `supporting` resource type in supportingInfo, or a CarePlan of category `category` in the
    same Bundle is partOf / basedOn this plan (the crisis plan the mapping sends separately)."""
    if str(params["section"]) in codes(
        resource, "activity.detail.code.coding", str(params["section_system"])
    ):
        return []
    wanted = str(params.get("supporting", "CarePlan"))
    for ref in resource.get("supportingInfo") or []:
        if isinstance(ref, dict) and (
            ref.get("type") == wanted or str(ref.get("reference", "")).startswith(f"{wanted}/")
        ):
            return []
    if "category" not in params:
        return [Finding(str(params.get("detail", "no linked plan")))]
    me = {f"{resource.get('resourceType')}/{resource.get('id')}"}
    for _, full_url, other in ctx.bundle_resources():
        if other is resource:
            me.add(str(full_url))
    for _, _, other in ctx.bundle_resources():
        if other.get("resourceType") != "CarePlan" or other is resource:
            continue
        if str(params["category"]) not in codes(
            other, "category.coding", str(params["category_system"])
        ):
            continue
        links = {
            str(r.get("reference"))
            for r in (other.get("partOf") or []) + (other.get("basedOn") or [])
            if isinstance(r, dict)
        }
        if links & me:
            return []
    return [Finding(str(params.get("detail", "no linked plan")))]
