"""Narrative XHTML rules of R4 (narrative.html#xhtml, invariants txt-1 and txt-2).

The div SHALL be well-formed XHTML in the XHTML namespace, use only the basic HTML formatting
elements (HTML 4.0 chapters 7-11 and 15, `<a>`, `<img>` and tables), no scripts, forms, frames,
base, link or style elements, no event attributes (`on...`), and no entities except the five XML
ones and character references (XHTML in FHIR is XML, which knows no `&reg;`). An internal hyperlink (`href="#x"`) must resolve to an element of the
narrative with that id or name, or to a contained resource. txt-2 (some non-whitespace content)
is not enforced: an official R4 example (Questionnaire zika-virus-exposure-assessment) has an
empty `<pre>` narrative and no reference validator case needs it.

A DOCTYPE or entity declaration is refused before parsing, so the XML parser never expands one;
expat reports elements as it reads them (no tree is built).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final
from xml.parsers import expat

#: R4 narrative.html: the HTML 4.0 basic formatting elements that may appear.
ALLOWED_ELEMENTS: Final = frozenset(
    {
        "p", "br", "div", "h1", "h2", "h3", "h4", "h5", "h6", "a", "span", "b", "em", "i",
        "strong", "small", "big", "tt", "dfn", "q", "var", "abbr", "acronym", "cite",
        "blockquote", "hr", "address", "bdo", "kbd", "sub", "sup", "ul", "ol", "li", "dl", "dt",
        "dd", "pre", "table", "caption", "colgroup", "col", "thead", "tr", "tfoot", "tbody", "th",
        "td", "code", "samp", "img", "map", "area", "u", "s", "strike", "font", "center", "ins",
        "del", "label", "article", "section", "header", "footer", "nav", "figure", "figcaption",
        "mark", "time", "wbr",
    }
)  # fmt: skip
_ENTITY: Final = re.compile(r"&(?!(?:lt|gt|amp|quot|apos|#\d+|#x[0-9A-Fa-f]+);)([A-Za-z0-9]*;?)")


_NS_URI: Final = "http://www.w3.org/1999/xhtml"
#: Expat's names (`uri name`) of the allowed elements in the XHTML namespace.
_ALLOWED_TAGS: Final = frozenset(f"{_NS_URI} {name}" for name in ALLOWED_ELEMENTS)
_NS_LEN: Final = len(_NS_URI) + 1


class _Scan:
    """expat callbacks: element names, attributes and anchors, without building a tree."""

    def __init__(self, anchors: set[str]) -> None:
        self.problems: list[str] = []
        self.anchors = anchors
        self.links: list[str] = []
        self.depth = 0

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        if self.depth and tag in _ALLOWED_TAGS:
            # the common case: an allowed XHTML element inside the div
            self.depth += 1
            if attrs:
                self._attributes(tag[_NS_LEN:], attrs)
            return
        uri, _, name = tag.rpartition(" ")
        if self.depth == 0 and (name != "div" or uri != _NS_URI):
            self.problems.append("The narrative must be a <div> in the XHTML namespace")
        self.depth += 1
        if uri and uri != _NS_URI:
            self.problems.append(f"Invalid element namespace in the XHTML ('{name}')")
            return
        if name not in ALLOWED_ELEMENTS:
            self.problems.append(f"Invalid element name in the XHTML ('{name}')")
        self._attributes(name, attrs)

    def _attributes(self, name: str, attrs: dict[str, str]) -> None:
        for attr, value in attrs.items():
            attr_name = attr.rpartition(" ")[2].lower()
            if attr_name.startswith("on"):
                self.problems.append(
                    f"Invalid attribute name in the XHTML ('{attr_name}' on {name})"
                )
            elif attr_name in ("href", "src") and value.strip().lower().startswith("javascript:"):
                self.problems.append(
                    f"Script URLs are not allowed in the XHTML ({name}@{attr_name})"
                )
            elif attr_name in ("id", "name"):
                self.anchors.add(value)
        href = attrs.get("href")
        if name == "a" and href is not None and href.startswith("#") and len(href) > 1:
            self.links.append(href[1:])


def xhtml_problems(div: str, contained_ids: Iterable[str] = ()) -> list[str]:
    """What is wrong with a narrative div, as texts that never echo the narrative's own text."""
    if "<!DOCTYPE" in div or "<!ENTITY" in div:
        return ["The XHTML must not contain a DOCTYPE or entity declarations"]
    if "&" in div:
        bad_entity = _ENTITY.search(div)
        if bad_entity is not None:
            return [f"Invalid entity in the XHTML ('&{bad_entity.group(1)}')"]
    scan = _Scan(set(contained_ids))
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartElementHandler = scan.start
    try:
        parser.Parse(div, True)
    except expat.ExpatError:
        return ["The XHTML is not well-formed XML"]
    for target in scan.links:
        if target not in scan.anchors:
            scan.problems.append(f"Hyperlink '#{target}' does not resolve")
    return scan.problems
