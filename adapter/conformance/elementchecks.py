"""The checks the instance walk (structure.py) makes at one element against its definition.

Each appends to the walk's `WalkResult`: a primitive's format problem, xhtml narrative and required
binding of a code; a Coding or CodeableConcept's required binding; a required code present only as
extensions; ValueSet.compose and `ext-1`; and the reference validator's text options (HTML in
markdown or strings, example URLs), which are off by default.
"""

from __future__ import annotations

import re
from typing import Final

from adapter.conformance.bindings import code_in, coding_in, core_valueset
from adapter.conformance.definitions import Child, ElementDef
from adapter.conformance.valuesets import compose_issues
from adapter.conformance.walkplans import CODED, Plan
from adapter.conformance.walkresult import WalkResult
from adapter.conformance.xhtml import xhtml_problems
from adapter.fhir.types import JsonObject, JsonValue
from adapter.issue import Issue

_CROSS_VERSION: Final[re.Pattern[str]] = re.compile(
    r"http://hl7\.org/fhir/\d\.\d/StructureDefinition/extension-"
)

#: An HTML-looking tag: `<name` followed by a space, `/` or `>` (markdown autolinks `<http:...>`
#: and comparisons such as `a < b` do not match).
_MARKDOWN_TAG: Final[re.Pattern[str]] = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?=[\s/>])")
_STRING_TAG: Final[re.Pattern[str]] = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(\s[^<>]*)?/?>")


#: Hosts of example URLs (RFC 2606 example domains), with their subdomains.
_EXAMPLE_URL: Final[re.Pattern[str]] = re.compile(
    r"^[a-z][a-z0-9+.\-]*://([^/?#@]*@)?([A-Za-z0-9\-]+\.)*example\.(org|com|net)(?=[:/?#]|$)",
    re.IGNORECASE,
)


def check_example_url(type_code: str, text: str, path: str, out: WalkResult) -> None:
    if type_code in ("uri", "url", "canonical") and _EXAMPLE_URL.match(text):
        out.issues.append(
            Issue(
                "error",
                "invalid",
                f"Example URLs are not allowed in this context ({text})",
                path,
            )
        )


def check_html_in_text(type_code: str, text: str, path: str, out: WalkResult) -> None:
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


def check_special(node: JsonObject, plan: Plan, path: str, out: WalkResult) -> None:
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


def check_primitive(
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


def check_binding(
    el: ElementDef, type_code: str, item: JsonObject, path: str, out: WalkResult
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


def check_absent_required_code(
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
