"""The instance walk: one pass over a resource, driven by the core definitions.

At each node it checks what needs the element's definition: primitive formats, required bindings,
`ele-1` (no empty elements) and `ext-1` natively, cardinality minimums, and the element's
error-severity invariants (through `InvariantRunner`). It collects every Reference with the target
types its element allows, for `references.py`. Unknown properties are left to the structural parse
(fhir.resources), which has already answered 400 for them.
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
from adapter.conformance.invariants import InvariantRunner, compiled
from adapter.conformance.primitives import primitive_problem
from adapter.conformance.terminology import KnownArtefacts, coding_problem, core_artefacts
from adapter.conformance.valuesets import compose_issues
from adapter.conformance.xhtml import xhtml_problems
from adapter.fhir.types import JsonObject, JsonValue
from adapter.issue import Issue

_COMPOSE: Final = frozenset({"ValueSet.compose.include", "ValueSet.compose.exclude"})
_CROSS_VERSION: Final[re.Pattern[str]] = re.compile(
    r"http://hl7\.org/fhir/\d\.\d/StructureDefinition/extension-"
)
_CODED: Final = frozenset({"code", "Coding", "CodeableConcept", "string", "uri"})


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
            is_resource_root=True,
        )

    def _walk(
        self,
        node: JsonObject,
        def_path: str,
        path: str,
        resource: JsonObject,
        root: JsonObject,
        out: WalkResult,
        *,
        is_resource_root: bool = False,
        element_path: str | None = None,
    ) -> None:
        defs = self._defs
        keys = [k for k in node if k != "resourceType"]
        if not is_resource_root and (not keys or keys == ["id"]):
            out.issues.append(
                Issue(
                    "error",
                    "invariant",
                    "ele-1: All FHIR elements must have a @value or children",
                    path,
                )
            )
            return
        children = defs.children(def_path)
        if "extension" in node or "modifierExtension" in node:
            names = context_names(
                def_path,
                element_path or def_path,
                is_resource_root,
                is_resource_root and "url" in children,
            )
            out.issues += extension_issues(node, names, path, out.known, out.unknown_extensions)
        if def_path in _COMPOSE:
            out.issues += compose_issues(node, path, out.known)
        if def_path == "Extension" or def_path.endswith(".extension"):
            has_value = any(k.startswith("value") for k in node)
            if ("extension" in node) == has_value:
                out.issues.append(
                    Issue(
                        "error",
                        "invariant",
                        "ext-1: Must have either extensions or value[x], not both",
                        path,
                    )
                )
        for key in keys:
            value = node[key]
            if key.startswith("_"):
                prim = children.get(key[1:])
                self._primitive_extension(
                    value,
                    f"{path}.{key[1:]}",
                    (prim.type_code, f"{def_path}.{prim.name}") if prim else None,
                    resource,
                    root,
                    out,
                )
                if prim is not None and prim.element.binding and prim.type_code in _CODED:
                    self._absent_required_code(
                        value, node.get(key[1:]), prim, f"{path}.{key[1:]}", out
                    )
                continue
            child = children.get(key)
            if child is None:
                continue
            if is_resource_root and key == "id":
                child = Child("id", child.element, "id", "id", is_primitive=True)
            if value is None:
                # JSON format: null only stands in a primitive array paired with `_name`
                out.issues.append(
                    Issue("error", "structure", f"The property {key} must not be null", path)
                )
                continue
            items = value if isinstance(value, list) else [value]
            as_list = isinstance(value, list)
            if as_list and not items:
                out.issues.append(
                    Issue("error", "invariant", "ele-1: Arrays must not be empty", f"{path}.{key}")
                )
            if child.is_primitive:
                for i, item in enumerate(items):
                    if item is None:
                        continue  # a null in a primitive array, paired with `_name`
                    problem = primitive_problem(child.type_code, item)
                    if (out.no_html_in_markdown or out.security_checks) and isinstance(item, str):
                        item_path = f"{path}.{key}[{i}]" if as_list else f"{path}.{key}"
                        _html_in_text(child.type_code, item, item_path, out)
                    if out.no_example_urls and isinstance(item, str):
                        item_path = f"{path}.{key}[{i}]" if as_list else f"{path}.{key}"
                        _example_url(child.type_code, item, item_path, out)
                    if problem is None and not child.element.binding and child.type_code != "xhtml":
                        continue  # the common case: a valid primitive with nothing else to check
                    item_path = f"{path}.{key}[{i}]" if as_list else f"{path}.{key}"
                    self._primitive(child, item, item_path, problem, resource, out)
                continue
            element_path = f"{def_path}.{child.name}"
            for i, item in enumerate(items):
                item_path = f"{path}.{key}[{i}]" if as_list else f"{path}.{key}"
                self._item(child, item, item_path, resource, root, out, element_path)
        for req in defs.required_children(def_path):
            name = req.path.rsplit(".", 1)[-1]
            if name.endswith("[x]"):
                stem = name[:-3]
                present = any(
                    k.lstrip("_").startswith(stem) and k.lstrip("_") in children for k in node
                )
            else:
                present = name in node or f"_{name}" in node
            if not present:
                out.issues.append(
                    Issue(
                        "error",
                        "required",
                        f"Minimum cardinality of '{name}' is {req.min}",
                        f"{path}.{name.removesuffix('[x]')}",
                    )
                )
        own = defs.elements.get(def_path)
        if own is not None and own.constraints:
            self._invariants(own.constraints, node, def_path, path, resource, root, out)

    def _item(
        self,
        child: Child,
        item: JsonValue,
        path: str,
        resource: JsonObject,
        root: JsonObject,
        out: WalkResult,
        element_path: str,
    ) -> None:
        el, type_code = child.element, child.type_code
        if item is None or child.is_primitive:
            return  # primitives are checked in `_walk` (`_primitive`)
        if not isinstance(item, dict):
            return  # wrong JSON kind: reported by the structural parse
        if type_code == "Resource":
            # %rootResource is the container only for contained resources; a Bundle entry or a
            # Parameters resource is a root of its own.
            self.walk_resource(item, path, root if child.name == "contained" else None, out)
            return
        if el.binding and type_code in ("Coding", "CodeableConcept"):
            self._binding(el, type_code, item, path, out)
        if type_code == "Coding":
            wrong = coding_problem(out.known, item)
            if wrong is not None:
                code, text, sub = wrong
                out.issues.append(Issue("error", code, text, f"{path}.{sub}"))  # type: ignore[arg-type]  # codes are IssueCode literals
        if type_code == "Identifier":
            out.issues += one_identifier_issues(item, path)
        if type_code == "Attachment":
            problem = attachment_problem(item)
            if problem is not None:
                out.issues.append(Issue("error", "value", problem, path))
        if type_code == "Reference" and isinstance(item.get("reference"), str):
            out.references.append(FoundReference(path, item, el.targets, resource, root))
        if el.constraints and child.def_path != el.path:
            self._invariants(el.constraints, item, child.def_path, path, resource, root, out)
        self._walk(item, child.def_path, path, resource, root, out, element_path=element_path)

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
        if el.binding and type_code in _CODED and isinstance(item, str):
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
        keys: tuple[str, ...],
        node: JsonObject,
        def_path: str,
        path: str,
        resource: JsonObject,
        root: JsonObject,
        out: WalkResult,
    ) -> None:
        for key in keys:
            inv = compiled(key)
            if inv is None:
                continue
            if not self._runner.passes(inv, node, def_path, resource, root):
                out.issues.append(
                    Issue(
                        "error", "invariant", f"Constraint failed: {inv.key}: '{inv.human}'", path
                    )
                )
