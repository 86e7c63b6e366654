"""Evaluates the loaded rule packs over one resource; every finding carries its rule and citation.

Pack selection per resource: the context's packs, or else the configured ones (packs loaded only
`on_demand` are not configured). Then the data may change it (`jurisdiction.detect`): a Welsh
resource drops packs for England and adds the Welsh ones. Trust overrides of the selected packs
are applied to the rules once per distinct selection and cached, as is the index by resource type.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from adapter.context import ValidationContext
from adapter.fhir import jsonio
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.policy import jurisdiction
from adapter.policy.checks import CHECKS
from adapter.policy.fastpath import Fallback, FastFn, Focus
from adapter.policy.overrides import apply_overrides, provenance, read_overrides
from adapter.policy.rulepack import Compiled, Rule, RulePack, load_packs
from adapter.policy.views import care_plan_view

if TYPE_CHECKING:
    from adapter.settings import Settings

_log = logging.getLogger(__name__)


class _Subject:
    """One resource under evaluation. The fast evaluator reads the JSON as given (Decimal-safe);
    the plain copy fhirpathpy needs is made at most once, and only if something falls back."""

    __slots__ = ("_focus", "_plain", "resource")

    def __init__(self, resource: JsonObject) -> None:
        self.resource = resource
        #: the root focus, shared by every rule and guard: it carries their common subexpressions
        self._focus = Focus(resource)
        self._plain: JsonObject | None = None

    def holds(self, fast: FastFn | None, compiled: Compiled) -> bool:
        if fast is not None:
            try:
                return fast(self._focus) == [True]
            except Fallback:
                pass
        if self._plain is None:
            self._plain = jsonio.to_plain(self.resource)
        return bool(compiled(self._plain) == [True])


@dataclass(frozen=True, slots=True)
class Evaluation:
    issues: list[Issue]
    #: ids of the rules that applied (guard true) and were evaluated, whether or not they failed
    evaluated: tuple[str, ...]
    packs: tuple[str, ...]


#: The five clinical artefacts the packs govern; one of these that no rule applied to is reported.
ARTEFACT_TYPES: Final = frozenset(
    {"ServiceRequest", "CarePlan", "RiskAssessment", "QuestionnaireResponse", "Composition"}
)


class PolicyEngine:
    def __init__(self, packs: Mapping[str, RulePack]):
        self.packs = dict(packs)
        self.configured: tuple[str, ...] = tuple(
            n for n, p in self.packs.items() if not p.on_demand
        )
        self._index: dict[tuple[str, ...], dict[str, tuple[Rule, ...]]] = {}
        self._rules: dict[str, Rule] = {r.id: r for p in self.packs.values() for r in p.rules}
        #: resource types some loaded rule applies to, whatever the selection (overrides only
        #: change or remove rules): any other type is judged by no rule
        self._judged: frozenset[str] = frozenset(
            r.applies_to for p in self.packs.values() for r in p.rules
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicyEngine:
        names = list(settings.policy_packs)
        if settings.trust_overrides and settings.trust_overrides not in names:
            names.append(settings.trust_overrides)
        return cls(load_packs(settings.profiles_dir / "policy", names))

    # -- introspection -------------------------------------------------------------------------
    def rules(self) -> Iterable[Rule]:
        return self._rules.values()

    def rule(self, rule_id: str) -> Rule | None:
        return self._rules.get(rule_id)

    def stamps(self) -> list[str]:
        return [p.stamp for p in self.packs.values()]

    # -- selection -----------------------------------------------------------------------------
    def select_packs(self, resource: JsonObject, ctx: ValidationContext) -> tuple[str, ...]:
        names = [n for n in (ctx.packs or self.configured) if n in self.packs]
        nation = jurisdiction.detect(resource, ctx)
        if nation == "wales":
            names = [n for n in names if self.packs[n].jurisdiction != "england"]
            names += [
                n for n, p in self.packs.items() if p.jurisdiction == "wales" and n not in names
            ]
        return tuple(names)

    def _rules_for(self, names: tuple[str, ...]) -> dict[str, tuple[Rule, ...]]:
        cached = self._index.get(names)
        if cached is not None:
            return cached
        tuned: dict[str, Rule] = {}
        for name in names:
            for rule in self.packs[name].rules:
                tuned[rule.id] = rule
        for name in names:
            for override in self.packs[name].overrides:
                target = tuned.get(override.rule)
                if target is None:
                    continue
                if not override.enabled:
                    del tuned[override.rule]
                    continue
                tuned[override.rule] = replace(
                    target,
                    severity=override.severity or target.severity,
                    params={**target.params, **override.params},
                    tuned_by=f"{name}: {override.reason} ({override.citation})",
                )
        index: dict[str, list[Rule]] = {}
        for rule in tuned.values():
            index.setdefault(rule.applies_to, []).append(rule)
        frozen = {k: tuple(v) for k, v in index.items()}
        self._index[names] = frozen
        return frozen

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, resource: JsonObject, ctx: ValidationContext) -> list[Issue]:
        rt = str(resource.get("resourceType"))
        if rt not in self._judged:
            # no pack has a rule for it (a Patient, an Observation): no selection could judge it,
            # so neither the jurisdiction walk nor the trace is needed
            return []
        result = self.evaluate_traced(resource, ctx)
        if rt in ARTEFACT_TYPES and not result.evaluated and self._rules_for(result.packs).get(rt):
            # Never a silent bypass: an artefact the packs cover but that no rule recognised (its
            # category/profile codings did not match) is accepted, and the caller is told.
            return [
                *result.issues,
                Issue(
                    "warning",
                    "business-rule",
                    f"No policy rule applied to this {rt}: it was not recognised as one of the "
                    f"artefacts the packs {', '.join(result.packs)} cover; check its category, "
                    "profile and team-type codings",
                    expression=rt,
                ),
            ]
        return result.issues

    def evaluate_traced(self, resource: JsonObject, ctx: ValidationContext) -> Evaluation:
        names = self.select_packs(resource, ctx)
        rt = str(resource.get("resourceType"))
        rules = self._rules_for(names).get(rt, ())
        if not rules:
            return Evaluation([], (), names)
        subject = _Subject(care_plan_view(resource, ctx))
        holds = subject.holds
        profiles: set[str] | None = None
        guard_cache: dict[str, bool] = {}
        issues: list[Issue] = []
        evaluated: list[str] = []
        overridable: set[str] = set()
        for rule in rules:
            if rule.profile:
                if profiles is None:
                    profiles = set((resource.get("meta") or {}).get("profile") or [])
                if rule.profile not in profiles:
                    continue
            guard = rule.guard
            if guard is not None:
                hit = guard_cache.get(guard.key)
                if hit is None:
                    try:
                        hit = holds(guard.fast, guard.compiled)
                    except Exception as exc:  # a faulty guard must not become a 500
                        issues.append(self._failed(rule, exc))
                        continue
                    guard_cache[guard.key] = hit
                if not hit:
                    continue
            evaluated.append(rule.id)
            if rule.overridable:
                overridable.add(rule.id)
            try:
                if rule.compiled is not None:
                    # an expression rule, the common case, without the call through `_run`
                    if not holds(rule.fast, rule.compiled):
                        issues.append(self._issue(rule, rule.location or rt, None))
                else:
                    issues.extend(self._run(rule, subject, ctx))
            except Exception as exc:  # a faulty rule must not become a 500
                issues.append(self._failed(rule, exc))
        if issues and any(i.is_blocking for i in issues):
            found = read_overrides(resource)
            if found:
                issues = apply_overrides(issues, overridable, found)
        return Evaluation(issues, tuple(evaluated), names)

    def _run(self, rule: Rule, subject: _Subject, ctx: ValidationContext) -> list[Issue]:
        resource = subject.resource
        if rule.compiled is not None:
            if subject.holds(rule.fast, rule.compiled):
                return []
            return [self._issue(rule, rule.location or str(resource.get("resourceType")), None)]
        where = rule.location or str(resource.get("resourceType"))
        findings = CHECKS[str(rule.check)](resource, ctx, rule.params)
        return [self._issue(rule, f.location or where, f.detail) for f in findings]

    @staticmethod
    def _failed(rule: Rule, exc: Exception) -> Issue:
        """A rule that raised: an `exception` error naming the rule, never a crash. The exception
        class only (its message may quote data) goes into diagnostics; the log carries the id."""
        _log.error("policy rule %s raised %s", rule.id, type(exc).__name__)
        return Issue(
            "error",
            "exception",
            f"Policy rule {rule.id} could not be evaluated; the resource was not judged against "
            "it. This is a fault in the rule pack, not in the data.",
            expression=rule.location or rule.applies_to,
            rule=rule.ref,
            diagnostics=f"rule-error={type(exc).__name__}",
        )

    @staticmethod
    def _issue(rule: Rule, where: str, detail: str | None) -> Issue:
        return Issue(
            rule.severity,
            "business-rule",
            rule.message,
            expression=where,
            rule=rule.ref,
            diagnostics=detail,
        )

    def overrides_provenance(
        self, resource: JsonObject, issues: list[Issue], ctx: ValidationContext
    ) -> JsonObject | None:
        return provenance(resource, issues, ctx)
