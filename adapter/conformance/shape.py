"""The structural check: is this JSON shaped as the core R4 definitions say a resource is?

One pass over the instance, driven by the same tables as the instance walk (`definitions.py`), and
no model objects. It answers what a FHIR JSON parser must refuse (HTTP 400): unknown properties,
arrays where the element does not repeat and single values where it does, JSON kinds of primitives
(boolean, integer, decimal, string), the formats the R4B models checked (code, id, date, dateTime,
instant, time, oid, uuid, base64Binary, non-empty string), `_name` siblings, values that must be
objects, two types of one choice element, required elements, and `resourceType` on every resource
(root, contained, Bundle entries, Parameters and any other element of type Resource).

What the instance walk judges (ele-1 on empty elements, nulls, the remaining primitive formats,
bindings, invariants) stays there and answers 422; this check does not report it again.
`adapter.fhir.parse.r4b_structural_issues` is the reference the differential corpus test compares
this with.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Final

from adapter.conformance.definitions import CoreDefinitions, core_definitions
from adapter.conformance.primitives import calendar_day_problem
from adapter.fhir.types import JsonObject, JsonValue
from adapter.issue import Issue

#: R4 resource types refused although R4 defines them: the R4B models (our former structural
#: check) lack them, so the adapter has never accepted them. Kept equal to that set by a unit test.
REFUSED_R4_TYPES: Final = frozenset(
    {
        "EffectEvidenceSynthesis",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "RiskEvidenceSynthesis",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
    }
)

_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
_INTEGER_TYPES: Final = frozenset({"integer", "positiveInt", "unsignedInt"})
#: String primitives whose format the structural check owns (the rest are the walk's, as 422).
_FORMAT_TYPES: Final = frozenset(
    {"code", "id", "date", "dateTime", "instant", "time", "oid", "uuid"}
)
#: base64 as R4B decoded it: whitespace anywhere, whole 4-character groups, padding at the end.
#: (The R4 regex, stricter about whitespace inside a group, is applied by the walk.)
_BASE64: Final = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_WHITESPACE: Final = re.compile(r"\s+")
_DATED: Final = frozenset({"date", "dateTime", "instant"})
#: A primitive's `_name` sibling holds the Element part only.
_ELEMENT_KEYS: Final = frozenset({"id", "extension"})


@cache
def _format(type_code: str) -> re.Pattern[str]:
    return re.compile(core_definitions().primitive_regex[type_code])


def primitive_shape_problem(type_code: str, value: JsonValue) -> str | None:
    """Why `value` cannot be a `type_code` in FHIR JSON, or None. The text never echoes the value."""
    if type_code == "boolean":
        return None if value is True or value is False else "must be a JSON boolean"
    if type_code in _INTEGER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be a JSON integer"
        if not _INT32_MIN <= value <= _INT32_MAX:
            return "is outside the 32-bit integer range"
        if type_code == "positiveInt" and value < 1:
            return "must be 1 or more"
        if type_code == "unsignedInt" and value < 0:
            return "must be 0 or more"
        return None
    if type_code == "decimal":
        if isinstance(value, bool) or not isinstance(value, (int, Decimal, float)):
            return "must be a JSON number"
        return None
    if not isinstance(value, str):
        return "must be a JSON string"
    if type_code == "string":
        return None if value else "must not be empty"
    if type_code == "base64Binary":
        return None if _BASE64.fullmatch(_WHITESPACE.sub("", value)) else "is not valid base64"
    if type_code not in _FORMAT_TYPES:
        return None  # uri, url, canonical, markdown, xhtml: formats judged by the walk (422)
    if not _format(type_code).fullmatch(value):
        return f"is not a valid {type_code}"
    if type_code in _DATED:
        return calendar_day_problem(value, type_code)
    return None


ShapeCheck = Callable[[JsonValue], str | None]


def _fast_check(type_code: str) -> ShapeCheck:
    """`primitive_shape_problem` for one type, answering the common valid values without the
    chain of type tests (anything else goes to it, so the answers are the same)."""

    def full(value: JsonValue) -> str | None:
        return primitive_shape_problem(type_code, value)

    if type_code == "boolean":
        return lambda v: None if v is True or v is False else full(v)
    if type_code in _INTEGER_TYPES:
        low = {"positiveInt": 1, "unsignedInt": 0}.get(type_code, _INT32_MIN)
        return lambda v: None if type(v) is int and low <= v <= _INT32_MAX else full(v)
    if type_code == "decimal":
        return lambda v: None if type(v) is Decimal or type(v) is int else full(v)
    if type_code == "string":
        return lambda v: None if type(v) is str and v else full(v)
    if type_code == "base64Binary" or type_code in _FORMAT_TYPES:
        return full
    return lambda v: None if type(v) is str else full(v)  # uri, markdown, …: any string


@dataclass(frozen=True, slots=True)
class _Slot:
    """One allowed JSON property at a definition path, with what the check needs of it."""

    repeats: bool
    primitive: bool
    type_code: str  # for a resource's own `id`: "id"
    def_path: str
    resource: bool  # of type Resource: checked as a resource of its own `resourceType`
    choice: str | None  # the choice element (`value` for `valueString`), or None
    #: `primitive_shape_problem` for `type_code` (primitives only)
    check: ShapeCheck | None


@dataclass(frozen=True, slots=True)
class _Plan:
    """The allowed properties at a definition path (resource root or not) and its minimums."""

    slots: dict[str, _Slot]
    #: (element name, the properties any one of which makes it present)
    required: tuple[tuple[str, frozenset[str]], ...]
    resource_root: bool  # `resourceType` is allowed


class ShapeChecker:
    """Structural issues of one resource (and every resource inside it)."""

    def __init__(self, defs: CoreDefinitions) -> None:
        self._defs = defs
        self._plans: dict[tuple[str, bool], _Plan] = {}
        #: The same plans for resource_root False, by definition path alone (the hot lookup).
        self._element_plans: dict[str, _Plan] = {}

    def is_accepted_type(self, resource_type: str) -> bool:
        return self._defs.is_resource(resource_type) and resource_type not in REFUSED_R4_TYPES

    def check(self, resource: JsonObject) -> list[Issue]:
        rt = resource.get("resourceType")
        if not isinstance(rt, str):
            return [
                Issue("fatal", "structure", "resourceType is missing", expression="resourceType")
            ]
        if not self.is_accepted_type(rt):
            return [
                Issue(
                    "fatal",
                    "not-supported",
                    f"Unknown or unsupported resource type '{rt}'",
                    expression="resourceType",
                )
            ]
        out: list[Issue] = []
        try:
            self._node(resource, self._plan(rt, True), rt, out)
        except RecursionError:
            return [Issue("error", "structure", "The resource is nested too deeply", rt)]
        return out

    def _plan(self, def_path: str, resource_root: bool) -> _Plan:
        hit = self._plans.get((def_path, resource_root))
        if hit is not None:
            return hit
        defs = self._defs
        if def_path == "Element":  # not in the tables: the two children every type declares
            ext = defs.children("Extension")
            children = {"id": ext["id"], "extension": ext["extension"]}
        else:
            children = defs.children(def_path)
        slots: dict[str, _Slot] = {}
        for key, child in children.items():
            choice = child.name if child.element.path.endswith("[x]") else None
            type_code = "id" if resource_root and key == "id" else child.type_code
            slot = _Slot(
                child.element.is_array,
                child.is_primitive,
                type_code,
                child.def_path,
                child.type_code == "Resource",
                choice,
                _fast_check(type_code) if child.is_primitive else None,
            )
            slots[key] = slot
            # a resource's own id is a plain string: no `_id` with an id or extensions
            if child.is_primitive and not (resource_root and key == "id"):
                slots["_" + key] = slot
        required: list[tuple[str, frozenset[str]]] = []
        for el in defs.required_children(def_path) if def_path != "Element" else ():
            name = el.path.rsplit(".", 1)[-1].removesuffix("[x]")
            keys = [k for k, c in children.items() if c.element is el]
            keys += ["_" + k for k in keys if children[k].is_primitive]
            required.append((name, frozenset(keys)))
        plan = _Plan(slots, tuple(required), resource_root)
        self._plans[(def_path, resource_root)] = plan
        if not resource_root:
            self._element_plans[def_path] = plan
        return plan

    def _resource(self, node: JsonObject, path: str, out: list[Issue]) -> None:
        rt = node.get("resourceType")
        if not isinstance(rt, str):
            out.append(
                Issue("error", "structure", "resourceType is missing", f"{path}.resourceType")
            )
        elif not self.is_accepted_type(rt):
            out.append(
                Issue(
                    "error",
                    "not-supported",
                    f"Unknown or unsupported resource type '{rt}'",
                    f"{path}.resourceType",
                )
            )
        else:
            self._node(node, self._plan(rt, True), path, out)

    def _node(self, node: JsonObject, plan: _Plan, path: str, out: list[Issue]) -> None:
        slots = plan.slots
        #: (choice, property) of each choice property, in order: two or more are then compared
        chosen: list[tuple[str, str]] | None = None
        for key, value in node.items():
            slot = slots.get(key)
            if slot is None:
                if not (plan.resource_root and key == "resourceType"):
                    out.append(Issue("error", "structure", "Unknown element", f"{path}.{key}"))
                continue
            if slot.choice is not None:
                if chosen is None:
                    chosen = [(slot.choice, key)]
                else:
                    chosen.append((slot.choice, key))
            if value is None:
                continue  # a null property is the walk's (422)
            if key[0] == "_":
                self._primitive_element(value, node.get(key[1:]), slot, f"{path}.{key}", out)
            elif isinstance(value, list):
                if not slot.repeats:
                    out.append(
                        Issue(
                            "error",
                            "structure",
                            "Expected a single value, not an array",
                            f"{path}.{key}",
                        )
                    )
                elif slot.check is not None:
                    check = slot.check
                    for i, item in enumerate(value):
                        if item is not None:  # a null pairs with an item of `_name`
                            problem = check(item)
                            if problem is not None:
                                out.append(
                                    Issue(
                                        "error",
                                        "structure",
                                        f"The value {problem}",
                                        f"{path}.{key}[{i}]",
                                    )
                                )
                elif slot.resource:
                    for i, item in enumerate(value):
                        self._complex(slot, item, f"{path}.{key}[{i}]", out)
                else:
                    child = self._element_plans.get(slot.def_path) or self._plan(
                        slot.def_path, False
                    )
                    plans = self._element_plans
                    for i, item in enumerate(value):
                        if isinstance(item, dict):
                            if _clean_node(item, child, plans):
                                continue
                            self._node(item, child, f"{path}.{key}[{i}]", out)
                        else:
                            self._complex(slot, item, f"{path}.{key}[{i}]", out)
            elif slot.repeats:
                out.append(
                    Issue(
                        "error",
                        "structure",
                        "Expected an array (the element repeats)",
                        f"{path}.{key}",
                    )
                )
            elif slot.check is not None:
                problem = slot.check(value)
                if problem is not None:
                    out.append(Issue("error", "structure", f"The value {problem}", f"{path}.{key}"))
            elif isinstance(value, dict) and not slot.resource:
                child = self._element_plans.get(slot.def_path) or self._plan(slot.def_path, False)
                if not _clean_node(value, child, self._element_plans):
                    self._node(value, child, f"{path}.{key}", out)
            else:
                self._complex(slot, value, f"{path}.{key}", out)
        if chosen is not None and len(chosen) > 1:
            choices: dict[str, list[str]] = {}
            for name, key in chosen:
                variant = key.removeprefix("_")
                seen = choices.setdefault(name, [])
                if variant not in seen:
                    seen.append(variant)
            for name, variants in choices.items():
                if len(variants) > 1:
                    out.append(
                        Issue(
                            "error",
                            "structure",
                            f"Only one type of {name}[x] may be present, found "
                            + ", ".join(variants),
                            path,
                        )
                    )
        for name, keys in plan.required:
            if keys.isdisjoint(node):
                out.append(
                    Issue("error", "structure", "Required element is missing", f"{path}.{name}")
                )

    def _complex(self, slot: _Slot, item: JsonValue, path: str, out: list[Issue]) -> None:
        if not isinstance(item, dict):
            text = "Null is not allowed in this array" if item is None else "Expected a JSON object"
            out.append(Issue("error", "structure", text, path))
        elif slot.resource:
            self._resource(item, path, out)
        else:
            self._node(item, self._plan(slot.def_path, False), path, out)

    def _primitive_element(
        self, value: JsonValue, primitive_value: JsonValue, slot: _Slot, path: str, out: list[Issue]
    ) -> None:
        """`_name`: the id and extensions of primitive `name`, aligned with it when it repeats."""
        if not slot.repeats:
            if isinstance(value, list):
                out.append(
                    Issue("error", "structure", "Expected a single object, not an array", path)
                )
            else:
                self._element_part(value, path, out)
            return
        if not isinstance(value, list):
            out.append(Issue("error", "structure", "Expected an array (the element repeats)", path))
            return
        if isinstance(primitive_value, list) and len(primitive_value) != len(value):
            out.append(
                Issue(
                    "error",
                    "structure",
                    f"The array must have as many items as {path.rsplit('._', 1)[-1]} "
                    f"({len(primitive_value)})",
                    path,
                )
            )
        for i, item in enumerate(value):
            if item is not None:
                self._element_part(item, f"{path}[{i}]", out)

    def _element_part(self, item: JsonValue, path: str, out: list[Issue]) -> None:
        if not isinstance(item, dict):
            out.append(Issue("error", "structure", "Expected a JSON object", path))
        elif not any(k in _ELEMENT_KEYS for k in item):
            # R4B refused these as 400 ("One of field value is required"); kept so
            out.append(Issue("error", "structure", "Expected an id or extensions", path))
        else:
            self._node(item, self._plan("Element", False), path, out)


def _clean_node(node: JsonObject, plan: _Plan, plans: dict[str, _Plan]) -> bool:
    """Whether `_node` would find nothing in `node`, of element `plan`: every required element,
    at most one choice property, and only properties (no `_name`) that are single primitives of
    a valid value, or element-typed children whose plan is in `plans` (element plans by path),
    each a clean node, in a non-empty array exactly when the element repeats. False, the
    conservative answer for anything else, sends the node through `_node`."""
    slots = plan.slots
    choices = 0
    for key, value in node.items():
        slot = slots.get(key)
        if slot is None or value is None or key[0] == "_":
            return False
        if slot.choice is not None:
            choices += 1
        if slot.check is not None:
            if slot.repeats or isinstance(value, list) or slot.check(value) is not None:
                return False
            continue
        child = None if slot.resource else plans.get(slot.def_path)
        if child is None:
            return False
        if slot.repeats:
            if not isinstance(value, list) or not value:
                return False
            for item in value:
                if not isinstance(item, dict) or not _clean_node(item, child, plans):
                    return False
        elif not isinstance(value, dict) or not _clean_node(value, child, plans):
            return False
    if choices > 1:
        return False
    for _, keys in plan.required:  # noqa: SIM110  # a plain loop: no generator per node
        if keys.isdisjoint(node):
            return False
    return True


@cache
def shape_checker() -> ShapeChecker:
    return ShapeChecker(core_definitions())


def shape_issues(resource: JsonObject) -> list[Issue]:
    """Structural issues of `resource`: each an error (or fatal) with a FHIRPath-style path."""
    return shape_checker().check(resource)
