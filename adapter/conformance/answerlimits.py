"""The limits a Questionnaire item's extensions put on one answer value.

minValue, maxValue, maxLength, minLength, regex, maxDecimalPlaces, mimeType, maxSize,
questionnaire-referenceResource, SDC minQuantity/maxQuantity (compared in UCUM, `ucum.py`),
questionnaire-unitOption and -unitValueSet. The response check (questionnaire.py) asks only for
items whose `ItemPlan.limited` says one of these is present, and only for a value of the right type.
Texts name the limits, never the value: answers may be patient data.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

from adapter.conformance import ucum
from adapter.conformance.itemplans import EXT, NONE, SDC
from adapter.conformance.terminology import KnownArtefacts
from adapter.fhir.references import parse_reference
from adapter.fhir.types import JsonObject, JsonValue
from adapter.issue import Issue

COMPARABLE: Final = ("valueInteger", "valueDecimal", "valueDate", "valueDateTime", "valueTime")


def limit_issues(
    q: JsonObject,
    extensions: dict[str, list[JsonValue]],
    key: str,
    value: JsonValue,
    path: str,
    known: KnownArtefacts | None,
) -> list[Issue]:
    """`extensions`: item `q`'s `extension_index` (empty when it has none). `known` supplies the
    unit value sets; without it they are not judged."""
    out: list[Issue] = []

    def ext(name: str) -> list[JsonValue]:
        return extensions.get(EXT + name, NONE)

    if key in COMPARABLE:
        for lim in ext("minValue"):
            if _lt(value, lim):
                out.append(
                    Issue("error", "value", "The value is less than the allowed minimum", path)
                )
        for lim in ext("maxValue"):
            if _lt(lim, value):
                out.append(
                    Issue("error", "value", "The value is greater than the allowed maximum", path)
                )
    if key == "valueString" and isinstance(value, str):
        max_len = q.get("maxLength")
        if isinstance(max_len, int) and len(value) > max_len:
            out.append(
                Issue(
                    "error",
                    "value",
                    f"The answer is longer than the maximum length {max_len}",
                    path,
                )
            )
        for lim in ext("minLength"):
            if isinstance(lim, int) and len(value) < lim:
                out.append(
                    Issue(
                        "error",
                        "value",
                        f"The answer is shorter than the minimum length {lim}",
                        path,
                    )
                )
        for rx in ext("regex"):
            if isinstance(rx, str) and not _safe_match(rx, value):
                out.append(
                    Issue("error", "value", "The answer does not match the required format", path)
                )
    if key == "valueQuantity" and isinstance(value, dict):
        out += _quantity_issues(extensions, value, path, known)
    if key == "valueDecimal" and isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        for lim in ext("maxDecimalPlaces"):
            if isinstance(lim, int) and places > lim:
                out.append(
                    Issue("error", "value", f"The value has more than {lim} decimal places", path)
                )
    if key == "valueAttachment" and isinstance(value, dict):
        mimes = [m for m in ext("mimeType") if isinstance(m, str)]
        if mimes and value.get("contentType") not in mimes:
            out.append(
                Issue("error", "value", "The attachment's mime type is not allowed here", path)
            )
        for lim in ext("maxSize"):
            size = value.get("size")
            if isinstance(size, int) and isinstance(lim, (int, Decimal)) and size > lim:
                out.append(Issue("error", "value", "The attachment is too large", path))
    if key == "valueReference" and isinstance(value, dict):
        types = [t for t in ext("questionnaire-referenceResource") if isinstance(t, str)]
        ref = value.get("reference")
        if types and isinstance(ref, str):
            rt = parse_reference(ref).resource_type
            if rt and rt not in types:
                out.append(
                    Issue("error", "structure", f"Reference to {rt} is not allowed here", path)
                )
    return out


def _quantity_issues(
    extensions: dict[str, list[JsonValue]],
    value: JsonObject,
    path: str,
    known: KnownArtefacts | None,
) -> list[Issue]:
    """SDC minQuantity/maxQuantity, questionnaire-unitOption and -unitValueSet."""
    out: list[Issue] = []
    path = f"{path}.valueQuantity"
    for name, sign, word in (("minQuantity", -1, "minimum"), ("maxQuantity", 1, "maximum")):
        for lim in extensions.get(f"{SDC}sdc-questionnaire-{name}", NONE):
            if not isinstance(lim, dict):
                continue
            got = _formal(value)
            limit = _formal(lim)
            if got is None or limit is None:
                out.append(
                    Issue(
                        "error",
                        "invariant",
                        f"The quantity cannot be compared to the allowed {word} because no "
                        "formal (UCUM) units are specified",
                        path,
                    )
                )
                continue
            order = ucum.compare(got[0], got[1], limit[0], limit[1])
            if order == "incomparable":
                out.append(
                    Issue(
                        "error",
                        "invariant",
                        f"The quantity's unit {got[1]} cannot be compared to the allowed "
                        f"{word}'s unit {limit[1]}",
                        path,
                    )
                )
            elif order == sign:
                out.append(
                    Issue(
                        "error",
                        "invariant",
                        f"The quantity is {'less' if sign < 0 else 'greater'} than the allowed "
                        f"{word} of {limit[0]} {limit[1]}",
                        path,
                    )
                )
    options = [
        o for o in extensions.get(EXT + "questionnaire-unitOption", NONE) if isinstance(o, dict)
    ]
    if options and not any(
        o.get("system") == value.get("system") and o.get("code") == value.get("code")
        for o in options
    ):
        allowed = ", ".join(str(o.get("code")) for o in options)
        out.append(
            Issue(
                "error", "invariant", f"The unit is not one of the allowed units ({allowed})", path
            )
        )
    for vs in extensions.get(EXT + "questionnaire-unitValueSet", NONE):
        systems = known.systems_of_value_set(vs) if known and isinstance(vs, str) else None
        if systems is not None and (
            value.get("system") not in systems or not isinstance(value.get("code"), str)
        ):
            out.append(
                Issue("error", "invariant", f"The unit is not in the unit value set '{vs}'", path)
            )
    return out


def _formal(quantity: JsonObject) -> tuple[Decimal, str] | None:
    """(value, UCUM code) when the quantity states a UCUM code and a numeric value."""
    value, code = quantity.get("value"), quantity.get("code")
    if quantity.get("system") != ucum.UCUM_SYSTEM or not isinstance(code, str):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        return None
    return Decimal(value), code


def _lt(a: JsonValue, b: JsonValue) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        n = min(len(a), len(b))
        return a[:n] < b[:n]
    try:
        return bool(a < b)
    except TypeError:
        return False


def _safe_match(pattern: str, value: str) -> bool:
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return True
