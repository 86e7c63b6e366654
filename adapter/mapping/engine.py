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
from typing import Any, Final, cast

from adapter.fhir.types import JsonObject
from adapter.issue import Issue, IssueCode, Severity
from adapter.mapping.ids import deterministic_id
from adapter.mapping.loader import ConceptMaps
from adapter.mapping.spec import Aggregate, MappingSpec, ResourceSpec, Rule
from adapter.mapping.trace import TraceEntry
from adapter.mapping.transforms import LONDON, TRANSFORMS
from adapter.sources.record import GroupInstance, SourceRecord

_SEGMENT: Final = re.compile(r"^(?P<name>[^\[\]]+)(?:\[(?P<index>\d+|\+)\])?$")
_SELECT: Final = re.compile(
    r"^(?P<group>[^()]+)\((?P<key>[^=()]+)=(?P<value>[^()]*)\)(?:\.(?P<local>.+))?$"
)


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


# -- paths --------------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _segments(path: str) -> tuple[tuple[str, str | None], ...]:
    """`a.b[0].c` -> ((a, None), (b, "0"), (c, None)), parsed once per distinct path."""
    out: list[tuple[str, str | None]] = []
    for part in path.split("."):
        m = _SEGMENT.match(part)
        if m is None:
            raise ValueError(f"bad path segment {part!r} in {path!r}")
        out.append((m["name"], m["index"]))
    return tuple(out)


def set_path(target: JsonObject, path: str, value: Any) -> str:
    """Sets `a.b[0].c` (or appends with `[+]`), creating containers; returns the concrete path."""
    segments = _segments(path)
    node: Any = target
    concrete: list[str] = []
    last_i = len(segments) - 1
    for i, (name, index) in enumerate(segments):
        last = i == last_i
        if index is None:
            concrete.append(name)
            if last:
                node[name] = value
            else:
                node = node.setdefault(name, {})
            continue
        items = node.setdefault(name, [])
        if index == "+":
            items.append(value if last else {})
            pos = len(items) - 1
        else:
            pos = int(index)
            while len(items) <= pos:
                items.append({})
            if last:
                items[pos] = value
        concrete.append(f"{name}[{pos}]")
        if not last:
            node = items[pos]
    return ".".join(concrete)


def get_path(node: Any, path: str) -> Any:
    try:
        segments = _segments(path)
    except ValueError:
        return None
    for name, index in segments:
        if not isinstance(node, dict):
            return None
        node = node.get(name)
        if index is not None:
            if not isinstance(node, list) or index == "+" or int(index) >= len(node):
                return None
            node = node[int(index)]
        if node is None:
            return None
    return node


def prune_empty(node: Any) -> Any:
    """Removes empty dicts/lists/strings left by rules whose source was absent (no empty elements)."""
    if isinstance(node, dict):
        cleaned = {k: prune_empty(v) for k, v in node.items()}
        return {k: v for k, v in cleaned.items() if v not in ({}, [], "", None)}
    if isinstance(node, list):
        cleaned_list = [prune_empty(v) for v in node]
        return [v for v in cleaned_list if v not in ({}, [], "", None)]
    return node


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
        self.built: dict[str, list[MappedResource]] = {}

    # selectors
    def locate(self, selector: str, instance: GroupInstance | None) -> str | None:
        """The global key a selector points at (None when absent or empty)."""
        if selector.startswith("/"):
            return self.record.resolve(selector[1:])
        m = _SELECT.match(selector)
        if m is not None:
            for inst in self.record.group(m["group"]):
                key_global = inst.keys.get(m["key"])
                if key_global is not None and self.record.values.get(key_global) == m["value"]:
                    self.result.used.add(key_global)
                    local = m["local"] or "."
                    real = inst.keys.get(local)
                    return self.record.resolve(real) if real else None
            return None
        if instance is not None:
            real = instance.keys.get(selector)
            return self.record.resolve(real) if real else None
        return self.record.resolve(selector)

    def read(self, selector: str, instance: GroupInstance | None) -> tuple[str | None, str | None]:
        """(value, global key). A quoted selector (`'crisis'`) is a literal; `a ?? b` the first present."""
        if " ?? " in selector:
            for alternative in selector.split(" ?? "):
                found = self.read(alternative, instance)
                if found[0] is not None:
                    return found
            return None, None
        if selector.startswith("'") and selector.endswith("'"):
            return selector[1:-1], None
        key = self.locate(selector, instance)
        if key is None:
            return None, None
        self.result.used.add(key)
        return self.record.values[key], key

    def matches(self, where: tuple[tuple[str, str], ...], instance: GroupInstance | None) -> bool:
        """Every `selector: value` holds; a value written `!X` holds when the field is anything but X."""
        for selector, expected in where:
            value, _ = self.read(selector, instance)
            if expected.startswith("!") and value == expected[1:]:
                return False
            if not expected.startswith("!") and value != expected:
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
        rule_base = f"{self.spec.rule_prefix}#{res.name}"
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
        for rule in rules:
            rule_id = f"{self.spec.rule_prefix}#{rule.locator}"
            prefix = f"{base}." if base else ""
            if rule.is_block:
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
                path = set_path(target, rule.to, computed)
                self.result.trace.append(
                    TraceEntry(ref, prefix + path, f"aggregate:{rule.aggregate.function}", rule_id)
                )
                continue
            if rule.ref is not None:
                targets = self.built.get(rule.ref, [])
                for other in targets if "[+]" in rule.to else targets[:1]:
                    path = set_path(target, rule.to, {"reference": other.reference})
                    self.result.trace.append(
                        TraceEntry(ref, prefix + path, f"ref:{rule.ref}", rule_id)
                    )
                continue
            if rule.due is not None:
                self.deadline(rule, target, prefix, instance, ref, rule_id)
                continue
            if rule.setting is not None:
                path = set_path(target, rule.to, self.settings[rule.setting])
                self.result.trace.append(
                    TraceEntry(ref, prefix + path, f"setting:{rule.setting}", rule_id)
                )
                continue
            if rule.source is None:
                path = set_path(target, rule.to, rule.const)
                self.result.trace.append(TraceEntry(ref, prefix + path, "const", rule_id))
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
                    path = set_path(target, rule.to, value)
                    self.result.trace.append(
                        TraceEntry(
                            ref,
                            prefix + path,
                            key or rule.source,
                            rule_id,
                            self.record.position(key) if key else "",
                        )
                    )
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
            path = set_path(target, rule.to, value)
            self.result.trace.append(
                TraceEntry(
                    ref,
                    prefix + path,
                    key or rule.source,
                    rule_id,
                    self.record.position(key) if key else "",
                )
            )
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
        path = set_path(target, rule.to, deadline.isoformat())
        self.result.trace.append(
            TraceEntry(
                ref,
                prefix + path,
                key or rule.due,
                rule_id,
                f"{self.record.position(key) if key else ''} + setting:{rule.setting}",
            )
        )

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
        for item in items:
            key = get_path(item, spec.key)
            value = get_path(item, spec.value)
            if key in spec.keys and isinstance(value, int | float) and not isinstance(value, bool):
                number = Decimal(str(value))
                if spec.minimum is not None and number < Decimal(str(spec.minimum)):
                    continue
                if spec.maximum is not None and number > Decimal(str(spec.maximum)):
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
        ignore = _ignore_matcher(self.spec.ignore)
        for key in self.record.non_empty_keys():
            if key in self.result.used:
                continue
            reason = ignore(key)
            if reason is not None:
                self.result.ignored.append(key)
                self.issue(
                    "information",
                    "informational",
                    f"Source field {key} deliberately not mapped: {reason}",
                    key,
                    f"{self.spec.rule_prefix}#ignore",
                )
            else:
                self.result.unmapped.append(key)
                self.issue(
                    "information",
                    "informational",
                    f"Source field {key} is not mapped",
                    key,
                    f"{self.spec.rule_prefix}#unmapped",
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
