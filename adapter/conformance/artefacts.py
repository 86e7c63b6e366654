"""Rules for conformance resources themselves: CodeSystem properties and supplements, SearchParameter
derivation and composite components, CapabilityStatement search parameters.

R4 codesystem.html: a supplement (`supplements` set) has content `supplement`; each property code
is defined once, and a concept's property value has the type its definition declares.
R4 searchparameter.html: a SearchParameter derived from another (`derivedFrom`) keeps its type and
its base types. R4 capabilitystatement.html: a searchParam that names its definition has that
definition's type. Core SearchParameters come from the tables (terminology.py).
"""

from __future__ import annotations

import re
from typing import Final

from adapter.conformance.definitions import core_definitions
from adapter.conformance.terminology import KnownArtefacts
from adapter.fhir.types import JsonObject
from adapter.issue import Issue

_PROPERTY_VALUE: Final[dict[str, str]] = {
    "code": "valueCode",
    "Coding": "valueCoding",
    "string": "valueString",
    "integer": "valueInteger",
    "boolean": "valueBoolean",
    "dateTime": "valueDateTime",
    "decimal": "valueDecimal",
}


def artefact_issues(resource: JsonObject, rt: str, known: KnownArtefacts) -> list[Issue]:
    if rt == "CodeSystem":
        return _code_system(resource)
    if rt == "SearchParameter":
        return _search_parameter(resource, known)
    if rt == "CapabilityStatement":
        return _capability_statement(resource, known)
    if rt == "StructureDefinition":
        return (
            _differential_paths(resource)
            + _derived_extension_url(resource, known)
            + _extension_discriminators(resource)
        )
    return []


_DISCRIMINATOR_HEAD: Final = re.compile(r"^([A-Za-z_$][A-Za-z0-9_]*)(\[x\])?(\()?")
#: What a discriminator on a list of extensions may start with (the elements of Extension).
_EXTENSION_ELEMENTS: Final = frozenset({"$this", "id", "extension", "url"})


def _extension_discriminators(sd: JsonObject) -> list[Issue]:
    """R4 profiling.html#discriminator: a discriminator path is evaluated on the sliced element,
    so slicing a list of extensions can only discriminate on an element of Extension (url, value,
    extension, id), a function, or $this."""
    issues: list[Issue] = []
    for i, e in enumerate((sd.get("differential") or {}).get("element") or []):
        if not isinstance(e, dict) or not isinstance(e.get("slicing"), dict):
            continue
        path = e.get("path")
        if not isinstance(path, str) or path.rsplit(".", 1)[-1] not in (
            "extension",
            "modifierExtension",
        ):
            continue
        for j, d in enumerate(e["slicing"].get("discriminator") or []):
            dpath = d.get("path") if isinstance(d, dict) else None
            head = _DISCRIMINATOR_HEAD.match(dpath) if isinstance(dpath, str) else None
            if head is None or head.group(3) is not None:
                continue  # not a plain element name (a function such as resolve(), or unparsed)
            name = head.group(1)
            if name in _EXTENSION_ELEMENTS or name.startswith("value"):
                continue
            issues.append(
                Issue(
                    "error",
                    "structure",
                    f"The discriminator path '{dpath}' does not appear to be valid for the "
                    f"element that is being sliced '{path}'",
                    f"StructureDefinition.differential.element[{i}].slicing.discriminator[{j}]",
                )
            )
    return issues


def _derived_extension_url(sd: JsonObject, known: KnownArtefacts) -> list[Issue]:
    """R4 profiling.html: a constraint may not change a value its base fixes; for an extension
    derived from another, Extension.url stays fixed to the base's url."""
    base_url = sd.get("baseDefinition")
    if sd.get("type") != "Extension" or not isinstance(base_url, str) or base_url == sd.get("url"):
        return []
    base = known.extension(base_url.split("|", 1)[0])
    if base is None or base.fixed_url is None:
        return []
    issues: list[Issue] = []
    for i, e in enumerate((sd.get("differential") or {}).get("element") or []):
        if not isinstance(e, dict) or e.get("path") != "Extension.url":
            continue
        fixed = e.get("fixedUri")
        if isinstance(fixed, str) and fixed != base.fixed_url:
            issues.append(
                Issue(
                    "error",
                    "business-rule",
                    f"Extension.url is fixed to '{fixed}' but its base '{base_url}' fixes it "
                    f"to '{base.fixed_url}'; a derived extension cannot change the fixed url",
                    f"StructureDefinition.differential.element[{i}].fixedUri",
                )
            )
    return issues


def _code_system(cs: JsonObject) -> list[Issue]:
    issues: list[Issue] = []
    if cs.get("supplements") and cs.get("content") != "supplement":
        issues.append(
            Issue(
                "error",
                "business-rule",
                "A CodeSystem that supplements another SHALL have content 'supplement'",
                "CodeSystem.content",
            )
        )
    declared: dict[str, str] = {}
    seen_uris: set[str] = set()
    for i, prop in enumerate(cs.get("property") or []):
        if not isinstance(prop, dict):
            continue
        code, uri = prop.get("code"), prop.get("uri")
        if isinstance(code, str) and code in declared:
            issues.append(
                Issue(
                    "error",
                    "business-rule",
                    f"A property is already defined with the code '{code}'",
                    f"CodeSystem.property[{i}]",
                )
            )
        elif isinstance(code, str):
            declared[code] = str(prop.get("type"))
        if isinstance(uri, str) and uri in seen_uris:
            issues.append(
                Issue(
                    "error",
                    "business-rule",
                    f"A property is already defined with the URI '{uri}'",
                    f"CodeSystem.property[{i}]",
                )
            )
        elif isinstance(uri, str):
            seen_uris.add(uri)
    _concept_properties(cs.get("concept"), "CodeSystem", declared, issues)
    return issues


def _concept_properties(
    concepts: object, path: str, declared: dict[str, str], issues: list[Issue]
) -> None:
    if not isinstance(concepts, list):
        return
    for i, concept in enumerate(concepts):
        if not isinstance(concept, dict):
            continue
        where = f"{path}.concept[{i}]"
        for j, prop in enumerate(concept.get("property") or []):
            if not isinstance(prop, dict):
                continue
            want = _PROPERTY_VALUE.get(declared.get(str(prop.get("code")), ""))
            got = next((k for k in prop if k.startswith("value")), None)
            if want is not None and got is not None and got != want:
                issues.append(
                    Issue(
                        "error",
                        "business-rule",
                        f"The property '{prop.get('code')}' has a value of type {got[5:]}, but "
                        f"is defined with the type {want[5:]}",
                        f"{where}.property[{j}]",
                    )
                )
        _concept_properties(concept.get("concept"), where, declared, issues)


def _search_parameter(sp: JsonObject, known: KnownArtefacts) -> list[Issue]:
    issues = _composite_components(sp)
    parent_url = sp.get("derivedFrom")
    parent = (
        known.search_params.get(parent_url.split("|", 1)[0])
        if isinstance(parent_url, str)
        else None
    )
    if parent is None:
        return issues
    parent_type, parent_base = parent
    if isinstance(sp.get("type"), str) and sp["type"] != parent_type:
        issues.append(
            Issue(
                "error",
                "business-rule",
                f"The type {sp['type']} differs from the type {parent_type} of the SearchParameter "
                f"it is derived from ({parent_url})",
                "SearchParameter.type",
            )
        )
    for i, base in enumerate(sp.get("base") or []):
        if isinstance(base, str) and parent_base and base not in parent_base:
            issues.append(
                Issue(
                    "error",
                    "business-rule",
                    f"The resource type {base} is not a base of the SearchParameter it is derived "
                    f"from ({parent_url})",
                    f"SearchParameter.base[{i}]",
                )
            )
    return issues


def _composite_components(sp: JsonObject) -> list[Issue]:
    """R4 searchparameter.html: a composite parameter combines two or more component parameters."""
    if sp.get("type") != "composite":
        return []
    components = sp.get("component")
    if isinstance(components, list) and len(components) >= 2:
        return []
    return [
        Issue(
            "error",
            "business-rule",
            "A SearchParameter of type 'composite' must define two or more components",
            "SearchParameter.component" if components else "SearchParameter",
        )
    ]


def _differential_paths(sd: JsonObject) -> list[Issue]:
    """R4 elementdefinition.html: a constraint's differential names elements of the type it
    constrains (`Observation.value[x]` or a type-specific `Observation.valueQuantity`)."""
    type_name = sd.get("type")
    differential = sd.get("differential")
    defs = core_definitions()
    if (
        sd.get("derivation") != "constraint"
        or not isinstance(type_name, str)
        or type_name not in defs.kinds
        or not isinstance(differential, dict)
    ):
        return []
    issues: list[Issue] = []
    for i, el in enumerate(differential.get("element") or []):
        path = el.get("path") if isinstance(el, dict) else None
        if not isinstance(path, str):
            continue
        segments = path.split(".")
        ok = segments[0] == type_name
        def_path = type_name
        for seg in segments[1:] if ok else ():
            children = defs.children(def_path)
            child = children.get(seg)
            if (
                child is None
                and seg.endswith("[x]")
                and any(c.name == seg[:-3] for c in children.values())
            ):
                break  # a choice: what lies below depends on the type, not judged here
            if child is None:
                ok = False
                break
            def_path = child.def_path
        if not ok:
            issues.append(
                Issue(
                    "error",
                    "structure",
                    f"The differential path '{path}' is not an element of {type_name}",
                    f"StructureDefinition.differential.element[{i}].path",
                )
            )
    return issues


def _capability_statement(cs: JsonObject, known: KnownArtefacts) -> list[Issue]:
    issues: list[Issue] = []
    for r, rest in enumerate(cs.get("rest") or []):
        if not isinstance(rest, dict):
            continue
        for s, res in enumerate(rest.get("resource") or []):
            if not isinstance(res, dict):
                continue
            for p, param in enumerate(res.get("searchParam") or []):
                if not isinstance(param, dict) or not isinstance(param.get("definition"), str):
                    continue
                found = known.search_params.get(param["definition"].split("|", 1)[0])
                if found is not None and param.get("type") not in (None, found[0]):
                    issues.append(
                        Issue(
                            "error",
                            "business-rule",
                            f"The searchParam type {param.get('type')} differs from the type "
                            f"{found[0]} of its definition",
                            f"CapabilityStatement.rest[{r}].resource[{s}].searchParam[{p}].type",
                        )
                    )
    return issues
