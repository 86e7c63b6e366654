"""The instance walk: one pass over a resource, driven by the core definitions.

At each node it checks what needs the element's definition: primitive formats, required bindings,
`ele-1` (no empty elements) and `ext-1` natively, cardinality minimums, and the element's
error-severity invariants (through `InvariantRunner`). It collects every Reference with the target
types its element allows, for `references.py`. Unknown properties are not reported here: the native
structural check (`adapter.fhir.parse.structural_issues`, conformance/shape.py) runs first and has
already answered 400 for them.

What the walk needs per definition path (children, their format checks, required children, the
compiled invariants) is gathered once per process into a `Plan` (walkplans.py), so a node costs one
lookup. The checks at one element are elementchecks.py; what a walk hands back is walkresult.py.
"""

from __future__ import annotations

from adapter.conformance.bundles import attachment_problem
from adapter.conformance.definitions import CoreDefinitions
from adapter.conformance.elementchecks import (
    check_absent_required_code,
    check_binding,
    check_example_url,
    check_html_in_text,
    check_primitive,
    check_special,
)
from adapter.conformance.extensions import context_names, extension_issues
from adapter.conformance.identifiers import one_identifier_issues
from adapter.conformance.invariants import InvariantRunner
from adapter.conformance.terminology import coding_problem
from adapter.conformance.walkplans import (
    ATTACHMENT,
    CODEABLE,
    CODING,
    IDENTIFIER,
    OTHER,
    REFERENCE,
    RESOURCE,
    Checks,
    Plan,
    Prop,
    build_plan,
    clean_node,
    ele1_empty,
)
from adapter.conformance.walkresult import FoundReference, WalkResult
from adapter.fhir.types import JsonObject, JsonValue
from adapter.issue import Issue

__all__ = ["FoundReference", "InstanceWalker", "WalkResult"]


class InstanceWalker:
    def __init__(self, defs: CoreDefinitions, runner: InvariantRunner) -> None:
        self._defs = defs
        self._runner = runner
        self._plans: dict[str, Plan] = {}

    def _plan(self, def_path: str) -> Plan:
        """Built on the first node of each definition path, then kept for the process."""
        plan = self._plans.get(def_path)
        if plan is None:
            plan = self._plans[def_path] = build_plan(self._defs, def_path)
        return plan

    def walk_resource(
        self, resource: JsonObject, path: str, root: JsonObject | None, out: WalkResult
    ) -> None:
        rt = resource.get("resourceType")
        if not isinstance(rt, str) or not self._defs.is_resource(rt):
            return
        self._walk(
            resource,
            rt,
            path,
            resource,
            root if root is not None else resource,
            out,
            True,
        )

    def _walk(
        self,
        node: JsonObject,
        def_path: str,
        path: str,
        resource: JsonObject,
        root: JsonObject,
        out: WalkResult,
        is_resource_root: bool = False,
        element_path: str | None = None,
    ) -> None:
        """Called with positional arguments: this runs at every complex node of every resource."""
        if (
            not is_resource_root
            and len(node) < 3
            and (not node or "id" in node or "resourceType" in node)  # (else it has content)
            and ele1_empty(node)
        ):
            out.issues.append(
                Issue(
                    "error",
                    "invariant",
                    "ele-1: All FHIR elements must have a @value or children",
                    path,
                )
            )
            return
        plan = self._plans.get(def_path) or self._plan(def_path)
        issues = out.issues
        if "extension" in node or "modifierExtension" in node:
            names = context_names(
                def_path,
                element_path or def_path,
                is_resource_root,
                is_resource_root and plan.has_url,
            )
            issues += extension_issues(node, names, path, out.known, out.unknown_extensions)
        if plan.special:
            check_special(node, plan, path, out)
        props = plan.root_props if is_resource_root else plan.props
        text_checks = out.text_checks
        unknown = False  # a property the plan does not know (HAS_GUARD does not hold then)
        for key, value in node.items():
            prop = props.get(key)
            if prop is None:
                if key not in plan.known:
                    unknown = True
                if key.startswith("_"):
                    self._underscore(key, value, node, plan.props, path, resource, root, out)
                continue  # resourceType, or unknown (the structural check has reported it)
            if value is None:
                # JSON format: null only stands in a primitive array paired with `_name`
                issues.append(
                    Issue("error", "structure", f"The property {key} must not be null", path)
                )
                continue
            as_list = isinstance(value, list)
            if as_list and not value:
                issues.append(
                    Issue("error", "invariant", "ele-1: Arrays must not be empty", f"{path}.{key}")
                )
            check = prop.check
            if check is not None:
                if not as_list:
                    problem = check(value)
                    if text_checks or problem is not None or not prop.plain:
                        self._primitive_item(
                            prop, value, f"{path}.{key}", problem, text_checks, resource, out
                        )
                    continue
                for i, item in enumerate(value):
                    if item is None:
                        continue  # a null in a primitive array, paired with `_name`
                    problem = check(item)
                    if text_checks or problem is not None or not prop.plain:
                        self._primitive_item(
                            prop, item, f"{path}.{key}[{i}]", problem, text_checks, resource, out
                        )
                continue
            # null or the wrong JSON kind: reported by the structural check
            if prop.direct:  # as `_item` would, without the call
                child_path, element = prop.def_path, prop.element_path
                plans = self._plans
                clean = plans.get(child_path)
                if clean is not None and (text_checks or not clean.cleanable):
                    clean = None
                if as_list:
                    for i, item in enumerate(value):
                        if isinstance(item, dict):
                            if clean is not None and clean_node(item, clean, plans, resource, root):
                                continue
                            self._walk(
                                item, child_path, f"{path}.{key}[{i}]", resource, root, out,
                                False, element,
                            )  # fmt: skip
                elif isinstance(value, dict) and not (
                    clean is not None and clean_node(value, clean, plans, resource, root)
                ):
                    self._walk(
                        value, child_path, f"{path}.{key}", resource, root, out, False, element
                    )
            elif as_list:
                for i, item in enumerate(value):
                    if isinstance(item, dict):
                        self._item(prop, item, f"{path}.{key}[{i}]", resource, root, out)
            elif isinstance(value, dict):
                self._item(prop, value, f"{path}.{key}", resource, root, out)
        for name, stem, minimum, suffix, underscored in plan.required:
            if stem is not None:
                present = any(
                    k.lstrip("_").startswith(stem) and k.lstrip("_") in props for k in node
                )
            else:
                present = name in node or underscored in node
            if not present:
                issues.append(
                    Issue(
                        "error",
                        "required",
                        f"Minimum cardinality of '{name}' is {minimum}",
                        f"{path}.{suffix}",
                    )
                )
        for _, guard, needs_known in plan.invariants:  # the call only if one may fail
            if guard is None or not guard.isdisjoint(node) or (needs_known and unknown):
                self._invariants(
                    plan.invariants, node, def_path, path, resource, root, out, unknown
                )
                break

    def _underscore(
        self,
        key: str,
        value: JsonValue,
        node: JsonObject,
        props: dict[str, Prop],
        path: str,
        resource: JsonObject,
        root: JsonObject,
        out: WalkResult,
    ) -> None:
        """`_name`: the Element part of primitive `name`."""
        prim = props.get(key[1:])
        self._primitive_extension(
            value,
            f"{path}.{key[1:]}",
            (prim.child.type_code, prim.element_path) if prim else None,
            resource,
            root,
            out,
        )
        if prim is not None and prim.coded_binding:
            check_absent_required_code(
                value, node.get(key[1:]), prim.child, f"{path}.{key[1:]}", out
            )

    def _primitive_item(
        self,
        prop: Prop,
        item: JsonValue,
        item_path: str,
        problem: str | None,
        text_checks: bool,
        resource: JsonObject,
        out: WalkResult,
    ) -> None:
        type_code = prop.child.type_code
        if text_checks and isinstance(item, str):
            if out.no_html_in_markdown or out.security_checks:
                check_html_in_text(type_code, item, item_path, out)
            if out.no_example_urls:
                check_example_url(type_code, item, item_path, out)
        if problem is None and prop.plain:
            return  # the common case: a valid primitive with nothing else to check
        check_primitive(prop.child, item, item_path, problem, resource, out)

    def _item(
        self,
        prop: Prop,
        item: JsonObject,
        path: str,
        resource: JsonObject,
        root: JsonObject,
        out: WalkResult,
    ) -> None:
        child = prop.child
        kind = prop.kind
        if kind == OTHER and not prop.invariants:  # the common case: walk straight in
            self._walk(item, child.def_path, path, resource, root, out, False, prop.element_path)
            return
        if kind == RESOURCE:
            # %rootResource is the container only for contained resources; a Bundle entry or a
            # Parameters resource is a root of its own.
            self.walk_resource(item, path, root if child.name == "contained" else None, out)
            return
        if kind != OTHER:
            el = child.element
            if el.binding and kind in (CODING, CODEABLE):
                check_binding(el, child.type_code, item, path, out)
            if kind == CODING:
                wrong = coding_problem(out.known, item)
                if wrong is not None:
                    code, text, sub = wrong
                    out.issues.append(Issue("error", code, text, f"{path}.{sub}"))  # type: ignore[arg-type]  # codes are IssueCode literals
            elif kind == IDENTIFIER:
                out.issues += one_identifier_issues(item, path)
            elif kind == ATTACHMENT:
                problem = attachment_problem(item)
                if problem is not None:
                    out.issues.append(Issue("error", "value", problem, path))
            elif kind == REFERENCE and isinstance(item.get("reference"), str):
                out.references.append(FoundReference(path, item, el.targets, resource, root))
        if prop.invariants:
            self._invariants(prop.invariants, item, child.def_path, path, resource, root, out, True)
        clean = self._plans.get(child.def_path)
        if (
            clean is not None
            and clean.cleanable
            and not out.text_checks
            and clean_node(item, clean, self._plans, resource, root)
        ):
            return  # a Coding, Identifier or Reference of plain valid values: nothing more to find
        self._walk(item, child.def_path, path, resource, root, out, False, prop.element_path)

    def _primitive_extension(
        self,
        value: JsonValue,
        path: str,
        primitive: tuple[str, str] | None,
        resource: JsonObject,
        root: JsonObject,
        out: WalkResult,
    ) -> None:
        """`_name`: the Element part of a primitive (id and extensions)."""
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            where = f"{path}[{i}]" if isinstance(value, list) else path
            if isinstance(item, dict) and item.get("extension") and primitive is not None:
                type_name, element_path = primitive
                names = context_names(type_name, element_path, False)
                out.issues += extension_issues(
                    item, names, where, out.known, out.unknown_extensions
                )
                for j, ext in enumerate(item["extension"]):
                    if isinstance(ext, dict):
                        self._walk(ext, "Extension", f"{where}.extension[{j}]", resource, root, out)
            if isinstance(item, dict) and (not item or list(item) == ["id"]):
                out.issues.append(
                    Issue(
                        "error",
                        "invariant",
                        "ele-1: All FHIR elements must have a @value or children",
                        where,
                    )
                )

    def _invariants(
        self,
        invariants: Checks,
        node: JsonObject,
        def_path: str,
        path: str,
        resource: JsonObject,
        root: JsonObject,
        out: WalkResult,
        unknown: bool,
    ) -> None:
        """Natives are called directly, and a guarded invariant whose properties are all absent
        passes (as `InvariantRunner.passes` would answer, without the call). `unknown`: the node
        has a property its plan does not know, or the walk did not look."""
        passes = self._runner.passes
        for inv, guard, needs_known in invariants:
            if guard is not None and guard.isdisjoint(node) and not (needs_known and unknown):
                continue
            native = inv.native
            if native is not None:
                if native(node, resource, root):
                    continue
            elif passes(inv, node, def_path, resource, root):
                continue
            out.issues.append(
                Issue("error", "invariant", f"Constraint failed: {inv.key}: '{inv.human}'", path)
            )
