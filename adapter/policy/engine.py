"""Evaluates the loaded rule packs over one resource; every finding carries its rule and citation."""

from __future__ import annotations

from collections.abc import Mapping

from adapter.context import ValidationContext
from adapter.fhir import jsonio
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.policy.rulepack import RulePack


class PolicyEngine:
    def __init__(self, packs: Mapping[str, RulePack]):
        self.packs = dict(packs)
        self._by_type: dict[str, list[object]] = {}

    def evaluate(self, resource: JsonObject, ctx: ValidationContext) -> list[Issue]:
        rt = resource.get("resourceType")
        names = ctx.packs or tuple(self.packs)
        plain = jsonio.to_plain(resource)
        issues: list[Issue] = []
        for name in names:
            pack = self.packs.get(name)
            if pack is None:
                continue
            for rule in pack.rules:
                if rule.applies_to != rt or rule.compiled is None:
                    continue
                result = rule.compiled(plain)
                if result == [True]:
                    continue
                issues.append(
                    Issue(rule.severity, "business-rule", rule.message,
                          expression=rule.location or str(rt), rule=rule.ref)
                )
        return issues
