"""Timescale checks: "within N hours / days / working days / months" of an anchor event.

Hours are exact instants. Days, working days and months end at the close of the local (Europe/London)
day, so "within 5 working days" of a Wednesday referral is met any time on the fifth working day.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from adapter.context import ValidationContext
from adapter.fhir.types import JsonObject
from adapter.policy.calendar import (
    Subdivision,
    add_months,
    add_working_days,
    end_of_london_day,
    london_date,
)
from adapter.policy.checks import register
from adapter.policy.checks.base import Finding, first, instant, resolve


def due_by(anchor: datetime, params: Mapping[str, Any]) -> tuple[datetime, str]:
    """The deadline and a human description ("5 working days") from the rule's params."""
    subdivision = cast(Subdivision, params.get("subdivision", "ENG"))
    if "hours" in params:
        hours = int(params["hours"])
        return anchor + timedelta(hours=hours), f"{hours} hours"
    start = london_date(anchor)
    if "working_days" in params:
        n = int(params["working_days"])
        return end_of_london_day(add_working_days(start, n, subdivision)), f"{n} working days"
    if "months" in params:
        n = int(params["months"])
        return end_of_london_day(add_months(start, n)), f"{n} months"
    n = int(params.get("days", 0))
    return end_of_london_day(start + timedelta(days=n)), ("the same day" if n == 0 else f"{n} days")


def _anchor(
    resource: JsonObject, ctx: ValidationContext, params: Mapping[str, Any]
) -> datetime | None:
    source: JsonObject | None = resource
    if params.get("anchor_ref"):
        source = resolve(resource, first(resource, str(params["anchor_ref"])), ctx)
    if source is None:
        return None
    return instant(source, str(params.get("anchor", "authoredOn")))


@register("due_within")
def due_within(
    resource: JsonObject, ctx: ValidationContext, params: Mapping[str, Any]
) -> list[Finding]:
    """`target` (a path, or a list of paths: the first present wins) must fall no later than
    `anchor` + the timescale (and not before the anchor when
    `not_before_anchor`). A missing target fails only once the deadline has passed on ctx.clock
    (`missing: overdue`, the default) or always (`missing: fail`)."""
    anchor = _anchor(resource, ctx, params)
    if anchor is None:
        return []
    due, span = due_by(anchor, params)
    targets = params["target"] if isinstance(params["target"], list) else [params["target"]]
    target = next((t for t in (instant(resource, str(p)) for p in targets) if t), None)
    if target is None:
        missing = params.get("missing", "overdue")
        if missing == "fail" or (missing == "overdue" and ctx.clock.now() > due):
            return [Finding(f"not recorded and due by {due.date().isoformat()} ({span})")]
        return []
    if target > due:
        return [
            Finding(
                f"recorded {target.date().isoformat()}, due by "
                f"{london_date(due).isoformat()} ({span} from {london_date(anchor).isoformat()})"
            )
        ]
    if params.get("not_before_anchor") and target < anchor:
        return [
            Finding(
                f"recorded {target.date().isoformat()}, before {london_date(anchor).isoformat()}"
            )
        ]
    return []


@register("recent_enough")
def recent_enough(
    resource: JsonObject, ctx: ValidationContext, params: Mapping[str, Any]
) -> list[Finding]:
    """The resource at `ref` (e.g. a linked RiskAssessment) must be dated (`date` path) no earlier
    than `months` before `at` (a path of this resource) or before now."""
    target = resolve(resource, first(resource, str(params["ref"])), ctx)
    if target is None:
        return []
    dated = instant(target, str(params.get("date", "occurrenceDateTime")))
    if dated is None:
        return [Finding("the linked record has no date")]
    at = instant(resource, str(params["at"])) if params.get("at") else None
    reference_point = at or ctx.clock.now()
    oldest = add_months(london_date(reference_point), -int(params["months"]))
    if london_date(dated) < oldest:
        return [
            Finding(
                f"dated {london_date(dated).isoformat()}, older than {params['months']} months "
                f"before {london_date(reference_point).isoformat()}"
            )
        ]
    return []
