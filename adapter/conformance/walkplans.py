"""What the instance walk (structure.py) needs per definition path, worked out once.

A `Plan` holds, for one definition path, each JSON property's `Prop` (its format check, kind and
own invariants), the required children, the element's invariants with the guards that let the walk
skip them (`Checks`), and whether a node there can be judged clean: `clean_node` answers, without
walking, that the walk would find nothing in a node of plain valid primitives and such nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from adapter.conformance.definitions import Child, CoreDefinitions
from adapter.conformance.invariants import GUARDED_BY, Invariant, compiled
from adapter.conformance.natives import HAS_GUARD, has_matches
from adapter.conformance.primitives import PrimitiveCheck, primitive_checker
from adapter.fhir.types import JsonObject

COMPOSE: Final = frozenset({"ValueSet.compose.include", "ValueSet.compose.exclude"})
CODED: Final = frozenset({"code", "Coding", "CodeableConcept", "string", "uri"})

RESOURCE, CODING, CODEABLE, IDENTIFIER, ATTACHMENT, REFERENCE, OTHER = range(7)
KINDS: Final = {
    "Resource": RESOURCE,
    "Coding": CODING,
    "CodeableConcept": CODEABLE,
    "Identifier": IDENTIFIER,
    "Attachment": ATTACHMENT,
    "Reference": REFERENCE,
}


#: An element's invariants, each with the properties without all of which it passes (None: it
#: may fail on any node), and whether that holds only for a node with no unknown property.
Checks = tuple[tuple[Invariant, frozenset[str] | None, bool], ...]


@dataclass(frozen=True, slots=True)
class Prop:
    """One JSON property at a definition path, with what the walk does for it worked out once."""

    child: Child
    #: `{def_path}.{child.name}`: the element path (extension contexts, `_name` extensions).
    element_path: str
    #: Primitive format check (primitives.primitive_checker) or None for a complex type.
    check: PrimitiveCheck | None
    #: A primitive with nothing to check beyond its format (no binding, not xhtml).
    plain: bool
    #: `_name` of this primitive is checked for an absent required code.
    coded_binding: bool
    kind: int
    #: The element's own invariants, when they are not those of the type walked into.
    invariants: Checks
    #: The definition path walked into (`child.def_path`).
    def_path: str
    #: A complex element of no kind with its own checks: the walk goes straight into it.
    direct: bool


@dataclass(frozen=True, slots=True)
class Plan:
    props: dict[str, Prop]
    #: As `props`, for a resource root: `id` is then of type id (Resource.id is System.String).
    root_props: dict[str, Prop]
    has_url: bool
    is_extension: bool
    is_compose: bool
    #: `is_extension or is_compose`: one test on the common path.
    special: bool
    #: Every property a node may have here (`_name` of primitives and `resourceType` included).
    known: frozenset[str]
    #: No special checks, no required choice, and only guarded or native invariants: a node here
    #: may be judged by `clean_node`.
    cleanable: bool
    #: (name, choice stem or None, min, expression suffix, `_name`) of each required child.
    required: tuple[tuple[str, str | None, int, str, str], ...]
    invariants: Checks


def compiled_all(keys: tuple[str, ...], known: frozenset[str] = frozenset()) -> Checks:
    """`known`: the properties a node of this path may have. A native in HAS_GUARD passes when
    `_has(node, name)` is false, which on a node of known properties only is: none of those
    `known` that `_has` matches is present. GUARDED_BY names a property read directly."""
    out: list[tuple[Invariant, frozenset[str] | None, bool]] = []
    for inv in map(compiled, keys):
        if inv is None:
            continue
        guard = GUARDED_BY.get(inv.key)
        has_guard = HAS_GUARD.get(inv.key) if inv.native is not None and known else None
        if guard is not None:
            out.append((inv, frozenset({guard}), False))
        elif has_guard is not None:
            out.append((inv, frozenset(k for k in known if has_matches(k, has_guard)), True))
        else:
            out.append((inv, None, False))
    return tuple(out)


def prop_of(child: Child, def_path: str) -> Prop:
    el = child.element
    primitive = child.is_primitive
    kind = KINDS.get(child.type_code, OTHER)
    invariants = (
        compiled_all(el.constraints)
        if not primitive and el.constraints and child.def_path != el.path
        else ()
    )
    return Prop(
        child=child,
        element_path=f"{def_path}.{child.name}",
        check=primitive_checker(child.type_code) if primitive else None,
        plain=primitive and not el.binding and child.type_code != "xhtml",
        coded_binding=bool(el.binding) and child.type_code in CODED,
        kind=kind,
        invariants=invariants,
        def_path=child.def_path,
        direct=not primitive and kind == OTHER and not invariants,
    )


def clean_node(
    node: JsonObject, plan: Plan, plans: dict[str, Plan], resource: JsonObject, root: JsonObject
) -> bool:
    """Whether `_walk` would find nothing in `node`, of a cleanable `plan` (not a resource root),
    when no text option is on. It must have something besides `id` (ele-1) and only properties
    (so none unknown) that are plain primitives with a valid single value, or direct complex
    elements whose plan is in `plans` and cleanable, each a clean node (a list: not empty); every
    required child; no invariant's guard property; and every unguarded (native) invariant must
    pass. False, the conservative answer for anything else: walk it."""
    if not node or "id" in node:
        return False
    props = plan.props
    for key, value in node.items():
        prop = props.get(key)
        if prop is None or value is None:
            return False
        if prop.plain:
            if isinstance(value, list) or prop.check(value) is not None:  # type: ignore[misc]  # plain: check is set
                return False
            continue
        child = plans.get(prop.def_path) if prop.direct else None
        if child is None or not child.cleanable:
            return False
        if isinstance(value, list):
            if not value:
                return False
            for item in value:
                if not isinstance(item, dict) or not clean_node(item, child, plans, resource, root):
                    return False
        elif not isinstance(value, dict) or not clean_node(value, child, plans, resource, root):
            return False
    for name, _, _, _, underscored in plan.required:  # no choices: see `cleanable`
        if name not in node and underscored not in node:
            return False
    for inv, guard, _ in plan.invariants:
        if guard is None:
            if not inv.native(node, resource, root):  # type: ignore[misc]  # cleanable: native
                return False
        elif not guard.isdisjoint(node):
            return False
    return True


def ele1_empty(node: JsonObject) -> bool:
    """ele-1 on a (non-root) node: nothing but `resourceType` and `id`."""
    n = len(node) - ("resourceType" in node)
    return n == 0 or (n == 1 and "id" in node)


def build_plan(defs: CoreDefinitions, def_path: str) -> Plan:
    """What the walk needs at `def_path`, worked out from the core definitions."""
    children = defs.children(def_path)
    props = {key: prop_of(child, def_path) for key, child in children.items()}
    root_props = dict(props)
    if "id" in children:
        child = children["id"]
        root_props["id"] = prop_of(
            Child("id", child.element, "id", "id", is_primitive=True), def_path
        )
    required = []
    for req in defs.required_children(def_path):
        name = req.path.rsplit(".", 1)[-1]
        stem = name[:-3] if name.endswith("[x]") else None
        required.append((name, stem, req.min, name.removesuffix("[x]"), f"_{name}"))
    own = defs.elements.get(def_path)
    is_extension = def_path == "Extension" or def_path.endswith(".extension")
    known = frozenset(
        [*props, *(f"_{k}" for k, c in children.items() if c.is_primitive), "resourceType"]
    )
    invariants = compiled_all(own.constraints, known) if own is not None else ()
    special = is_extension or def_path in COMPOSE
    return Plan(
        props=props,
        root_props=root_props,
        has_url="url" in children,
        is_extension=is_extension,
        is_compose=def_path in COMPOSE,
        special=special,
        required=tuple(required),
        invariants=invariants,
        known=known,
        cleanable=not special
        and all(stem is None for _, stem, _, _, _ in required)
        and all(g is not None or i.native is not None for i, g, _ in invariants),
    )
