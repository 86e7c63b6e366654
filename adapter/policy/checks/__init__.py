"""Named checks: the rules FHIRPath cannot say well (timescales in working days, Europe/London local
time, references resolved in the Bundle or the store, comparisons with the previous version).

A check takes (resource, context, params) and returns Findings; no findings means the rule holds.
Checks register by name with `@register("name")`; rule packs refer to them by that name and the
loader refuses a pack that names an unknown check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from adapter.context import ValidationContext
from adapter.fhir.types import JsonObject
from adapter.policy.checks.base import Finding

CheckFn = Callable[[JsonObject, ValidationContext, Mapping[str, Any]], list[Finding]]
CHECKS: Final[dict[str, CheckFn]] = {}


def register(name: str) -> Callable[[CheckFn], CheckFn]:
    def decorate(fn: CheckFn) -> CheckFn:
        if name in CHECKS:
            raise ValueError(f"check {name!r} registered twice")
        CHECKS[name] = fn
        return fn

    return decorate


from adapter.policy.checks import people, plans, timescales  # noqa: E402  (registers the checks)

__all__ = ["CHECKS", "CheckFn", "Finding", "people", "plans", "register", "timescales"]
