"""The instance walk: one pass over a resource, driven by the core definitions.

At each node it checks what needs the element's definition: primitive formats, required bindings,
`ele-1` (no empty elements) and `ext-1` natively, cardinality minimums, and the element's
error-severity invariants (through `InvariantRunner`). It collects every Reference with the target
types its element allows, for `references.py`. Unknown properties are not reported here: the native
structural check (`adapter.fhir.parse.structural_issues`, conformance/shape.py) runs first and has
already answered 400 for them.

What the walk needs per definition path (children, their format checks, required children, the
compiled invariants) is gathered once per process into a `Plan`, so a node costs one lookup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from adapter.conformance.bindings import code_in, coding_in, core_valueset
from adapter.conformance.bundles import attachment_problem
from adapter.conformance.definitions import Child, CoreDefinitions, ElementDef
from adapter.conformance.extensions import UnknownExtensionPolicy, context_names, extension_issues
from adapter.conformance.identifiers import one_identifier_issues
from adapter.conformance.invariants import InvariantRunner
from adapter.conformance.terminology import KnownArtefacts, coding_problem, core_artefacts
from adapter.conformance.valuesets import compose_issues
from adapter.conformance.walkplans import (
    ATTACHMENT,
    CODEABLE,
    CODED,
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
from adapter.conformance.xhtml import xhtml_problems
from adapter.fhir.types import JsonObject, JsonValue
from adapter.issue import Issue

_CROSS_VERSION: Final[re.Pattern[str]] = re.compile(
    r"http://hl7\.org/fhir/\d\.\d/StructureDefinition/extension-"
)


@dataclass(frozen=True, slots=True)
class FoundReference:
    expression: str  # path of the Reference element
    reference: JsonObject
    targets: tuple[str, ...]  # allowed target types; empty or ("Resource",) means any
    resource: JsonObject  # the (possibly contained) resource holding it
    root: JsonObject


@dataclass(slots=True)
class WalkResult:
    issues: list[Issue] = field(default_factory=list)
    references: list[FoundReference] = field(default_factory=list)
    #: Code systems and extension definitions known for this call.
    known: KnownArtefacts = field(default_factory=core_artefacts)
    unknown_extensions: UnknownExtensionPolicy = "allow"
    #: Reference-validator options (off by default): HTML tags in markdown, HTML in strings.
    no_html_in_markdown: bool = False
    security_checks: bool = False
    #: The reference validator's `examples: false`: example URLs (example.org, …) are errors.
    no_example_urls: bool = False
    #: Any of the three text options above is on (worked out once, read at every primitive).
    text_checks: bool = field(init=False)

    def __post_init__(self) -> None:
        self.text_checks = self.no_html_in_markdown or self.security_checks or self.no_example_urls


#: An HTML-looking tag: `<name` followed by a space, `/` or `>` (markdown autolinks `<http:...>`
#: and comparisons such as `a < b` do not match).
_MARKDOWN_TAG: Final[re.Pattern[str]] = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?=[\s/>])")
_STRING_TAG: Final[re.Pattern[str]] = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(\s[^<>]*)?/?>")


#: Hosts of example URLs (RFC 2606 example domains), with their subdomains.
_EXAMPLE_URL: Final[re.Pattern[str]] = re.compile(
    r"^[a-z][a-z0-9+.\-]*://([^/?#@]*@)?([A-Za-z0-9\-]+\.)*example\.(org|com|net)(?=[:/?#]|$)",
    re.IGNORECASE,
)


def _example_url(type_code: str, text: str, path: str, out: WalkResult) -> None:
    if type_code in ("uri", "url", "canonical") and _EXAMPLE_URL.match(text):
        out.issues.append(
            Issue(
                "error",
                "invalid",
                f"Example URLs are not allowed in this context ({text})",
                path,
            )
        )


def _html_in_text(type_code: str, text: str, path: str, out: WalkResult) -> None:
    """The reference validator's `noHtmlInMarkdown` and `security-checks` options."""
    if type_code == "markdown" and out.no_html_in_markdown:
        found = _MARKDOWN_TAG.search(text)
        if found is not None:
            out.issues.append(
                Issue(
                    "error",
                    "invalid",
                    "The markdown contains content that appears to be an embedded HTML tag "
                    f"starting at '{text[found.start() : found.start() + 2]}'",
                    path,
                )
            )
    elif type_code == "string" and out.security_checks and _STRING_TAG.search(text):
        out.issues.append(
            Issue(
                "error",
                "invalid",
                "The string value contains text that looks like embedded HTML tags, which are "
                "not allowed for security reasons",
                path,
            )
        )


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
            self._special(node, plan, path, out)
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

    @staticmethod
    def _special(node: JsonObject, plan: Plan, path: str, out: WalkResult) -> None:
        """ValueSet.compose.include/exclude, and ext-1 on an extension."""
        issues = out.issues
        if plan.is_compose:
            issues += compose_issues(node, path, out.known)
        if plan.is_extension:
            has_value = any(k.startswith("value") for k in node)
            if ("extension" in node) == has_value:
                issues.append(
                    Issue(
                        "error",
                        "invariant",
                        "ext-1: Must have either extensions or value[x], not both",
                        path,
                    )
                )

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
            self._absent_required_code(
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
                _html_in_text(type_code, item, item_path, out)
            if out.no_example_urls:
                _example_url(type_code, item, item_path, out)
        if problem is None and prop.plain:
            return  # the common case: a valid primitive with nothing else to check
        self._primitive(prop.child, item, item_path, problem, resource, out)

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
                self._binding(el, child.type_code, item, path, out)
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

    @staticmethod
    def _primitive(
        child: Child,
        item: JsonValue,
        path: str,
        problem: str | None,
        resource: JsonObject,
        out: WalkResult,
    ) -> None:
        """Issues for one primitive value whose format check gave `problem`."""
        el, type_code = child.element, child.type_code
        if problem is not None:
            out.issues.append(Issue("error", "value", f"The value {problem}", path))
            return
        if type_code == "xhtml" and isinstance(item, str):
            ids = [
                str(c.get("id"))
                for c in resource.get("contained") or []
                if isinstance(c, dict) and c.get("id")
            ]
            for text in xhtml_problems(item, ids):
                out.issues.append(Issue("error", "invalid", text, path))
        if el.binding and type_code in CODED and isinstance(item, str):
            vs = core_valueset(el.binding)
            if vs is not None and not code_in(vs, item):
                out.issues.append(
                    Issue(
                        "error",
                        "code-invalid",
                        f"The code is not in the required value set {el.binding}",
                        path,
                    )
                )

    def _binding(
        self, el: ElementDef, type_code: str, item: JsonObject, path: str, out: WalkResult
    ) -> None:
        assert el.binding is not None
        vs = core_valueset(el.binding)
        if vs is None:
            return
        codings = (
            [item]
            if type_code == "Coding"
            else [c for c in item.get("coding") or [] if isinstance(c, dict)]
        )
        if not codings:
            return
        if not any(coding_in(vs, c) for c in codings):
            where = path if type_code == "Coding" else f"{path}.coding"
            out.issues.append(
                Issue(
                    "error",
                    "code-invalid",
                    f"No coding is in the required value set {el.binding}",
                    where,
                )
            )

    @staticmethod
    def _absent_required_code(
        element: JsonValue, values: JsonValue, prim: Child, path: str, out: WalkResult
    ) -> None:
        """A code bound to a required value set needs a code: extensions alone (such as a
        data-absent-reason) leave the element without a value from the value set."""
        if core_valueset(str(prim.element.binding)) is None:
            return
        items = element if isinstance(element, list) else [element]
        value_list = values if isinstance(values, list) else [values]
        for i, item in enumerate(items):
            if not isinstance(item, dict) or any(
                isinstance(e, dict) and _CROSS_VERSION.match(str(e.get("url", "")))
                for e in item.get("extension") or []
            ):
                continue  # a cross-version extension carries the value in another release's terms
            present = value_list[i] if i < len(value_list) else None
            if present is None:
                where = f"{path}[{i}]" if isinstance(element, list) else path
                out.issues.append(
                    Issue(
                        "error",
                        "code-invalid",
                        "No code provided, and a code is required from the value set "
                        f"{prim.element.binding}",
                        where,
                    )
                )

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
