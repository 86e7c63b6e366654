"""Generates adapter/conformance/data/r4_core.json from the official R4 definitions.

Source: the npm package hl7.fhir.r4.examples@4.0.1 (../shared/corpora/hl7.fhir.r4.examples-4.0.1.tgz),
which carries the core StructureDefinitions, ValueSets and CodeSystems. The output is a compact table,
not a copy of the spec: per base type, each element's cardinality, types, required binding, reference
target types and error-severity invariants (and, for resources, `summary` where R4 marks it
isSummary, for `_summary=true`); the primitive-type regexes; and the code lists of the value sets
that those required bindings name.

    .venv/bin/python tools/gen_conformance_tables.py [path/to/hl7.fhir.r4.examples-4.0.1.tgz]
"""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TGZ = ROOT.parent / "shared" / "corpora" / "hl7.fhir.r4.examples-4.0.1.tgz"
OUT = ROOT / "adapter" / "conformance" / "data" / "r4_core.json"
TERMINOLOGY_OUT = ROOT / "adapter" / "conformance" / "data" / "r4_terminology.json"
PACKAGE = "hl7.fhir.r4.examples"
VERSION = "4.0.1"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
#: Handled natively by the engine (cheaper than FHIRPath on every element).
NATIVE_CONSTRAINTS = {"ele-1", "ext-1"}


def _load(tgz: Path) -> dict[str, dict[str, Any]]:
    wanted = ("StructureDefinition-", "ValueSet-", "CodeSystem-")
    out: dict[str, dict[str, Any]] = {}
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if not name.startswith(wanted) or not name.endswith(".json"):
                continue
            fh = tar.extractfile(member)
            if fh is not None:
                out[name] = json.loads(fh.read())
    return out


def _type_code(t: dict[str, Any]) -> str:
    for ext in t.get("extension", []):
        if ext.get("url") == FHIR_TYPE_EXT:
            return str(ext["valueUrl"])
    return str(t["code"])


def _codes(concepts: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for c in concepts:
        out.append(c["code"])
        out.extend(_codes(c.get("concept", [])))
    return out


def _expand(url: str, vs_by_url: dict[str, Any], cs_by_url: dict[str, Any], seen: set[str]) -> Any:
    """{system: [codes] | None}; None means "any code of that system" (not expandable offline)."""
    vs = vs_by_url.get(url)
    if vs is None or url in seen:
        return None
    seen = seen | {url}
    result: dict[str, Any] = {}
    for inc in vs.get("compose", {}).get("include", []):
        for imported in inc.get("valueSet", []):
            sub = _expand(imported.split("|")[0], vs_by_url, cs_by_url, seen)
            if sub is None:
                return None
            for system, codes in sub.items():
                _merge(result, system, codes)
        system = inc.get("system")
        if not system:
            continue
        if inc.get("concept"):
            _merge(result, system, [c["code"] for c in inc["concept"]])
        elif inc.get("filter"):
            cs = cs_by_url.get(system)
            flt = inc["filter"]
            if (
                cs
                and cs.get("content") == "complete"
                and all(
                    f.get("op") in ("is-a", "descendent-of") and f.get("property") == "concept"
                    for f in flt
                )
            ):
                _merge(result, system, _filter_is_a(cs, flt))
            else:
                _merge(result, system, None)
        else:
            cs = cs_by_url.get(system)
            if cs and cs.get("content") == "complete":
                _merge(result, system, _codes(cs.get("concept", [])))
            else:
                _merge(result, system, None)
    if vs.get("compose", {}).get("exclude"):
        return None
    return result or None


def _filter_is_a(cs: dict[str, Any], flt: list[dict[str, Any]]) -> list[str]:
    def find(concepts: list[dict[str, Any]], code: str) -> dict[str, Any] | None:
        for c in concepts:
            if c["code"] == code:
                return c
            hit = find(c.get("concept", []), code)
            if hit:
                return hit
        return None

    out: list[str] = []
    for f in flt:
        root = find(cs.get("concept", []), f["value"])
        if root:
            if f["op"] == "is-a":
                out.append(root["code"])
            out.extend(_codes(root.get("concept", [])))
    return out


def _merge(result: dict[str, Any], system: str, codes: list[str] | None) -> None:
    if codes is None or result.get(system, []) is None:
        result[system] = None
        return
    result[system] = sorted(set(result.get(system, [])) | set(codes))


def build(tgz: Path) -> dict[str, Any]:
    files = _load(tgz)
    vs_by_url = {d["url"]: d for n, d in files.items() if n.startswith("ValueSet-")}
    cs_by_url = {d["url"]: d for n, d in files.items() if n.startswith("CodeSystem-")}
    types: dict[str, Any] = {}
    constraints: dict[str, Any] = {}
    regexes: dict[str, str] = {}
    bound: set[str] = set()
    for name, sd in sorted(files.items()):
        if not name.startswith("StructureDefinition-") or sd.get("derivation") != "specialization":
            continue
        if sd.get("kind") not in ("resource", "complex-type", "primitive-type"):
            continue
        tname = sd["type"]
        if sd["kind"] == "primitive-type":
            for e in sd["snapshot"]["element"]:
                if e["path"] == f"{tname}.value":
                    for t in e.get("type", []):
                        for ext in t.get("extension", []):
                            if ext.get("url") == REGEX_EXT:
                                regexes[tname] = ext["valueString"]
            continue
        elements: dict[str, Any] = {}
        for e in sd["snapshot"]["element"]:
            row: dict[str, Any] = {"min": e.get("min", 0), "max": e.get("max", "*")}
            if e.get("type"):
                row["types"] = [_type_code(t) for t in e["type"]]
                targets = sorted(
                    {
                        p.rsplit("/", 1)[-1]
                        for t in e["type"]
                        for p in t.get("targetProfile", [])
                        if t["code"] == "Reference"
                    }
                )
                if targets:
                    row["targets"] = targets
            if e.get("contentReference"):
                row["ref"] = e["contentReference"].lstrip("#")
            if e.get("isSummary") and sd["kind"] == "resource":
                row["summary"] = True
            b = e.get("binding")
            if b and b.get("strength") == "required" and b.get("valueSet"):
                url = b["valueSet"].split("|")[0]
                row["binding"] = url
                bound.add(url)
            keys = []
            for c in e.get("constraint", []):
                if c.get("severity") != "error" or c["key"] in NATIVE_CONSTRAINTS:
                    continue
                if not c.get("expression"):
                    continue
                key = c["key"]
                have = constraints.get(key)
                if have is not None and have["expression"] != c["expression"]:
                    key = f"{key}@{tname}"
                constraints[key] = {"expression": c["expression"], "human": c.get("human", "")}
                if key not in keys:
                    keys.append(key)
            if keys:
                row["constraints"] = keys
            elements[e["path"]] = row
        types[tname] = {"kind": sd["kind"], "elements": elements}
    valuesets = {url: _expand(url, vs_by_url, cs_by_url, set()) for url in sorted(bound)}
    return {
        "source": {
            "package": PACKAGE,
            "version": VERSION,
            "generator": "tools/gen_conformance_tables.py",
        },
        "primitive_regex": regexes,
        "constraints": constraints,
        "valuesets": valuesets,
        "types": types,
    }


def _concepts(concepts: list[dict[str, Any]]) -> dict[str, list[str]]:
    """code -> [display, designation values...] over the whole hierarchy."""
    out: dict[str, list[str]] = {}
    for c in concepts:
        names = [c["display"]] if c.get("display") else []
        names += [d["value"] for d in c.get("designation", []) if d.get("value")]
        out[c["code"]] = names
        out.update(_concepts(c.get("concept", [])))
    return out


def _extension_row(sd: dict[str, Any]) -> dict[str, Any]:
    """Context, allowed value types, modifier flag and declared sub-extension URLs."""
    row: dict[str, Any] = {
        "context": [
            [c.get("type", "element"), c.get("expression", "")] for c in sd.get("context", [])
        ]
    }
    subs: list[str] = []
    for e in sd.get("snapshot", {}).get("element", []):
        if e["path"] == "Extension" and e.get("isModifier"):
            row["modifier"] = True
        if e["path"] == "Extension.value[x]":
            row["types"] = [_type_code(t) for t in e.get("type", [])] if e.get("max") != "0" else []
        if e["path"] == "Extension.extension.url" and e.get("fixedUri"):
            subs.append(e["fixedUri"])
    if subs:
        row["subs"] = sorted(set(subs))
    return row


def _enumerated(vs: dict[str, Any]) -> dict[str, list[str]] | None:
    """{system: codes} of a value set made only of enumerated concepts; None otherwise."""
    compose = vs.get("compose", {})
    includes = compose.get("include", [])
    if not includes or compose.get("exclude"):
        return None
    out: dict[str, list[str]] = {}
    for inc in includes:
        if (
            not inc.get("system")
            or not inc.get("concept")
            or inc.get("filter")
            or inc.get("valueSet")
        ):
            return None
        out.setdefault(inc["system"], []).extend(c["code"] for c in inc["concept"])
    return out


def _value_set_systems(url: str, value_sets: dict[str, Any], seen: set[str]) -> list[str] | None:
    """The code systems a value set can draw codes from; None if an import cannot be resolved."""
    vs = value_sets.get(url)
    if vs is None or url in seen:
        return None
    out: set[str] = set()
    for inc in vs.get("compose", {}).get("include", []):
        if inc.get("system"):
            out.add(inc["system"])
        for imported in inc.get("valueSet", []):
            sub = _value_set_systems(imported.split("|")[0], value_sets, seen | {url})
            if sub is None:
                return None
            out.update(sub)
    return sorted(out) if out else None


def build_terminology(tgz: Path) -> dict[str, Any]:
    """Complete code systems (code -> displays), canonical URL -> type, extension definitions."""
    canonical: dict[str, str] = {}
    value_sets: dict[str, Any] = {}
    search_params: dict[str, Any] = {}
    code_systems: dict[str, Any] = {}
    extensions: dict[str, Any] = {}
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if not name.endswith(".json") or name == "package.json":
                continue
            fh = tar.extractfile(member)
            if fh is None:
                continue
            res = json.loads(fh.read())
            url = res.get("url")
            if not isinstance(url, str) or "resourceType" not in res:
                continue
            rt = res["resourceType"]
            if rt in (
                "CodeSystem",
                "ValueSet",
                "StructureDefinition",
                "Questionnaire",
                "SearchParameter",
                "OperationDefinition",
                "CapabilityStatement",
                "ConceptMap",
                "NamingSystem",
                "StructureMap",
                "ImplementationGuide",
                "CompartmentDefinition",
                "MessageDefinition",
                "GraphDefinition",
                "PlanDefinition",
                "ActivityDefinition",
                "Library",
                "Measure",
            ):
                canonical[url] = rt
            if rt == "ValueSet":
                value_sets[url] = res
            if rt == "SearchParameter":
                search_params[url] = {"type": res.get("type"), "base": res.get("base", [])}
            if rt == "CodeSystem" and res.get("content") == "complete":
                code_systems[url] = {
                    "case_sensitive": bool(res.get("caseSensitive", False)),
                    "concepts": _concepts(res.get("concept", [])),
                }
            if (
                rt == "StructureDefinition"
                and res.get("type") == "Extension"
                and res.get("derivation") == "constraint"
            ):
                extensions[url] = _extension_row(res)
    return {
        "source": {
            "package": PACKAGE,
            "version": VERSION,
            "generator": "tools/gen_conformance_tables.py",
        },
        "canonical_types": canonical,
        "search_params": search_params,
        "enumerated_value_sets": {
            url: codes
            for url in sorted(value_sets)
            if (codes := _enumerated(value_sets[url])) is not None
        },
        "value_set_systems": {
            url: systems
            for url in sorted(value_sets)
            if (systems := _value_set_systems(url, value_sets, set())) is not None
        },
        "code_systems": code_systems,
        "extensions": extensions,
    }


_GENERIC_CONTEXTS = {
    "Element",
    "Base",
    "Resource",
    "DomainResource",
    "BackboneElement",
    "CanonicalResource",
    "MetadataResource",
    "Quantity",
}


def observed_contexts(tgz: Path) -> dict[str, list[str]]:
    """Where the R4 package's own resources use core extensions outside their declared context.

    R4 declares some contexts more narrowly than its own artefacts use them (normative-version on
    ValueSet, regex on ElementDefinition.type, ...); later versions of those extensions declare the
    wider context and the reference validator accepts these uses. We take the package's own usage
    as evidence and allow exactly those element paths. Runs the validator over the package, so the
    terminology table must already be written.
    """
    sys.path.insert(0, str(ROOT))
    from adapter.conformance import extensions, terminology
    from adapter.conformance.validator import ConformanceValidator
    from adapter.context import ValidationContext

    terminology.core_artefacts.cache_clear()
    seen: dict[str, set[str]] = {}
    real = extensions._context_allows

    def record(definition: Any, names: frozenset[str], parent: str | None) -> bool:
        if not real(definition, names, parent):
            seen.setdefault(definition.url, set()).update(names - _GENERIC_CONTEXTS)
        return True

    extensions._context_allows = record  # type: ignore[assignment]  # generator-only probe
    try:
        validator = ConformanceValidator(profiles_dir=ROOT / "profiles")
        with tarfile.open(tgz) as tar:
            for member in tar.getmembers():
                fh = tar.extractfile(member)
                if fh is None or not member.name.endswith(".json"):
                    continue
                res = json.loads(fh.read())
                if isinstance(res, dict) and "resourceType" in res:
                    validator.validate(res, ValidationContext(mode="validate"))
    finally:
        extensions._context_allows = real
    return {url: sorted(paths) for url, paths in sorted(seen.items())}


def main() -> None:
    tgz = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_TGZ
    terminology = build_terminology(tgz)
    TERMINOLOGY_OUT.write_text(
        json.dumps(terminology, separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8"
    )
    for url, paths in observed_contexts(tgz).items():
        if url in terminology["extensions"]:
            terminology["extensions"][url]["context"] += [["element", p] for p in paths]
    TERMINOLOGY_OUT.write_text(
        json.dumps(terminology, separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8"
    )
    print(  # noqa: T201
        f"{TERMINOLOGY_OUT}: {len(terminology['code_systems'])} complete code systems, "
        f"{len(terminology['extensions'])} extensions, {len(terminology['canonical_types'])} canonicals"
    )
    table = build(tgz)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(table, separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8"
    )
    n_vs = sum(1 for v in table["valuesets"].values() if v is not None)
    print(  # noqa: T201
        f"{OUT}: {len(table['types'])} types, {len(table['constraints'])} invariants, "
        f"{n_vs}/{len(table['valuesets'])} required value sets expanded"
    )


if __name__ == "__main__":
    main()
