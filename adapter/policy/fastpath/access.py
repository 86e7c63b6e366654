"""Member access straight over the JSON: paths, choice types (`value` -> `valueCoding`), the
resource type at a path's root, and a `Fallback` wherever a primitive carries an `_element`."""

from __future__ import annotations

from typing import Any, Final

from adapter.policy.fastpath.dispatch import FastFn
from adapter.policy.fastpath.errors import Fallback

#: Type suffixes of R4 choice elements (`value[x]`, `occurrence[x]`, ...).
FHIR_TYPES: Final = (  # noqa: SIM905  (a word list reads better than 50 quoted names)
    "Base64Binary Boolean Canonical Code Date DateTime Decimal Id Instant Integer Markdown Oid "
    "PositiveInt String Time UnsignedInt Uri Url Uuid Address Age Annotation Attachment "
    "CodeableConcept Coding ContactPoint Count Distance Duration HumanName Identifier Money "
    "Period Quantity Range Ratio Reference SampledData Signature Timing ContactDetail "
    "Contributor DataRequirement Expression ParameterDefinition RelatedArtifact TriggerDefinition "
    "UsageContext Dosage Meta"
).split()


_FHIR_TYPE_SET: Final = frozenset(FHIR_TYPES)


def _member_of(name: str, base: FastFn | None = None) -> FastFn:
    """`name` of every item (of `base(items)` when a base is given): the compiled form of
    `_member`, with the `_name` shadow key built once. A plain value under `name` with no shadow is
    the common case and costs one lookup; a choice type (`value` -> `valueInteger`, met on nearly
    every read of `value`) is looked for in the loop itself
    (the item's few keys are scanned, not the type list), without a call per item."""
    shadow = "_" + name
    size = len(name)
    types = _FHIR_TYPE_SET

    def member(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in base(items) if base is not None else items:
            if not isinstance(item, dict):
                continue
            value = item.get(name)
            if value is None:
                for key in item:
                    if key.startswith(name) and key[size:] in types:
                        if "_" + key in item:
                            raise Fallback(key)
                        value = item[key]
                        break
                if value is None:
                    if shadow in item:
                        raise Fallback(name)
                    continue
            elif shadow in item:
                raise Fallback(name)
            if isinstance(value, list):
                if None in value:
                    out.extend(v for v in value if v is not None)
                else:
                    out.extend(value)
            else:
                out.append(value)
        return out

    return member


def _then_member(base: FastFn, name: str) -> FastFn:
    return _member_of(name, base)


def _root_member(name: str) -> FastFn:
    """The first identifier of a path: a resource type selects the focus itself when it matches."""
    if name[:1].isupper():

        def typed(items: list[Any]) -> list[Any]:
            return [i for i in items if isinstance(i, dict) and i.get("resourceType") == name]

        return typed
    return _member_of(name)
