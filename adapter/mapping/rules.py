"""Compiled rule steps applied to one record: each value read through its selector, converted
(transform, ConceptMap, template), put at its target path in the output element, traced.

`_RuleRun` holds the state of one record's run with everything a single rule does to it; the walk
over resources (which specs, which group instances, identity, order, the unused-field report) is
its subclass `adapter.mapping.engine._Run`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

from adapter.fhir.types import JsonObject
from adapter.issue import Issue, IssueCode, Severity
from adapter.mapping.loader import ConceptMaps
from adapter.mapping.paths import get_path, getter, prune_empty
from adapter.mapping.result import MappedResource, MappingResult
from adapter.mapping.selectors import (
    _ABSOLUTE,
    _AGGREGATE,
    _BLOCK,
    _CONST,
    _DUE,
    _GROUP,
    _LITERAL,
    _LOCAL,
    _READ,
    _REF,
    _aggregate_plan,
    _Alternative,
    _is_clean,
    _is_leaf,
    _selector,
    _Step,
    _Where,
)
from adapter.mapping.spec import Aggregate, MappingSpec
from adapter.mapping.transforms import LONDON, TRANSFORMS
from adapter.sources.record import GroupInstance, SourceRecord


class _RuleRun:
    """One record through one mapping's rules. Output containers are pruned only when a rule may
    have left an empty or shared value in them (`dirty`): a rule writing a non-empty scalar, a
    reference or a mapped coding leaves nothing to prune, and that is nearly every rule."""

    def __init__(
        self,
        spec: MappingSpec,
        record: SourceRecord,
        concept_maps: ConceptMaps,
        settings: Mapping[str, Any],
    ):
        self.spec = spec
        self.record = record
        self.maps = concept_maps
        self.settings = {**spec.settings, **settings}
        self.result = MappingResult(spec.id, record)
        self.used = self.result.used
        self.rows: list[list[str]] = []
        self.rule_prefix = spec.rule_prefix
        self.built: dict[str, list[MappedResource]] = {}
        #: whether the container being filled may hold an empty or shared value
        self.dirty = False
        self.dirty_resources: list[bool] = []

    # selectors
    def _locate(
        self, kind: int, name: str, match_key: str, match_value: str, local: str
    ) -> str | None:
        """The global key an absolute or selected alternative points at (None when absent or empty)."""
        record = self.record
        if kind == _ABSOLUTE:
            return record.resolve(name)
        values = record.values
        for inst in record.group(name):
            key_global = inst.keys.get(match_key)
            if key_global is not None and values.get(key_global) == match_value:
                self.used.add(key_global)
                real = inst.keys.get(local)
                return record.resolve(real) if real else None
        return None

    def take(
        self, alternatives: tuple[_Alternative, ...], instance: GroupInstance | None
    ) -> tuple[str | None, str | None]:
        """(value, global key) of a parsed selector: a literal, or the first alternative present."""
        record = self.record
        for kind, name, match_key, match_value, local in alternatives:
            if kind == _LOCAL:  # the common case, inline: a key of the record or of the instance
                if instance is None:
                    key = record.resolve(name)
                else:
                    real = instance.keys.get(name)
                    key = record.resolve(real) if real else None
            elif kind == _LITERAL:
                return name, None
            else:
                key = self._locate(kind, name, match_key, match_value, local)
            if key is not None:
                self.used.add(key)
                return record.values[key], key
        return None, None

    def read(self, selector: str, instance: GroupInstance | None) -> tuple[str | None, str | None]:
        """(value, global key). A quoted selector (`'crisis'`) is a literal; `a ?? b` the first present."""
        return self.take(_selector(selector), instance)

    def matches(self, where: _Where, instance: GroupInstance | None) -> bool:
        """Every `selector: value` holds; a value written `!X` holds when the field is anything but X."""
        for alternatives, negated, expected in where:
            value, _ = self.take(alternatives, instance)
            if value == expected if negated else value != expected:
                return False
        return True

    def issue(self, severity: str, code: str, text: str, key: str | None, rule: str) -> None:
        self.result.issues.append(
            Issue(
                cast(Severity, severity),  # mapping files are schema-checked at load
                cast(IssueCode, code),
                text,
                expression=key,
                diagnostics=f"rule {rule}",
            )
        )

    def required_missing(
        self, selector: str, to: str, instance: GroupInstance | None, rule_id: str
    ) -> None:
        """The error for a required source field that is absent or empty, named where it should be."""
        text = f"{selector} is required for {to}"
        self.issue("error", "required", text, self.locate_name(selector, instance), rule_id)

    def locate_name(self, selector: str, instance: GroupInstance | None) -> str:
        """The source field a selector names, as a record key where one can be derived, so that a
        missing field inside a group is named like a present one (`OBX[3]-11`, ERR-2 `OBX^3^11`)."""
        selector = selector.split(" ?? ")[0]
        if instance is None or selector.startswith("/"):
            return selector.lstrip("/")
        for local, global_key in instance.keys.items():
            named = _global_name(selector, local, global_key)
            if named is not None:
                return named
        return next(iter(instance.keys.values()), selector).split("-")[0] + f" {selector}"

    def put(
        self,
        target: JsonObject,
        step: _Step,
        value: Any,
        ref: str,
        source: str,
        position: str = "",
        is_clean: bool = True,
    ) -> None:
        """Sets the step's `to` in `target` and traces where the value came from."""
        path = step.setter.put(target, value)
        self.rows.append([ref, path, source, step.rule_id, position])
        if not is_clean or step.setter.may_pad:
            self.dirty = True

    def apply_rules(
        self,
        steps: tuple[_Step, ...],
        target: JsonObject,
        instance: GroupInstance | None,
        ref: str,
    ) -> bool:
        """Applies rules into `target`; False when an aggregate could not be computed (skip resource).
        Trace paths are relative to `target`: `nested` puts the element's path in front."""
        record = self.record
        for step in steps:
            kind = step.kind
            rule = step.rule
            if kind == _READ:
                raw, key = self.take(step.source, instance)
                if raw is None:
                    if rule.required:
                        self.required_missing(str(rule.source), rule.to, instance, step.rule_id)
                    continue
                self.convert(step, raw, key, target, ref)
                continue
            if kind == _CONST:
                self.put(target, step, rule.const, ref, "const", "", step.const_is_leaf)
                continue
            if kind == _BLOCK:
                if rule.when is not None:
                    value, _ = self.take(step.source, instance)
                    if (value is not None) if step.negate_when else (value is None):
                        continue
                self.nested(step, target, instance, ref)
                continue
            if kind == _GROUP:
                for inst in record.group(str(rule.group)):
                    if self.matches(step.where, inst):
                        self.nested(step, target, inst, ref)
                continue
            if kind == _AGGREGATE:
                assert rule.aggregate is not None
                computed = self.aggregate(rule.aggregate)
                if computed is None:
                    self.issue(
                        "information",
                        "informational",
                        f"{rule.to} not computed: not every item needed was present and in range",
                        None,
                        step.rule_id,
                    )
                    return False
                self.put(target, step, computed, ref, f"aggregate:{rule.aggregate.function}")
                continue
            if kind == _REF:
                targets = self.built.get(str(rule.ref), [])
                for other in targets if "[+]" in rule.to else targets[:1]:
                    reference = {"reference": other.reference}
                    self.put(target, step, reference, ref, f"ref:{rule.ref}")
                continue
            if kind == _DUE:
                self.deadline(step, target, instance, ref)
                continue
            setting = self.settings[str(rule.setting)]
            self.put(target, step, setting, ref, f"setting:{rule.setting}", "", _is_leaf(setting))
        return True

    def convert(self, step: _Step, raw: str, key: str | None, target: JsonObject, ref: str) -> None:
        """A value read from the record, transformed, mapped and templated as the rule asks, then
        put and traced to its key and position (or to the selector, for a literal)."""
        rule = step.rule
        rule_id = step.rule_id
        value: Any = raw
        problem: str | None
        if rule.transform is not None:
            transform = step.transform or TRANSFORMS[rule.transform]
            value, problem = transform(raw)
            if problem is not None:
                self.issue("error", "value", f"{rule.source} {problem}", key, rule_id)
                return
        if rule.map is not None:
            translation = self.maps.translate(rule.map, str(value))
            if translation is None and rule.on_unmapped == "keep":
                self.put_read(step, target, value, key, ref)  # as it came, no template
                return
            if translation is None:
                severity = "error" if rule.on_unmapped == "error" else "warning"
                self.issue(
                    severity,
                    "code-invalid",
                    f"{rule.source} code '{value}' has no entry in ConceptMap {rule.map}",
                    key,
                    rule_id,
                )
                return
            coding = {
                "system": translation.system,
                "code": translation.code,
                **({"display": translation.display} if translation.display else {}),
            }
            value = {
                "coding": coding,
                "code": translation.code,
                "display": translation.display,
                "codeableconcept": {"coding": [coding]},
            }[rule.emit]
            if value is None:
                return
        if rule.template is not None:
            value = rule.template.replace("{value}", str(value))
        self.put_read(step, target, value, key, ref)

    def put_read(
        self, step: _Step, target: JsonObject, value: Any, key: str | None, ref: str
    ) -> None:
        """`put` of a value read from the record: traced to its key and position. Transforms and
        concept maps build a fresh value per call, so only emptiness needs checking."""
        position = self.record.position(key) if key else ""
        source = key or str(step.rule.source)
        self.put(target, step, value, ref, source, position, _is_clean(value))

    def deadline(
        self,
        step: _Step,
        target: JsonObject,
        instance: GroupInstance | None,
        ref: str,
    ) -> None:
        """`due`: the anchor's date/time plus the timescale in `setting`, by the policy calendar."""
        from adapter.policy.checks.timescales import due_by

        rule = step.rule
        assert rule.due is not None
        assert rule.setting is not None
        raw, key = self.take(step.source, instance)
        if raw is None:
            if rule.required:
                self.required_missing(rule.due, rule.to, instance, step.rule_id)
            return
        anchor_text, problem = TRANSFORMS["datetime"](raw)
        if problem is not None:
            self.issue("error", "value", f"{rule.due} {problem}", key, step.rule_id)
            return
        anchor = datetime.fromisoformat(str(anchor_text))
        if anchor.tzinfo is None:
            anchor = anchor.replace(tzinfo=LONDON)
        deadline, _ = due_by(anchor, self.settings[rule.setting])
        position = f"{self.record.position(key) if key else ''} + setting:{rule.setting}"
        source = key or str(rule.due)
        self.put(target, step, deadline.isoformat(), ref, source, position)

    def nested(
        self,
        step: _Step,
        target: JsonObject,
        instance: GroupInstance | None,
        ref: str,
    ) -> None:
        """A block's rules into a new element, put at the block's `to` unless it came out empty;
        its trace rows get the element's concrete path in front once that is known."""
        element: JsonObject = {}
        rows = self.rows
        trace_start = len(rows)
        outer_dirty = self.dirty
        self.dirty = False
        self.apply_rules(step.steps, element, instance, ref)
        if self.dirty:
            element = prune_empty(
                element
            )  # fresh and clean now: the outer container is not dirtied
        self.dirty = outer_dirty
        if not element:
            del rows[trace_start:]
            return
        concrete = step.setter.put(target, element)
        if step.setter.may_pad:
            self.dirty = True
        head = f"{concrete}."
        for j in range(trace_start, len(rows)):
            rows[j][1] = head + rows[j][1]

    def aggregate(self, spec: Aggregate) -> float | int | None:
        built = self.built.get(spec.resource)
        if not built:
            return None
        items = get_path(built[0].resource, spec.items)
        if not isinstance(items, list):
            return None
        minimum, maximum, wanted = _aggregate_plan(spec)
        key_of = getter(spec.key)
        value_of = getter(spec.value)
        found: dict[str, Decimal] = {}
        for item in items:
            key = key_of(item)
            value = value_of(item)
            if key in spec.keys and isinstance(value, int | float) and not isinstance(value, bool):
                number = Decimal(str(value))
                if minimum is not None and number < minimum:
                    continue
                if maximum is not None and number > maximum:
                    continue
                found[str(key)] = number
        if spec.require_all and found.keys() != wanted:
            return None
        if not found:
            return None
        if spec.function == "count":
            return len(found)
        total = sum(found.values(), Decimal(0))
        result = total if spec.function == "sum" else total / Decimal(len(found))
        rounded = result.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        return int(rounded) if rounded == rounded.to_integral_value() else float(rounded)


def _global_name(selector: str, local: str, global_key: str) -> str | None:
    """`selector`'s key in the record, from one (local, global) key pair of its group instance:
    `OBX-5`/`OBX-5` (a first segment: keys coincide), `OBX-5`/`OBX[3]-5` (a later segment),
    `1`/`PID-3[2].1` or `linkId`/`item[0].linkId` (a repetition or a path prefix). None when the
    pair shows no such shape."""
    if global_key == local:
        return selector
    segment, dash, _ = local.partition("-")
    if dash and global_key.startswith(f"{segment}[") and selector.startswith(f"{segment}-"):
        return global_key[: global_key.index("]") + 1] + selector[len(segment) :]
    if global_key.endswith(local) and global_key[-len(local) - 1] in ".]":
        return global_key[: -len(local)] + selector
    return None
