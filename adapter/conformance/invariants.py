"""FHIRPath invariants: compiled once with fhirpathpy, evaluated only where they can fail.

Each constraint is compiled on first use and cached for the process. Before evaluating at a node we
ask whether the node has any property the expression names; if it has none (and the expression does
not look at the node as a whole, its descendants or `%resource`), the result equals the result on an
empty node of that definition path, which is computed once and cached. Most invariants guard
optional elements, so most are never evaluated on a typical resource.

fhirpathpy 2.2 lacks `hasValue()`; we register it. Invariants that fhirpathpy cannot evaluate
(an exception at run time) count as passed: we never report an error we cannot justify.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Final

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from adapter.conformance.definitions import core_definitions
from adapter.conformance.natives import NATIVES, Native
from adapter.fhir.types import JsonObject, JsonValue

_MODEL: Final = models["r4"]
_IDENT: Final = re.compile(r"(?<![%$\w'])([A-Za-z_][A-Za-z0-9_]*)(?!\s*\()")
_WHOLE_NODE: Final = re.compile(
    r"children\(\)|descendants\(\)|%resource|%rootResource|\$this|repeat\(|hasValue\(\)|"
    r"(?:^|[^.\w])(?:exists|empty|count|not|all|allTrue|anyTrue|trace|iif|select|where|ofType|as|is)\("
)
#: Invariants whose R4 expression fhirpathpy evaluates wrongly or that need a terminology server,
#: XHTML parsing or profile resolution. Each is listed with the reason; none is on a type we profile.
SKIPPED: Final[dict[str, str]] = {
    "txt-1": "htmlChecks() is not a FHIRPath function fhirpathpy knows (XHTML is checked natively)",
    "txt-2": "htmlChecks()",
}


def _has_value(inputs: list[Any]) -> list[bool]:
    return [len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], (dict, list))]


def _no_trace(*_args: Any) -> None:
    """`trace()` in R4 invariants (dom-3, ref-1) would print to stdout."""


_OPTIONS: Final = {
    "userInvocationTable": {"hasValue": {"fn": _has_value, "arity": {0: []}}},
    "traceFn": _no_trace,
}
#: Invariants that can only fail when the node has this property (they look at %resource, which
#: defeats the generic shortcut, but are guarded by a leading navigation).
GUARDED_BY: Final[dict[str, str]] = {
    "dom-2": "contained",
    "dom-3": "contained",
    "dom-4": "contained",
    "dom-5": "contained",
    "obs-7": "component",  # its native reads node.get("component") only
}


@dataclass(frozen=True, slots=True)
class Invariant:
    key: str
    expression: str
    human: str
    names: frozenset[str]
    looks_at_whole_node: bool
    fn: Callable[..., Any]
    #: A Python equivalent (natives.py), for core invariants only.
    native: Native | None = None


@cache
def compiled(key: str) -> Invariant | None:
    """The compiled core invariant `key`, or None if it is skipped or does not compile."""
    if key.split("@", 1)[0] in SKIPPED:
        return None
    raw = core_definitions().constraints.get(key)
    if raw is None:
        return None
    base_key = key.split("@", 1)[0]
    inv = compile_invariant(base_key, str(raw["expression"]), str(raw["human"]))
    native = NATIVES.get(key)  # keyed by the exact core key: a "@Type" variant has its own meaning
    if inv is not None and native is not None:
        inv = replace(inv, native=native)
    return inv


#: Spellings fhirpathpy reads differently from the reference implementation (same meaning in R4).
REWRITES: Final[dict[str, tuple[str, str]]] = {
    "que-7": (
        " is Boolean",
        " is boolean",
    ),  # fhirpathpy: System.Boolean does not match FHIR boolean
    # R4 publishes "count() > 2" for the text "more than one" (fixed in R4B/R5 as "> 1"); the
    # reference validator applies the corrected expression.
    "que-12": ("enableWhen.count() > 2", "enableWhen.count() > 1"),
}


def compile_invariant(key: str, expression: str, human: str) -> Invariant | None:
    rewrite = REWRITES.get(key)
    if rewrite is not None:
        expression = expression.replace(*rewrite)
    try:
        fn = fhirpathpy.compile(expression, _MODEL, _OPTIONS)
    except Exception:  # the ANTLR parser raises plain Exceptions on syntax it does not support
        return None
    names = frozenset(m.group(1) for m in _IDENT.finditer(_strip_strings(expression)))
    return Invariant(key, expression, human, names, bool(_WHOLE_NODE.search(expression)), fn)


def _strip_strings(expression: str) -> str:
    return re.sub(r"'(?:[^'\\]|\\.)*'", "''", expression)


_CHOICE_STEM: Final = re.compile(r"[a-z][a-z0-9]*(?=[A-Z])")


def _names_any(names: frozenset[str], node: JsonObject) -> bool:
    """Whether the node has a property (or the stem of a choice property) in `names`."""
    for key in node:
        name = key.lstrip("_")
        if name in names:
            return True
        m = _CHOICE_STEM.match(name)
        if m is not None and m.group() in names:
            return True
    return False


class InvariantRunner:
    """Evaluates invariants at nodes, with the empty-node shortcut. One per process is enough."""

    def __init__(self) -> None:
        self._empty_results: dict[tuple[str, str, str], bool] = {}

    def passes(
        self,
        inv: Invariant,
        node: JsonValue,
        def_path: str,
        resource: JsonObject,
        root: JsonObject,
    ) -> bool:
        if inv.native is not None and isinstance(node, dict):
            return inv.native(node, resource, root)
        guard = GUARDED_BY.get(inv.key)
        if guard is not None and isinstance(node, dict) and guard not in node:
            return True
        if (
            isinstance(node, dict)
            and not inv.looks_at_whole_node
            and not _names_any(inv.names, node)
        ):
            cache_key = (inv.key, inv.expression, def_path)
            hit = self._empty_results.get(cache_key)
            if hit is None:
                empty: JsonObject = (
                    {"resourceType": def_path}
                    if "." not in def_path and (core_definitions().is_resource(def_path))
                    else {}
                )
                hit = self._evaluate(inv, empty, def_path, empty, empty)
                self._empty_results[cache_key] = hit
            return hit
        return self._evaluate(inv, node, def_path, resource, root)

    @staticmethod
    def _evaluate(
        inv: Invariant, node: JsonValue, def_path: str, resource: JsonObject, root: JsonObject
    ) -> bool:
        try:
            result = inv.fn(
                ResourceNode.create_node(node, def_path),  # type: ignore[no-untyped-call]  # fhirpathpy is untyped here
                {"resource": resource, "rootResource": root},
            )
        except Exception:  # fhirpathpy raises bare Exceptions for unsupported constructs
            return True
        return bool(result == [True] or result == [])  # empty: cannot decide; never a false error
