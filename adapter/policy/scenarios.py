"""Policy fixtures: YAML scenarios under fixtures/policy/<pack>/*.yaml, run against the engine.

Shared by the parametrised tests, the coverage generator and `adapter policy explain`. A file:

    packs: [england-cmht]             # packs in force (default: the directory name)
    now: "2026-12-23T10:00:00Z"       # FixedClock time (default for every case)
    base: {resourceType: ServiceRequest, ...}   # a resource that passes every rule that applies
    cases:
      - name: valid
        expect_pass: all              # nothing fires; the evaluated rules are recorded as passing
      - name: no-priority
        remove: [priority]            # patch the base: dotted paths, `[n]` and `[key=value]`
        set: {status: revoked}
        append: {extension: {...}}    # add one item to a list; `extend:` adds a list of items
        expect_fail: [S000-REF-URG-01]
        expect_pass: [OTHER-RULE]     # optional: evaluated and silent
        bundle: [...]                 # optional: other resources travelling in the same Bundle
        previous: {set: {...}}        # optional: patch of the base giving the stored version
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from adapter.clock import FixedClock
from adapter.context import ValidationContext
from adapter.fhir.types import JsonObject
from adapter.policy.engine import Evaluation, PolicyEngine


@dataclass(frozen=True, slots=True)
class Scenario:
    file: str
    name: str
    packs: tuple[str, ...]
    resource: JsonObject
    now: datetime
    expect_fail: tuple[str, ...] = ()
    expect_pass: tuple[str, ...] | str = ()
    bundle: tuple[JsonObject, ...] = ()
    previous: JsonObject | None = None
    facts: dict[str, str] = field(default_factory=dict)
    expect_severity: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{Path(self.file).parent.name}/{Path(self.file).stem}::{self.name}"

    def context(self) -> ValidationContext:
        bundle = None
        if self.bundle:
            bundle = {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {"fullUrl": f"urn:x:{i}", "resource": r}
                    for i, r in enumerate((self.resource, *self.bundle))
                ],
            }
        return ValidationContext(
            clock=FixedClock(self.now),
            bundle=bundle,
            entry_index=0 if bundle else None,
            packs=self.packs,
            previous=self.previous,
            facts=self.facts,
            mode="update" if self.previous else "create",
        )

    def run(self, engine: PolicyEngine) -> Evaluation:
        return engine.evaluate_traced(self.resource, self.context())


def _steps(path: str) -> list[str]:
    """`a.b[0].c[url=http://x.y/z]` -> a, b, [0], c, [url=http://x.y/z] (dots inside [] kept)."""
    return re.findall(r"\[[^\]]*\]|[^.\[]+", path)


def _select(node: Any, step: str) -> tuple[Any, Any]:
    """(container, key) for one step; `[n]` indexes a list, `[k=v]` finds the list item."""
    if step.startswith("["):
        inner = step[1:-1]
        if "=" in inner:
            key, value = inner.split("=", 1)
            for i, item in enumerate(node):
                if str(item.get(key)) == value:
                    return node, i
            raise KeyError(step)
        return node, int(inner)
    return node, step


def _walk(root: Any, path: str) -> tuple[Any, Any]:
    steps = _steps(path)
    node = root
    for step in steps[:-1]:
        container, key = _select(node, step)
        if isinstance(container, dict) and key not in container:
            container[key] = {}
        node = container[key]
    return _select(node, steps[-1])


def patch(base: JsonObject, spec: dict[str, Any]) -> JsonObject:
    out = copy.deepcopy(base)
    for path in spec.get("remove") or []:
        container, key = _walk(out, path)
        del container[key]
    for path, value in (spec.get("set") or {}).items():
        container, key = _walk(out, path)
        if isinstance(container, list) and key == len(container):
            container.append(copy.deepcopy(value))
        else:
            container[key] = copy.deepcopy(value)
    for path, value in (spec.get("append") or {}).items():
        container, key = _walk(out, path)
        container.setdefault(key, []).append(copy.deepcopy(value))
    for path, values in (spec.get("extend") or {}).items():
        container, key = _walk(out, path)
        container.setdefault(key, []).extend(copy.deepcopy(values))
    return out


def _when(value: Any) -> datetime:
    moment = (
        value
        if isinstance(value, datetime)
        else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    )
    if moment.tzinfo is None:
        raise ValueError(f"fixture time {value!r} needs an offset")
    return moment


def load_file(path: Path) -> list[Scenario]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    packs = tuple(doc.get("packs") or [path.parent.name])
    base = doc["base"]
    out: list[Scenario] = []
    for case in doc.get("cases") or []:
        expect_pass = case.get("expect_pass", ())
        out.append(
            Scenario(
                file=str(path),
                name=str(case["name"]),
                packs=tuple(case.get("packs") or packs),
                resource=patch(base, case),
                now=_when(case.get("now", doc.get("now", "2026-06-01T09:00:00Z"))),
                expect_fail=tuple(case.get("expect_fail") or ()),
                expect_pass=expect_pass if isinstance(expect_pass, str) else tuple(expect_pass),
                bundle=tuple(case.get("bundle") or doc.get("bundle") or ()),
                previous=patch(base, case["previous"]) if "previous" in case else None,
                facts=dict(case.get("facts") or {}),
                expect_severity=dict(case.get("expect_severity") or {}),
            )
        )
    return out


def load_all(fixtures_dir: Path) -> list[Scenario]:
    return [s for path in sorted(fixtures_dir.glob("*/*.yaml")) for s in load_file(path)]


def engines_for(scenarios: list[Scenario], policy_dir: Path) -> dict[tuple[str, ...], PolicyEngine]:
    from adapter.policy.rulepack import load_packs

    return {
        packs: PolicyEngine(load_packs(policy_dir, list(packs)))
        for packs in {s.packs for s in scenarios}
    }


@dataclass(slots=True)
class Coverage:
    passing: dict[str, list[str]] = field(default_factory=dict)
    failing: dict[str, list[str]] = field(default_factory=dict)


def coverage(scenarios: list[Scenario], policy_dir: Path) -> Coverage:
    """Which scenarios show each rule passing (evaluated, silent, in a case that expects passes)
    and failing (fired where the case expects it to)."""
    engines = engines_for(scenarios, policy_dir)
    cov = Coverage()
    for s in scenarios:
        result = s.run(engines[s.packs])
        fired = {i.rule.id for i in result.issues if i.rule}
        expected_pass = set(result.evaluated) if s.expect_pass == "all" else set(s.expect_pass)  # noqa: S105 (a scenario key, not a secret)
        for rule_id in result.evaluated:
            if rule_id in expected_pass and rule_id not in fired:
                cov.passing.setdefault(rule_id, []).append(s.id)
            if rule_id in s.expect_fail and rule_id in fired:
                cov.failing.setdefault(rule_id, []).append(s.id)
    return cov


def iter_ids(scenarios: list[Scenario]) -> Iterator[str]:
    return (s.id for s in scenarios)
