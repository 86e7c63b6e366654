"""Extensions against their definitions: known URL, context of use, value type, modifier flag.

Definitions come from the core package (393 extension StructureDefinitions, see terminology.py),
our profiles/ folder and the supporting artefacts of a call. R4 extensibility.html: an extension
SHALL be used only where its context allows, with a value of an allowed type, and an extension
that is a modifier SHALL go in `modifierExtension` (and only there).

An extension whose definition we cannot find is judged by the `unknown_extensions` policy. An
unknown URL under our own canonical base is always an error (we hold all our definitions). "allow"
(the default) accepts other unknown URLs; "error" rejects them, as the Java reference validator does
by default, except where HL7 publishes extensions in packages we do not hold and the reference
validator loads: the core namespace (hl7.fhir.uv.extensions, e.g. organization-brand in R4), the
tools namespace (hl7.fhir.uv.tools) and cross-version extensions (`http://hl7.org/fhir/5.0/
StructureDefinition/extension-<path>`, FHIR versions.html#extensions). Sub-extensions of a complex
extension are judged by their parent.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from adapter.conformance.terminology import ExtensionDef, KnownArtefacts
from adapter.fhir.types import JsonObject, JsonValue
from adapter.issue import Issue

UnknownExtensionPolicy = Literal["allow", "error"]
CORE_EXTENSION_BASE: Final = "http://hl7.org/fhir/StructureDefinition/"
#: HL7 namespaces whose extensions live in packages we do not hold (see the module docstring).
_HL7_PACKAGED: Final = re.compile(
    r"^http://hl7\.org/fhir/(?:StructureDefinition/|tools/StructureDefinition/"
    r"|\d\.\d/StructureDefinition/extension-)"
)
OUR_BASE: Final = "https://fhir.cmh-adapter.example/"
_QUANTITY_KINDS: Final = frozenset(
    {"Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity"}
)
_ALWAYS: Final = frozenset({"Element", "Base"})


_PRIMITIVES: Final = frozenset(
    {
        "base64Binary",
        "boolean",
        "canonical",
        "code",
        "date",
        "dateTime",
        "decimal",
        "id",
        "instant",
        "integer",
        "markdown",
        "oid",
        "positiveInt",
        "string",
        "time",
        "unsignedInt",
        "uri",
        "url",
        "uuid",
    }
)


def _value_type(ext: JsonObject) -> str | None:
    for key in ext:
        if key.startswith("value") and len(key) > 5:
            name = key[5:]
            lowered = name[:1].lower() + name[1:]
            return lowered if lowered in _PRIMITIVES else name
    return None


def _context_allows(
    definition: ExtensionDef, names: frozenset[str], parent_extension_url: str | None
) -> bool:
    if not definition.contexts:
        return True
    for kind, expression in definition.contexts:
        if kind == "element" and (expression in names or expression in _ALWAYS):
            return True
        if kind == "extension" and expression == parent_extension_url:
            return True
        if kind == "fhirpath":
            return True  # not evaluated: never a false error
    return False


def context_names(
    type_name: str, element_path: str, is_resource_root: bool, is_canonical: bool = False
) -> frozenset[str]:
    """The element context expressions that match a node of this type at this element path.

    `is_canonical`: a resource with a `url` (R5 names these CanonicalResource/MetadataResource, and
    later versions of core extensions use those names as contexts).
    """
    names = {type_name, element_path}
    if is_resource_root:
        names |= {"Resource", "DomainResource"}
    if is_canonical:
        names |= {"CanonicalResource", "MetadataResource"}
    if "." in type_name:
        names.add("BackboneElement")
    if type_name in _QUANTITY_KINDS:
        names.add("Quantity")
    return frozenset(names)


def extension_issues(
    node: JsonObject,
    names: frozenset[str],
    path: str,
    known: KnownArtefacts,
    policy: UnknownExtensionPolicy,
) -> list[Issue]:
    """Issues for the extensions directly on `node` (which has type/element context `names`)."""
    issues: list[Issue] = []
    parent_url = node.get("url") if "Extension" in names else None
    parent_def = known.extension(parent_url) if isinstance(parent_url, str) else None
    for key in ("extension", "modifierExtension"):
        items = node.get(key)
        if not isinstance(items, list):
            continue
        for i, ext in enumerate(items):
            if not isinstance(ext, dict) or not isinstance(ext.get("url"), str):
                continue
            issue = _one(
                ext, key, parent_url, parent_def, names, f"{path}.{key}[{i}]", known, policy
            )
            if issue is not None:
                issues.append(issue)
    return issues


def _one(
    ext: JsonObject,
    key: str,
    parent_url: JsonValue,
    parent_def: ExtensionDef | None,
    names: frozenset[str],
    where: str,
    known: KnownArtefacts,
    policy: UnknownExtensionPolicy,
) -> Issue | None:
    url = str(ext["url"])
    # inside an extension: sub-extensions are named by the parent's definition
    if isinstance(parent_url, str) and (
        parent_def is None or url in parent_def.sub_extensions or ":" not in url
    ):
        return None
    definition = known.extension(url)
    if definition is None:
        if ":" not in url:
            return None
        if url.startswith(OUR_BASE) or (policy == "error" and not _HL7_PACKAGED.match(url)):
            return Issue(
                "error",
                "structure",
                f"The extension {url} could not be found so is not allowed here",
                where,
            )
        return None
    if definition.is_modifier and key == "extension":
        return Issue(
            "error",
            "structure",
            f"The extension {url} must not be used as an extension (it's a modifierExtension)",
            where,
        )
    if not definition.is_modifier and key == "modifierExtension":
        return Issue(
            "error",
            "structure",
            f"The extension {url} must not be used as a modifierExtension (it's a regular extension)",
            where,
        )
    parent = parent_url if isinstance(parent_url, str) else None
    if not _context_allows(definition, names, parent):
        allowed = ", ".join(e for _, e in definition.contexts)
        return Issue(
            "error",
            "structure",
            f"The extension {url} is not allowed to be used at this point (allowed: {allowed})",
            where,
        )
    vtype = _value_type(ext)
    if (
        vtype is not None
        and definition.value_types is not None
        and vtype not in definition.value_types
    ):
        allowed = ", ".join(definition.value_types) or "none (a complex extension)"
        return Issue(
            "error",
            "structure",
            f"The extension {url} does not allow a value of type {vtype} (allowed: {allowed})",
            where,
        )
    return None
