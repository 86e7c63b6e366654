"""The generic mapping engine: a MappingSpec applied to a SourceRecord gives FHIR resources,
issues that point at source fields, a trace, and the list of source fields nobody used.

It knows no message type, column or code: those live in the mapping file. It does not store or
validate (the pipeline does), and it never drops a field silently: every non-empty source value
is either read by a rule, listed under `ignore` with a reason, or reported as unmapped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from fnmatch import translate
from functools import lru_cache
from typing import Any, cast

from adapter.fhir.types import JsonObject
from adapter.issue import Issue, IssueCode, Severity
from adapter.mapping.ids import deterministic_id
from adapter.mapping.loader import ConceptMaps
from adapter.mapping.paths import get_path, prune_empty, set_path
from adapter.mapping.selectors import _ABSOLUTE, _LITERAL, _SELECTED, _conditions, _selector
from adapter.mapping.spec import Aggregate, MappingSpec, ResourceSpec, Rule
from adapter.mapping.trace import TraceEntry
from adapter.mapping.transforms import LONDON, TRANSFORMS
from adapter.sources.record import GroupInstance, SourceRecord

#: get_path, set_path and prune_empty live in adapter.mapping.paths; re-exported for callers here
__all__ = [
    "MappedResource",
    "MappingResult",
    "_ignore_matcher",
    "apply_mapping",
    "get_path",
    "prune_empty",
    "set_path",
]


@dataclass(slots=True)
class MappedResource:
    name: str
    resource: JsonObject
    #: (identifier system, value) when the resource is found-or-created by identifier
    match: tuple[str, str] | None = None

    @property
    def reference(self) -> str:
        return f"{self.resource['resourceType']}/{self.resource['id']}"


@dataclass(slots=True)
class MappingResult:
    mapping_id: str
    record: SourceRecord
    resources: list[MappedResource] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    trace: list[TraceEntry] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    unmapped: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def source_of(self, resource_ref: str, path: str) -> str | None:
        """The source key behind an output element (for pointing pipeline issues back at the source)."""
        for entry in self.trace:
            related = (
                path == entry.path
                or path.startswith(entry.path + ".")
                or entry.path.startswith(path)
            )
            synthetic = entry.source == "const" or entry.source.startswith(
                ("ref:", "aggregate:", "setting:")
            )
            if entry.resource == resource_ref and related and not synthetic:
                return entry.source
        return None


# -- the engine ----------------------------------------------------------------------------------
class _Run:
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
        self.rule_prefix = spec.rule_prefix
        self.built: dict[str, list[MappedResource]] = {}

    # selectors
    def _locate(
        self,
        kind: int,
        name: str,
        match_key: str,
        match_value: str,
        local: str,
        instance: GroupInstance | None,
    ) -> str | None:
        """The global key one compiled alternative points at (None when absent or empty)."""
        record = self.record
        if kind == _ABSOLUTE:
            return record.resolve(name)
        if kind == _SELECTED:
            values = record.values
            for inst in record.group(name):
                key_global = inst.keys.get(match_key)
                if key_global is not None and values.get(key_global) == match_value:
                    self.result.used.add(key_global)
                    real = inst.keys.get(local)
                    return record.resolve(real) if real else None
            return None
        if instance is not None:
            real = instance.keys.get(name)
            return record.resolve(real) if real else None
        return record.resolve(name)

    def read(self, selector: str, instance: GroupInstance | None) -> tuple[str | None, str | None]:
        """(value, global key). A quoted selector (`'crisis'`) is a literal; `a ?? b` the first present."""
        for kind, name, match_key, match_value, local in _selector(selector):
            if kind == _LITERAL:
                return name, None
            key = self._locate(kind, name, match_key, match_value, local, instance)
            if key is not None:
                self.result.used.add(key)
                return self.record.values[key], key
        return None, None

    def matches(self, where: tuple[tuple[str, str], ...], instance: GroupInstance | None) -> bool:
        """Every `selector: value` holds; a value written `!X` holds when the field is anything but X."""
        for selector, negated, expected in _conditions(where):
            value, _ = self.read(selector, instance)
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

    # resources
    def run(self) -> MappingResult:
        for res in self.spec.resources:
            instances: list[GroupInstance | None] = [None]
            if res.foreach is not None:
                instances = [i for i in self.record.group(res.foreach)]
            for instance in instances:
                if res.where and not self.matches(res.where, instance):
                    continue
                if res.when is not None and not self.condition(res.when, instance):
                    continue
                self.build(res, instance)
        for mapped in self.result.resources:
            mapped.resource = prune_empty(mapped.resource)
        self.report_unused()
        return self.result

    def condition(self, when: str, instance: GroupInstance | None) -> bool:
        negate = when.startswith("!")
        value, _ = self.read(when.lstrip("!"), instance)
        return (value is None) if negate else (value is not None)

    def build(self, res: ResourceSpec, instance: GroupInstance | None) -> None:
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
        ok = self.apply_rules(res.rules, resource, "", instance, ref, rule_base)
        blocking = any(i.is_blocking for i in self.result.issues[before:])
        if not ok or blocking:
            return
        if res.order is not None:
            self.sort(resource, res.order, ref)
        self.built.setdefault(res.name, []).append(mapped)
        self.result.resources.append(mapped)

    def sort(self, resource: JsonObject, order: tuple[str, str, tuple[str, ...]], ref: str) -> None:
        list_path, key_path, values = order
        items = get_path(resource, list_path)
        if not isinstance(items, list):
            return
        rank = {v: i for i, v in enumerate(values)}
        moved = sorted(
            range(len(items)),
            key=lambda i: (rank.get(str(get_path(items[i], key_path)), len(rank)), i),
        )
        resource_items = [items[i] for i in moved]
        items[:] = resource_items
        new_index = {old: new for new, old in enumerate(moved)}
        prefix = f"{list_path}["
        for j, t in enumerate(self.result.trace):
            if t.resource != ref or not t.path.startswith(prefix):
                continue
            close = t.path.index("]", len(prefix))
            old = int(t.path[len(prefix) : close])
            if new_index[old] == old and t.path[len(prefix) : close] == str(old):
                continue  # the same entry would be rebuilt
            self.result.trace[j] = TraceEntry(
                t.resource,
                f"{prefix}{new_index[old]}{t.path[close:]}",
                t.source,
                t.rule,
                t.position,
            )

    def locate_name(self, selector: str, instance: GroupInstance | None) -> str:
        selector = selector.split(" ?? ")[0]
        if instance is not None and not selector.startswith("/"):
            return next(iter(instance.keys.values()), selector).split("-")[0] + f" {selector}"
        return selector.lstrip("/")

    def put(
        self,
        target: JsonObject,
        to: str,
        value: Any,
        ref: str,
        prefix: str,
        rule_id: str,
        source: str,
        position: str = "",
    ) -> None:
        """Sets `to` in `target` and traces where the value came from."""
        path = set_path(target, to, value)
        self.result.trace.append(TraceEntry(ref, prefix + path, source, rule_id, position))

    def put_read(
        self,
        target: JsonObject,
        to: str,
        value: Any,
        ref: str,
        prefix: str,
        rule_id: str,
        key: str | None,
        selector: str | None,
    ) -> None:
        """`put` of a value read from the record: traced to its key and position."""
        position = self.record.position(key) if key else ""
        self.put(target, to, value, ref, prefix, rule_id, key or str(selector), position)

    def apply_rules(
        self,
        rules: tuple[Rule, ...],
        target: JsonObject,
        base: str,
        instance: GroupInstance | None,
        ref: str,
        rule_base: str,
    ) -> bool:
        """Applies rules into `target`; False when an aggregate could not be computed (skip resource)."""
        rule_prefix = self.rule_prefix
        prefix = f"{base}." if base else ""
        for rule in rules:
            rule_id = f"{rule_prefix}#{rule.locator}"
            if rule.rules and rule.group is None:  # Rule.is_block, without the property call
                if rule.when is not None and not self.condition(rule.when, instance):
                    continue
                self.nested(rule, target, prefix, instance, ref, rule_base)
                continue
            if rule.group is not None:
                for inst in self.record.group(rule.group):
                    if self.matches(rule.where, inst):
                        self.nested(rule, target, prefix, inst, ref, rule_base)
                continue
            if rule.aggregate is not None:
                computed = self.aggregate(rule.aggregate)
                if computed is None:
                    self.issue(
                        "information",
                        "informational",
                        f"{rule.to} not computed: not every item needed was present and in range",
                        None,
                        rule_id,
                    )
                    return False
                self.put(
                    target,
                    rule.to,
                    computed,
                    ref,
                    prefix,
                    rule_id,
                    f"aggregate:{rule.aggregate.function}",
                )
                continue
            if rule.ref is not None:
                targets = self.built.get(rule.ref, [])
                for other in targets if "[+]" in rule.to else targets[:1]:
                    reference = {"reference": other.reference}
                    self.put(target, rule.to, reference, ref, prefix, rule_id, f"ref:{rule.ref}")
                continue
            if rule.due is not None:
                self.deadline(rule, target, prefix, instance, ref, rule_id)
                continue
            if rule.setting is not None:
                setting = self.settings[rule.setting]
                self.put(target, rule.to, setting, ref, prefix, rule_id, f"setting:{rule.setting}")
                continue
            if rule.source is None:
                self.put(target, rule.to, rule.const, ref, prefix, rule_id, "const")
                continue
            raw, key = self.read(rule.source, instance)
            if raw is None:
                if rule.required:
                    self.issue(
                        "error",
                        "required",
                        f"{rule.source} is required for {rule.to}",
                        self.locate_name(rule.source, instance),
                        rule_id,
                    )
                continue
            value: Any = raw
            problem: str | None
            if rule.transform is not None:
                value, problem = TRANSFORMS[rule.transform](raw)
                if problem is not None:
                    self.issue("error", "value", f"{rule.source} {problem}", key, rule_id)
                    continue
            if rule.map is not None:
                translation = self.maps.translate(rule.map, str(value))
                if translation is None and rule.on_unmapped == "keep":
                    self.put_read(target, rule.to, value, ref, prefix, rule_id, key, rule.source)
                    continue
                if translation is None:
                    severity = "error" if rule.on_unmapped == "error" else "warning"
                    self.issue(
                        severity,
                        "code-invalid",
                        f"{rule.source} code '{value}' has no entry in ConceptMap {rule.map}",
                        key,
                        rule_id,
                    )
                    continue
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
                    continue
            if rule.template is not None:
                value = rule.template.replace("{value}", str(value))
            self.put_read(target, rule.to, value, ref, prefix, rule_id, key, rule.source)
        return True

    def deadline(
        self,
        rule: Rule,
        target: JsonObject,
        prefix: str,
        instance: GroupInstance | None,
        ref: str,
        rule_id: str,
    ) -> None:
        """`due`: the anchor's date/time plus the timescale in `setting`, by the policy calendar."""
        from adapter.policy.checks.timescales import due_by

        assert rule.due is not None
        assert rule.setting is not None
        raw, key = self.read(rule.due, instance)
        if raw is None:
            if rule.required:
                self.issue(
                    "error",
                    "required",
                    f"{rule.due} is required for {rule.to}",
                    self.locate_name(rule.due, instance),
                    rule_id,
                )
            return
        anchor_text, problem = TRANSFORMS["datetime"](raw)
        if problem is not None:
            self.issue("error", "value", f"{rule.due} {problem}", key, rule_id)
            return
        anchor = datetime.fromisoformat(str(anchor_text))
        if anchor.tzinfo is None:
            anchor = anchor.replace(tzinfo=LONDON)
        deadline, _ = due_by(anchor, self.settings[rule.setting])
        position = f"{self.record.position(key) if key else ''} + setting:{rule.setting}"
        source = key or str(rule.due)
        self.put(target, rule.to, deadline.isoformat(), ref, prefix, rule_id, source, position)

    def nested(
        self,
        rule: Rule,
        target: JsonObject,
        prefix: str,
        instance: GroupInstance | None,
        ref: str,
        rule_base: str,
    ) -> None:
        element: JsonObject = {}
        trace_start = len(self.result.trace)
        self.apply_rules(rule.rules, element, "", instance, ref, rule_base)
        element = prune_empty(element)
        if not element:
            del self.result.trace[trace_start:]
            return
        concrete = set_path(target, rule.to, element)
        for j in range(trace_start, len(self.result.trace)):
            t = self.result.trace[j]
            self.result.trace[j] = TraceEntry(
                t.resource, f"{prefix}{concrete}.{t.path}", t.source, t.rule, t.position
            )

    def aggregate(self, spec: Aggregate) -> float | int | None:
        built = self.built.get(spec.resource)
        if not built:
            return None
        items = get_path(built[0].resource, spec.items)
        if not isinstance(items, list):
            return None
        found: dict[str, Decimal] = {}
        minimum = None if spec.minimum is None else Decimal(str(spec.minimum))
        maximum = None if spec.maximum is None else Decimal(str(spec.maximum))
        for item in items:
            key = get_path(item, spec.key)
            value = get_path(item, spec.value)
            if key in spec.keys and isinstance(value, int | float) and not isinstance(value, bool):
                number = Decimal(str(value))
                if minimum is not None and number < minimum:
                    continue
                if maximum is not None and number > maximum:
                    continue
                found[str(key)] = number
        if spec.require_all and set(found) != set(spec.keys):
            return None
        if not found:
            return None
        if spec.function == "count":
            return len(found)
        total = sum(found.values(), Decimal(0))
        result = total if spec.function == "sum" else total / Decimal(len(found))
        rounded = result.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        return int(rounded) if rounded == rounded.to_integral_value() else float(rounded)

    def report_unused(self) -> None:
        """One information issue per non-empty source field no rule read: ~100 per v2 message, so
        the rule strings are built once per run and each Issue directly."""
        ignore = _ignore_matcher(self.spec.ignore)
        used = self.result.used
        ignored = self.result.ignored
        unmapped = self.result.unmapped
        issues = self.result.issues
        prefix = self.rule_prefix
        ignore_rule = f"rule {prefix}#ignore"
        unmapped_rule = f"rule {prefix}#unmapped"
        for key in self.record.non_empty_keys():
            if key in used:
                continue
            reason = ignore(key)
            if reason is not None:
                ignored.append(key)
                issues.append(
                    Issue(
                        "information",
                        "informational",
                        f"Source field {key} deliberately not mapped: {reason}",
                        expression=key,
                        diagnostics=ignore_rule,
                    )
                )
            else:
                unmapped.append(key)
                issues.append(
                    Issue(
                        "information",
                        "informational",
                        f"Source field {key} is not mapped",
                        expression=key,
                        diagnostics=unmapped_rule,
                    )
                )


@lru_cache(maxsize=256)
def _ignore_matcher(ignore: tuple[tuple[str, str], ...]) -> Callable[[str], str | None]:
    """The reason of the first `ignore` pattern (fnmatch, case-sensitive) a key matches, or None:
    one regex with a group per pattern, compiled once per mapping."""
    if not ignore:
        return lambda _key: None
    combined = re.compile(
        "|".join(f"(?P<p{i}>{translate(pattern)})" for i, (pattern, _) in enumerate(ignore))
    )

    @lru_cache(maxsize=4096)  # source keys recur from record to record (`OBX[3]-1`)
    def reason(key: str) -> str | None:
        m = combined.match(key)
        if m is None:
            return None
        return ignore[int(str(m.lastgroup)[1:])][1]

    return reason


def apply_mapping(
    spec: MappingSpec,
    record: SourceRecord,
    concept_maps: ConceptMaps,
    settings: Mapping[str, Any] | None = None,
) -> MappingResult:
    """Runs one mapping over one record. Collects every issue; never raises for bad content."""
    return _Run(spec, record, concept_maps, settings or {}).run()
