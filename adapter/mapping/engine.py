"""The generic mapping engine: a MappingSpec applied to a SourceRecord gives FHIR resources,
issues that point at source fields, a trace, and the list of source fields nobody used.

It knows no message type, column or code: those live in the mapping file. It does not store or
validate (the pipeline does), and it never drops a field silently: every non-empty source value
is either read by a rule, listed under `ignore` with a reason, or reported as unmapped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

from adapter.fhir.types import JsonObject
from adapter.issue import Issue, IssueCode, Severity
from adapter.mapping.ids import deterministic_id
from adapter.mapping.loader import ConceptMaps
from adapter.mapping.paths import get_path, getter, prune_empty, set_path
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
    _ignore_matcher,
    _is_clean,
    _is_leaf,
    _plan,
    _rank,
    _selector,
    _Step,
    _unused_field_issue,
    _Where,
    _where,
)
from adapter.mapping.spec import Aggregate, MappingSpec, ResourceSpec
from adapter.mapping.trace import TraceEntry
from adapter.mapping.transforms import LONDON, TRANSFORMS
from adapter.sources.record import GroupInstance, SourceRecord

#: get_path, set_path and prune_empty live in adapter.mapping.paths, _ignore_matcher in
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


@dataclass(slots=True)
class MappedResource:
    name: str
    resource: JsonObject
    #: (identifier system, value) when the resource is found-or-created by identifier
    match: tuple[str, str] | None = None

    @property
    def reference(self) -> str:
        return f"{self.resource['resourceType']}/{self.resource['id']}"


@dataclass(slots=True, init=False)
class MappingResult:
    """What one record mapped to. The trace is kept as plain rows while the engine runs and becomes
    TraceEntry objects only when someone reads `trace` (`--trace`, `source_of`): most records are
    never asked, and building ~100 frozen entries per record was a fifth of the engine's cost."""

    mapping_id: str
    record: SourceRecord
    resources: list[MappedResource]
    issues: list[Issue]
    used: set[str]
    unmapped: list[str]
    ignored: list[str]
    #: [resource, path, source, rule, position] per entry, in order, until `trace` is first read
    trace_rows: list[list[str]] | None
    _trace: list[TraceEntry]

    def __init__(
        self,
        mapping_id: str,
        record: SourceRecord,
        resources: list[MappedResource] | None = None,
        issues: list[Issue] | None = None,
        trace: list[TraceEntry] | None = None,
        used: set[str] | None = None,
        unmapped: list[str] | None = None,
        ignored: list[str] | None = None,
    ) -> None:
        self.mapping_id = mapping_id
        self.record = record
        self.resources = [] if resources is None else resources
        self.issues = [] if issues is None else issues
        self._trace = [] if trace is None else trace
        self.trace_rows = None
        self.used = set() if used is None else used
        self.unmapped = [] if unmapped is None else unmapped
        self.ignored = [] if ignored is None else ignored

    @property
    def trace(self) -> list[TraceEntry]:
        """For each output element, the source field and rule behind it (built on first read)."""
        if self.trace_rows is not None:
            self._trace.extend([TraceEntry(*row) for row in self.trace_rows])
            self.trace_rows = None
        return self._trace

    @trace.setter
    def trace(self, entries: list[TraceEntry]) -> None:
        self._trace = entries
        self.trace_rows = None

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
    """One record through one mapping. Output containers are pruned only when a rule may have left
    an empty or shared value in them (`dirty`): a rule writing a non-empty scalar, a reference or a
    mapped coding leaves nothing to prune, and that is nearly every rule."""

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

    # resources
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

    def locate_name(self, selector: str, instance: GroupInstance | None) -> str:
        selector = selector.split(" ?? ")[0]
        if instance is not None and not selector.startswith("/"):
            return next(iter(instance.keys.values()), selector).split("-")[0] + f" {selector}"
        return selector.lstrip("/")

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
                        self.issue(
                            "error",
                            "required",
                            f"{rule.source} is required for {rule.to}",
                            self.locate_name(str(rule.source), instance),
                            step.rule_id,
                        )
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
                self.issue(
                    "error",
                    "required",
                    f"{rule.due} is required for {rule.to}",
                    self.locate_name(rule.due, instance),
                    step.rule_id,
                )
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
