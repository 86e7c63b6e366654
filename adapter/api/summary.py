"""Subsetting resources for `_summary` and `_elements` (R4 search.html §3.1.1.5.7-8, and read).

What counts as summary and mandatory comes from the R4 core element table that
tools/gen_conformance_tables.py writes (`adapter/conformance/data/r4_core.json`: `min`, and
`summary` for elements R4 marks isSummary). The table is read once, on first use.

Every subset carries the SUBSETTED tag, as R4 requires of a resource that is not whole. Two choices
of ours, both on the side of clinical safety: `modifierExtension` is kept in every subset (a modifier
changes the meaning of what is kept, and R4 forbids ignoring one), and data types inside a kept
element are kept whole; only backbone elements are pruned to their summary children.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final, Literal

from adapter.errors import InputError
from adapter.fhir.types import JsonObject, JsonValue
from adapter.issue import Issue

SUBSETTED: Final[JsonObject] = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}

SummaryMode = Literal["true", "text", "data", "count", "false"]
SUMMARY_MODES: Final[tuple[SummaryMode, ...]] = ("true", "text", "data", "count", "false")

#: Kept in every subset (see the module docstring for modifierExtension).
_ALWAYS_KEPT: Final = frozenset({"resourceType", "id", "meta", "modifierExtension"})
_INLINE_TYPES: Final = frozenset({"BackboneElement", "Element"})


@dataclass(frozen=True, slots=True)
class CoreElement:
    """One element of a resource definition, as much of it as subsetting and `_revinclude` need."""

    path: str
    min: int
    is_summary: bool
    types: tuple[str, ...]
    targets: tuple[str, ...]
    content_ref: str | None


class CoreElementTable:
    """Resource elements by definition path, with their JSON property names per parent."""

    def __init__(self, elements: dict[str, CoreElement]) -> None:
        self._elements = elements
        self._children: dict[str, dict[str, CoreElement]] = {}

    def element(self, path: str) -> CoreElement | None:
        return self._elements.get(path)

    def children(self, def_path: str) -> dict[str, CoreElement]:
        """Element name (`deceased[x]` stays as is) -> element, for the children of `def_path`."""
        hit = self._children.get(def_path)
        if hit is None:
            prefix = def_path + "."
            hit = {
                path[len(prefix) :]: el
                for path, el in self._elements.items()
                if path.startswith(prefix) and "." not in path[len(prefix) :]
            }
            self._children[def_path] = hit
        return hit

    def child_for_property(self, def_path: str, name: str) -> tuple[str, CoreElement] | None:
        """The element a JSON property (`deceasedBoolean`, `_birthDate`) belongs to, with its name."""
        name = name.removeprefix("_")
        children = self.children(def_path)
        if name in children:
            return name, children[name]
        for child_name, el in children.items():
            if not child_name.endswith("[x]"):
                continue
            base = child_name[:-3]
            rest = name[len(base) :]
            if name.startswith(base) and rest[:1].isupper():
                return child_name, el
        return None

    def is_resource(self, resource_type: str) -> bool:
        return resource_type in self._elements


@cache
def element_table() -> CoreElementTable:
    """The resource elements of the R4 core table (types of kind `resource` only)."""
    text = (resources.files("adapter.conformance") / "data" / "r4_core.json").read_text("utf-8")
    raw = json.loads(text)
    elements: dict[str, CoreElement] = {}
    for entry in raw["types"].values():
        if entry.get("kind") != "resource":
            continue
        for path, row in entry["elements"].items():
            elements[path] = CoreElement(
                path=path,
                min=int(row.get("min", 0)),
                is_summary=bool(row.get("summary", False)),
                types=tuple(row.get("types", ())),
                targets=tuple(row.get("targets", ())),
                content_ref=row.get("ref"),
            )
    return CoreElementTable(elements)


def parse_summary(values: list[str]) -> SummaryMode | None:
    """The one `_summary` value of a request; a repeated or unknown value is a 400."""
    if not values:
        return None
    if len(values) > 1 or values[0] not in SUMMARY_MODES:
        raise InputError(
            [
                Issue(
                    "error",
                    "value",
                    "_summary must be given once, as one of " + ", ".join(SUMMARY_MODES),
                    expression="_summary",
                )
            ]
        )
    return values[0]  # narrowed by the membership test above


def parse_elements(values: list[str]) -> list[str]:
    """The element names of every `_elements` value, in order, without blanks or repeats."""
    names: dict[str, None] = {}
    for value in values:
        names.update(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    return list(names)


def _tagged(resource: JsonObject) -> JsonObject:
    meta = dict(resource.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(
        isinstance(t, dict)
        and t.get("system") == SUBSETTED["system"]
        and t.get("code") == SUBSETTED["code"]
        for t in tags
    ):
        tags.append(dict(SUBSETTED))
    meta["tag"] = tags
    return {**resource, "meta": meta}


def _def_path_of(el: CoreElement) -> str | None:
    """Where the children of `el` are defined, if they are pruned (backbone elements only)."""
    if el.content_ref:
        return el.content_ref
    if el.types and el.types[0] in _INLINE_TYPES:
        return el.path
    return None


def _summary_value(table: CoreElementTable, el: CoreElement, value: JsonValue) -> JsonValue:
    def_path = _def_path_of(el)
    if def_path is None:
        return value
    if isinstance(value, list):
        return [_summary_value(table, el, item) for item in value]
    if isinstance(value, dict):
        return _summary_object(table, def_path, value)
    return value


def _summary_object(table: CoreElementTable, def_path: str, node: JsonObject) -> JsonObject:
    out: JsonObject = {}
    for key, value in node.items():
        if key in _ALWAYS_KEPT:
            out[key] = value
            continue
        found = table.child_for_property(def_path, key)
        if found is None:
            continue  # not in the definition: not summary
        _, el = found
        if el.is_summary or el.min > 0:
            out[key] = value if key.startswith("_") else _summary_value(table, el, value)
    return out


def _keep_top_level(resource: JsonObject, wanted: set[str]) -> JsonObject:
    """Keeps `wanted` element names, mandatory elements and `_ALWAYS_KEPT`, at the top level."""
    table = element_table()
    resource_type = str(resource.get("resourceType"))
    out: JsonObject = {}
    for key, value in resource.items():
        found = table.child_for_property(resource_type, key)
        name = found[0] if found else key.removeprefix("_")
        if (
            key in _ALWAYS_KEPT
            or name in wanted
            or key.removeprefix("_") in wanted
            or (found is not None and found[1].min > 0)
        ):
            out[key] = value
    return out


def summarise(resource: JsonObject, mode: SummaryMode | None) -> JsonObject:
    """The resource as `_summary=mode` asks (`count` applies to a Bundle, not here). A copy if
    subsetted; the same object for `false` and None."""
    if mode in (None, "false", "count"):
        return resource
    resource_type = str(resource.get("resourceType"))
    table = element_table()
    if not table.is_resource(resource_type):
        return resource
    if mode == "data":
        subset = {k: v for k, v in resource.items() if k not in ("text", "_text")}
    elif mode == "text":
        subset = _keep_top_level(resource, {"text"})
    else:
        subset = _summary_object(table, resource_type, resource)
    return _tagged(subset)


def unknown_elements(resource_type: str, names: list[str]) -> list[str]:
    """The `_elements` names that are not top-level elements of the type (reported, then ignored)."""
    table = element_table()
    known = {n.removesuffix("[x]") for n in table.children(resource_type)}
    return [
        n
        for n in names
        if n.removeprefix(f"{resource_type}.") not in known
        and table.child_for_property(resource_type, n.removeprefix(f"{resource_type}.")) is None
    ]


def select_elements(resource: JsonObject, names: list[str]) -> JsonObject:
    """`_elements`: the named top-level elements plus the mandatory ones, id, meta, tagged."""
    resource_type = str(resource.get("resourceType"))
    if not element_table().is_resource(resource_type):
        return resource
    wanted = {n.removeprefix(f"{resource_type}.") for n in names}
    wanted |= {n.removesuffix("[x]") for n in wanted}
    table = element_table()
    expanded = set(wanted)
    for n in wanted:  # `deceased` names `deceased[x]`
        if f"{n}[x]" in table.children(resource_type):
            expanded.add(f"{n}[x]")
    return _tagged(_keep_top_level(resource, expanded))


__all__ = [
    "SUBSETTED",
    "SUMMARY_MODES",
    "CoreElement",
    "CoreElementTable",
    "SummaryMode",
    "element_table",
    "parse_elements",
    "parse_summary",
    "select_elements",
    "summarise",
    "unknown_elements",
]
