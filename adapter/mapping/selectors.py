"""A mapping's text compiled once, so the engine does per record only what depends on the record.

Source selectors: the ` ?? ` alternatives of a rule's `from` (a 'literal', a /record key, a group
instance picked by `GROUP(key=value).local`, a local key) and `where` conditions (`!X` for anything
but X). Each rule becomes a `_Step` (its kind, rule id, parsed selectors, transform and a compiled
setter for `to`); `ignore` patterns become one regex, and the issue for each unused key is built once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fnmatch import translate
from functools import lru_cache
from typing import Any, Final

from adapter.issue import Issue
from adapter.mapping.paths import Setter, setter
from adapter.mapping.spec import Aggregate, MappingSpec, Rule
from adapter.mapping.transforms import TRANSFORMS, Transform

_SELECT: Final = re.compile(
    r"^(?P<group>[^()]+)\((?P<key>[^=()]+)=(?P<value>[^()]*)\)(?:\.(?P<local>.+))?$"
)

_LITERAL: Final = 0  # 'crisis': the text itself
_ABSOLUTE: Final = 1  # /PID-3: a record key, even inside a group instance
_SELECTED: Final = 2  # PID-3(5=NH).1: the group instance whose key holds the value, then its local
_LOCAL: Final = 3  # OBX-5: the instance's local key, or a record key outside a group
#: (kind, text or key or group, match key, match value, local key)
_Alternative = tuple[int, str, str, str, str]


@lru_cache(maxsize=4096)
def _selector(selector: str) -> tuple[_Alternative, ...]:
    """A selector parsed once: its ` ?? ` alternatives, each classified as `_Run.read` reads it."""
    out: list[_Alternative] = []
    for alternative in selector.split(" ?? ") if " ?? " in selector else (selector,):
        if alternative.startswith("'") and alternative.endswith("'"):
            out.append((_LITERAL, alternative[1:-1], "", "", ""))
        elif alternative.startswith("/"):
            out.append((_ABSOLUTE, alternative[1:], "", "", ""))
        elif (m := _SELECT.match(alternative)) is not None:
            out.append((_SELECTED, m["group"], m["key"], m["value"], m["local"] or "."))
        else:
            out.append((_LOCAL, alternative, "", "", ""))
    return tuple(out)


@lru_cache(maxsize=1024)
def _conditions(where: tuple[tuple[str, str], ...]) -> tuple[tuple[str, bool, str], ...]:
    """`selector: value` pairs as (selector, negated, value): `!X` means anything but X."""
    return tuple(
        (selector, expected.startswith("!"), expected[1:] if expected.startswith("!") else expected)
        for selector, expected in where
    )


@lru_cache(maxsize=256)
def _rank(values: tuple[str, ...]) -> dict[str, int]:
    """A resource's `order` values -> their position; do not mutate the shared dict."""
    return {v: i for i, v in enumerate(values)}


# -- rules compiled once per mapping ---------------------------------------------------------------
#: what a compiled rule does, in the order `_Run.apply_rules` used to test the Rule's fields
_BLOCK, _GROUP, _AGGREGATE, _REF, _DUE, _SETTING, _CONST, _READ = range(8)
_Where = tuple[tuple[tuple[_Alternative, ...], bool, str], ...]


@dataclass(frozen=True, slots=True)
class _Step:
    """A Rule with everything that does not depend on the record worked out once: its kind, its
    rule id, its selectors parsed, its transform looked up, and a setter compiled for `to`."""

    rule: Rule
    kind: int
    rule_id: str
    setter: Setter
    steps: tuple[_Step, ...] = ()
    #: the parsed `from` (or `due`, or the block's `when` without its `!`)
    source: tuple[_Alternative, ...] = ()
    negate_when: bool = False
    where: _Where = ()
    transform: Transform | None = None
    #: a const that is a non-empty scalar: nothing to prune, nothing shared with the mapping file
    const_is_leaf: bool = False


def _kind(rule: Rule) -> int:
    if rule.rules and rule.group is None:
        return _BLOCK
    if rule.group is not None:
        return _GROUP
    if rule.aggregate is not None:
        return _AGGREGATE
    if rule.ref is not None:
        return _REF
    if rule.due is not None:
        return _DUE
    if rule.setting is not None:
        return _SETTING
    return _CONST if rule.source is None else _READ


@lru_cache(maxsize=1024)
def _where(where: tuple[tuple[str, str], ...]) -> _Where:
    return tuple((_selector(sel), negated, value) for sel, negated, value in _conditions(where))


def _steps(rules: tuple[Rule, ...], rule_prefix: str) -> tuple[_Step, ...]:
    out: list[_Step] = []
    for rule in rules:
        kind = _kind(rule)
        when = rule.when.lstrip("!") if rule.when is not None else None
        text = {_BLOCK: when, _DUE: rule.due, _READ: rule.source}.get(kind)
        out.append(
            _Step(
                rule,
                kind,
                f"{rule_prefix}#{rule.locator}",
                setter(rule.to),
                _steps(rule.rules, rule_prefix),
                _selector(text) if text is not None else (),
                (rule.when or "").startswith("!"),
                _where(rule.where),
                TRANSFORMS.get(rule.transform) if rule.transform is not None else None,
                _is_leaf(rule.const),
            )
        )
    return tuple(out)


def _is_leaf(value: Any) -> bool:
    """A value prune_empty would keep as it is: a non-empty str, an int, a float or a bool."""
    kind = type(value)
    return (kind is str and value != "") or kind is int or kind is float or kind is bool


def _is_clean(value: Any) -> bool:
    """A leaf, or a container built for this record holding only clean values (a mapped coding)."""
    if type(value) is dict:
        return bool(value) and all(_is_clean(v) for v in value.values())
    if type(value) is list:
        return bool(value) and all(_is_clean(v) for v in value)
    return _is_leaf(value)


#: id(spec) -> (spec, steps per resource); holding the spec keeps its id from being reused
_PLANS: dict[int, tuple[MappingSpec, tuple[tuple[_Step, ...], ...]]] = {}


def _plan(spec: MappingSpec) -> tuple[tuple[_Step, ...], ...]:
    """Each resource's rules compiled, once per MappingSpec (a spec is immutable once loaded)."""
    entry = _PLANS.get(id(spec))
    if entry is not None and entry[0] is spec:
        return entry[1]
    if len(_PLANS) >= 256:  # tests build many small specs
        _PLANS.clear()
    prefix = spec.rule_prefix
    plan = tuple(_steps(res.rules, prefix) for res in spec.resources)
    _PLANS[id(spec)] = (spec, plan)
    return plan


@lru_cache(maxsize=256)
def _aggregate_plan(spec: Aggregate) -> tuple[Decimal | None, Decimal | None, frozenset[str]]:
    minimum = None if spec.minimum is None else Decimal(str(spec.minimum))
    maximum = None if spec.maximum is None else Decimal(str(spec.maximum))
    return minimum, maximum, frozenset(spec.keys)


@lru_cache(maxsize=256)
def _unused_field_issue(
    rule_prefix: str, ignore: tuple[tuple[str, str], ...]
) -> Callable[[str], tuple[bool, Issue]]:
    """Whether a source key nobody read is ignored, and the issue saying so, per mapping."""
    reason_for = _ignore_matcher(ignore)
    ignore_rule = f"rule {rule_prefix}#ignore"
    unmapped_rule = f"rule {rule_prefix}#unmapped"

    @lru_cache(maxsize=8192)
    def classify(key: str) -> tuple[bool, Issue]:
        reason = reason_for(key)
        if reason is not None:
            text = f"Source field {key} deliberately not mapped: {reason}"
            return True, Issue("information", "informational", text, key, diagnostics=ignore_rule)
        text = f"Source field {key} is not mapped"
        return False, Issue("information", "informational", text, key, diagnostics=unmapped_rule)

    return classify


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
