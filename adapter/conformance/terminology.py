"""Code existence and display names in code systems we hold, and the artefacts behind canonicals.

The tables (data/r4_terminology.json) come from hl7.fhir.r4.examples 4.0.1 through
tools/gen_conformance_tables.py: every CodeSystem with content `complete` (code -> display and
designations), the resource type of every canonical URL in the package, and the 393 extension
definitions (context, value types, modifier flag). A CodeSystem with content `complete` lists all
its codes, so a code it does not list is an error (R4 codesystem.html#content); a CodeSystem we do
not hold (SNOMED CT, LOINC, ISO 3166, ...) is never judged: there is no terminology server.
Supporting artefacts of one call (e.g. a CodeSystem shipped with a $validate request) are added
through `KnownArtefacts.with_supporting`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Final

from adapter.conformance.definitions import DATA_DIR
from adapter.fhir.types import JsonObject, JsonValue

TERMINOLOGY_TABLE: Final = DATA_DIR / "r4_terminology.json"


@dataclass(frozen=True, slots=True)
class CodeSystemTable:
    url: str
    case_sensitive: bool
    #: code -> display and designations; keys lower-cased when not case sensitive.
    concepts: Mapping[str, tuple[str, ...]]
    is_supplement: bool = False
    #: property code -> type (CodeSystem.property), for filters on properties
    property_types: Mapping[str, str] = field(default_factory=dict)

    def names(self, code: str) -> tuple[str, ...] | None:
        """The display names of `code`, or None if the code is not in the system."""
        return self.concepts.get(code if self.case_sensitive else code.lower())


@dataclass(frozen=True, slots=True)
class ExtensionDef:
    url: str
    #: (context type, expression): ("element", "Patient"), ("extension", url), ("fhirpath", ...).
    contexts: tuple[tuple[str, str], ...]
    #: Allowed value[x] type codes; empty for a complex extension, None when not constrained.
    value_types: tuple[str, ...] | None
    is_modifier: bool
    sub_extensions: tuple[str, ...] = ()
    #: The value fixed on Extension.url, when the definition fixes it.
    fixed_url: str | None = None


def _normalise(name: str) -> str:
    return " ".join(name.split()).lower()


def _code_system(
    url: str, case_sensitive: bool, concepts: Mapping[str, list[str]]
) -> CodeSystemTable:
    return CodeSystemTable(
        url,
        case_sensitive,
        {
            (k if case_sensitive else k.lower()): tuple(_normalise(n) for n in v)
            for k, v in concepts.items()
        },
    )


def _concepts(items: JsonValue) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in items if isinstance(items, list) else []:
        if not isinstance(c, dict) or not isinstance(c.get("code"), str):
            continue
        names = [c["display"]] if isinstance(c.get("display"), str) else []
        names += [
            d["value"]
            for d in c.get("designation") or []
            if isinstance(d, dict) and isinstance(d.get("value"), str)
        ]
        out[c["code"]] = names
        out.update(_concepts(c.get("concept")))
    return out


def extension_from_structure_definition(sd: JsonObject) -> ExtensionDef | None:
    """An ExtensionDef from a StructureDefinition with a snapshot or a differential."""
    url = sd.get("url")
    if sd.get("type") != "Extension" or not isinstance(url, str):
        return None
    contexts = tuple(
        (str(c.get("type", "element")), str(c.get("expression", "")))
        for c in sd.get("context") or []
        if isinstance(c, dict)
    )
    elements = (
        (sd.get("snapshot") or {}).get("element")
        or (sd.get("differential") or {}).get("element")
        or []
    )
    value_types: tuple[str, ...] | None = None
    modifier = False
    subs: list[str] = []
    fixed_url: str | None = None
    for e in elements:
        if not isinstance(e, dict):
            continue
        if e.get("path") == "Extension" and e.get("isModifier") is True:
            modifier = True
        if e.get("path") == "Extension.value[x]":
            value_types = (
                tuple(str(t.get("code")) for t in e.get("type") or [] if isinstance(t, dict))
                if e.get("max") != "0"
                else ()
            )
        if e.get("path") == "Extension.extension.url" and isinstance(e.get("fixedUri"), str):
            subs.append(e["fixedUri"])
        if e.get("path") == "Extension.url" and isinstance(e.get("fixedUri"), str):
            fixed_url = e["fixedUri"]
    return ExtensionDef(url, contexts, value_types, modifier, tuple(subs), fixed_url)


@dataclass(frozen=True, slots=True)
class KnownArtefacts:
    """Code systems, extension definitions and canonical types known for one validation call."""

    code_systems: Mapping[str, CodeSystemTable]
    extensions: Mapping[str, ExtensionDef]
    canonical_types: Mapping[str, str]
    #: value set -> the code systems it draws from (compose.include.system, imports resolved).
    value_set_systems: Mapping[str, frozenset[str]]
    #: value sets made only of enumerated concepts: url -> {system: codes}
    enumerated_value_sets: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)
    #: core SearchParameter url -> (type, base resource types)
    search_params: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    #: Per-call additions (supporting artefacts); looked up first.
    extra_code_systems: dict[str, CodeSystemTable] = field(default_factory=dict)
    extra_extensions: dict[str, ExtensionDef] = field(default_factory=dict)
    extra_canonicals: dict[str, str] = field(default_factory=dict)
    extra_value_set_systems: dict[str, frozenset[str]] = field(default_factory=dict)

    def code_system(self, url: str) -> CodeSystemTable | None:
        return self.extra_code_systems.get(url) or self.code_systems.get(url)

    def extension(self, url: str) -> ExtensionDef | None:
        return self.extra_extensions.get(url) or self.extensions.get(url)

    def canonical_type(self, url: str) -> str | None:
        key = url.split("|", 1)[0]
        return self.extra_canonicals.get(key) or self.canonical_types.get(key)

    def systems_of_value_set(self, url: str) -> frozenset[str] | None:
        key = url.split("|", 1)[0]
        return self.extra_value_set_systems.get(key) or self.value_set_systems.get(key)

    def with_supporting(self, artefacts: Iterable[JsonValue]) -> KnownArtefacts:
        """A copy that also knows these artefacts (CodeSystems, extension definitions, ...)."""
        out = KnownArtefacts(
            self.code_systems,
            self.extensions,
            self.canonical_types,
            self.value_set_systems,
            self.enumerated_value_sets,
            self.search_params,
            dict(self.extra_code_systems),
            dict(self.extra_extensions),
            dict(self.extra_canonicals),
            dict(self.extra_value_set_systems),
        )
        for res in artefacts:
            if not isinstance(res, dict) or not isinstance(res.get("url"), str):
                continue
            url = res["url"].split("|", 1)[0]
            rt = res.get("resourceType")
            if isinstance(rt, str):
                out.extra_canonicals[url] = rt
            if rt == "CodeSystem" and res.get("content") in ("complete", "supplement"):
                table = _code_system(
                    url, bool(res.get("caseSensitive", False)), _concepts(res.get("concept"))
                )
                props = {
                    str(p.get("code")): str(p.get("type"))
                    for p in res.get("property") or []
                    if isinstance(p, dict)
                }
                is_supplement = res.get("content") == "supplement" or bool(res.get("supplements"))
                table = CodeSystemTable(
                    url, table.case_sensitive, table.concepts, is_supplement, props
                )
                out.extra_code_systems[url] = table
            elif rt == "ValueSet":
                includes = (res.get("compose") or {}).get("include") or []
                systems = [i.get("system") for i in includes if isinstance(i, dict)]
                if (
                    systems
                    and all(isinstance(x, str) for x in systems)
                    and not any(isinstance(i, dict) and i.get("valueSet") for i in includes)
                ):
                    out.extra_value_set_systems[url] = frozenset(str(x) for x in systems)
            elif rt == "StructureDefinition":
                ext = extension_from_structure_definition(res)
                if ext is not None:
                    out.extra_extensions[url] = ext
        return out


@cache
def core_artefacts() -> KnownArtefacts:
    """The process-wide tables (read once)."""
    raw = json.loads(TERMINOLOGY_TABLE.read_text(encoding="utf-8"))
    code_systems = {
        url: _code_system(url, row["case_sensitive"], row["concepts"])
        for url, row in raw["code_systems"].items()
    }
    extensions = {
        url: ExtensionDef(
            url,
            tuple((c[0], c[1]) for c in row["context"]),
            tuple(row["types"]) if "types" in row else None,
            bool(row.get("modifier", False)),
            tuple(row.get("subs", ())),
        )
        for url, row in raw["extensions"].items()
    }
    value_set_systems = {
        url: frozenset(systems) for url, systems in raw["value_set_systems"].items()
    }
    search_params = {
        url: (str(row["type"]), tuple(row["base"])) for url, row in raw["search_params"].items()
    }
    enumerated = {
        url: {system: frozenset(codes) for system, codes in row.items()}
        for url, row in raw["enumerated_value_sets"].items()
    }
    return KnownArtefacts(
        code_systems,
        extensions,
        raw["canonical_types"],
        value_set_systems,
        enumerated_value_sets=enumerated,
        search_params=search_params,
    )


def _sctid_ok(code: str) -> bool:
    from adapter.conformance.valuesets import sctid_is_well_formed  # cycle

    return sctid_is_well_formed(code)


def coding_problem(known: KnownArtefacts, coding: JsonObject) -> tuple[str, str, str] | None:
    """(issue code, text, sub-path) if the Coding's code or display is wrong in a held system."""
    system, code = coding.get("system"), coding.get("code")
    if not isinstance(system, str) or not isinstance(code, str):
        return None
    cs = known.code_system(system)
    if cs is None:
        if system == "http://snomed.info/sct" and not _sctid_ok(code):
            return ("code-invalid", f"'{code}' is not a valid SNOMED CT identifier", "code")
        return None
    if cs.is_supplement:
        return (
            "business-rule",
            f"CodeSystem {system} is a supplement, so can't be used as a value in Coding.system",
            "system",
        )
    names = cs.names(code)
    if names is None:
        return ("code-invalid", f"Unknown code '{code}' in the CodeSystem '{system}'", "code")
    display = coding.get("display")
    if isinstance(display, str) and names and _normalise(display) not in names:
        return ("invalid", f"Wrong display name for {system}#{code}", "display")
    return None
