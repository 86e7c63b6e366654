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
What the check needs per definition path (the allowed properties, each primitive's check, the
required elements) is worked out once into a `ShapePlan` (shapeplans.py).
`adapter.fhir.parse.r4b_structural_issues` is the reference the differential corpus test compares
this with.
"""

from __future__ import annotations

from functools import cache
from typing import Final

from adapter.conformance.definitions import CoreDefinitions, core_definitions
from adapter.conformance.shapeplans import (
    ShapeCheck,
    ShapePlan,
    ShapeSlot,
    build_shape_plan,
    primitive_shape_problem,
)
from adapter.fhir.types import JsonObject, JsonValue
from adapter.issue import Issue

__all__ = [
    "REFUSED_R4_TYPES",
    "ShapeCheck",
    "ShapeChecker",
    "primitive_shape_problem",
    "shape_checker",
    "shape_issues",
]

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

#: A primitive's `_name` sibling holds the Element part only.
_ELEMENT_KEYS: Final = frozenset({"id", "extension"})


class ShapeChecker:
    """Structural issues of one resource (and every resource inside it)."""

    def __init__(self, defs: CoreDefinitions) -> None:
        self._defs = defs
        self._plans: dict[tuple[str, bool], ShapePlan] = {}
        #: The same plans for resource_root False, by definition path alone (the hot lookup).
        self._element_plans: dict[str, ShapePlan] = {}

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

    def _plan(self, def_path: str, resource_root: bool) -> ShapePlan:
        hit = self._plans.get((def_path, resource_root))
        if hit is not None:
            return hit
        plan = build_shape_plan(self._defs, def_path, resource_root)
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

    def _node(self, node: JsonObject, plan: ShapePlan, path: str, out: list[Issue]) -> None:
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

    def _complex(self, slot: ShapeSlot, item: JsonValue, path: str, out: list[Issue]) -> None:
        if not isinstance(item, dict):
            text = "Null is not allowed in this array" if item is None else "Expected a JSON object"
            out.append(Issue("error", "structure", text, path))
        elif slot.resource:
            self._resource(item, path, out)
        else:
            self._node(item, self._plan(slot.def_path, False), path, out)

    def _primitive_element(
        self,
        value: JsonValue,
        primitive_value: JsonValue,
        slot: ShapeSlot,
        path: str,
        out: list[Issue],
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


def _clean_node(node: JsonObject, plan: ShapePlan, plans: dict[str, ShapePlan]) -> bool:
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
