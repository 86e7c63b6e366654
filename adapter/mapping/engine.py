"""The generic mapping engine: a MappingSpec applied to a SourceRecord gives FHIR resources,
issues that point at source fields, a trace, and the list of source fields nobody used.

It knows no message type, column or code: those live in the mapping file. It does not store or
validate (the pipeline does), and it never drops a field silently: every non-empty source value
is either read by a rule, listed under `ignore` with a reason, or reported as unmapped.

This module walks the resources of a mapping; what one rule does is in `adapter.mapping.rules`,
the result types are in `adapter.mapping.result`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapter.fhir.types import JsonObject
from adapter.mapping.ids import deterministic_id
from adapter.mapping.loader import ConceptMaps
from adapter.mapping.paths import get_path, getter, prune_empty, set_path
from adapter.mapping.result import MappedResource, MappingResult
from adapter.mapping.rules import _RuleRun
from adapter.mapping.selectors import (
    _ignore_matcher,
    _plan,
    _rank,
    _Step,
    _unused_field_issue,
    _where,
)
from adapter.mapping.spec import MappingSpec, ResourceSpec
from adapter.mapping.transforms import TRANSFORMS
from adapter.sources.record import GroupInstance, SourceRecord

#: MappedResource and MappingResult live in adapter.mapping.result, the rule steps in
#: adapter.mapping.rules, get_path, set_path and prune_empty in adapter.mapping.paths, _ignore_matcher
#: in adapter.mapping.selectors; re-exported for callers here
#: adapter.mapping.selectors; re-exported for callers here
__all__ = [
    "MappedResource",
    "MappingResult",
    "_ignore_matcher",
    "apply_mapping",
    "get_path",
    "prune_empty",
    "set_path",
]


class _Run(_RuleRun):
    """One record through one mapping: for each resource spec, its group instances that pass
    `where` and `when`, each built with its identity, rules and order; then the unused fields."""

    def run(self) -> MappingResult:
        for res, steps in zip(self.spec.resources, _plan(self.spec), strict=True):
            instances: list[GroupInstance | None] = [None]
            if res.foreach is not None:
                instances = [i for i in self.record.group(res.foreach)]
            where = _where(res.where) if res.where else ()
            for instance in instances:
                if where and not self.matches(where, instance):
                    continue
                if res.when is not None and not self.condition(res.when, instance):
                    continue
                self.build(res, steps, instance)
        for mapped, dirty in zip(self.result.resources, self.dirty_resources, strict=True):
            if dirty:
                mapped.resource = prune_empty(mapped.resource)
        self.result.trace_rows = self.rows
        if self.spec.event_time is not None:  # read by Inbound to stamp the source event
            self.used.add(self.spec.event_time)
        self.report_unused()
        return self.result

    def condition(self, when: str, instance: GroupInstance | None) -> bool:
        negate = when.startswith("!")
        value, _ = self.read(when.lstrip("!"), instance)
        return (value is None) if negate else (value is not None)

    def build(
        self, res: ResourceSpec, steps: tuple[_Step, ...], instance: GroupInstance | None
    ) -> None:
        rule_base = f"{self.rule_prefix}#{res.name}"
        resource: JsonObject = {"resourceType": res.type}
        match: tuple[str, str] | None = None
        if res.match is not None:
            value, key = self.read(res.match.value, instance)
            if value is None:
                self.issue(
                    "error",
                    "required",
                    f"{res.type} needs its identifier ({res.match.value})",
                    res.match.value,
                    rule_base,
                )
                return
            if "nhs-number" in res.match.system:
                checked, problem = TRANSFORMS["nhs_number"](value)
                if problem is not None:
                    self.issue("error", "value", f"{res.match.value} {problem}", key, rule_base)
                    return
                value = str(checked)
            match = (res.match.system, value)
            resource["id"] = deterministic_id(res.type, res.match.system, value)
        else:
            parts: list[str] = []
            for selector in res.id_from:
                value, _ = self.read(selector, instance)
                if value is None:
                    self.issue(
                        "error",
                        "required",
                        f"{res.type} needs its business identifier ({selector})",
                        self.locate_name(selector, instance),
                        rule_base,
                    )
                    return
                parts.append(value)
            resource["id"] = deterministic_id(res.type, *parts)
        mapped = MappedResource(res.name, resource, match)
        ref = mapped.reference
        before = len(self.result.issues)
        self.dirty = False
        ok = self.apply_rules(steps, resource, instance, ref)
        blocking = any(i.is_blocking for i in self.result.issues[before:])
        if not ok or blocking:
            return
        if res.order is not None:
            self.sort(resource, res.order, ref)
        self.built.setdefault(res.name, []).append(mapped)
        self.result.resources.append(mapped)
        # an empty resourceType or id (a literal '' in the mapping) is pruned, as it always was
        self.dirty_resources.append(self.dirty or not (res.type and resource["id"]))

    def sort(self, resource: JsonObject, order: tuple[str, str, tuple[str, ...]], ref: str) -> None:
        """Orders the list at `order[0]` by the rank of each item's key, and moves the trace along."""
        list_path, key_path, values = order
        items = get_path(resource, list_path)
        if not isinstance(items, list):
            return
        rank = _rank(values)
        unranked = len(rank)
        key_of = getter(key_path)
        ranks = [rank.get(str(key_of(item)), unranked) for item in items]
        moved = sorted(range(len(items)), key=ranks.__getitem__)  # stable: ties keep their order
        if all(new == old for new, old in enumerate(moved)):
            return  # already in order: no item moves, so no trace path changes
        items[:] = [items[i] for i in moved]
        new_index = {old: new for new, old in enumerate(moved)}
        prefix = f"{list_path}["
        start = len(prefix)
        for row in self.rows:
            path = row[1]
            if row[0] != ref or not path.startswith(prefix):
                continue
            close = path.index("]", start)
            old = int(path[start:close])
            if new_index[old] == old and path[start:close] == str(old):
                continue  # the same entry would be rebuilt
            row[1] = f"{prefix}{new_index[old]}{path[close:]}"

    def report_unused(self) -> None:
        """One information issue per non-empty source field no rule read: ~100 per v2 message.
        The issues are frozen and depend only on the mapping and the key, so each is built once."""
        classify = _unused_field_issue(self.rule_prefix, self.spec.ignore)
        used = self.used
        ignored = self.result.ignored
        unmapped = self.result.unmapped
        issues = self.result.issues
        for key in self.record.non_empty_keys():
            if key in used:
                continue
            is_ignored, issue = classify(key)
            (ignored if is_ignored else unmapped).append(key)
            issues.append(issue)


def apply_mapping(
    spec: MappingSpec,
    record: SourceRecord,
    concept_maps: ConceptMaps,
    settings: Mapping[str, Any] | None = None,
) -> MappingResult:
    """Runs one mapping over one record. Collects every issue; never raises for bad content."""
    return _Run(spec, record, concept_maps, settings or {}).run()
