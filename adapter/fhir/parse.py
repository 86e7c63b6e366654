"""Structural parsing with fhir.resources R4B: bytes -> JSON -> Issues with FHIRPath-style paths.

R4B is used as our R4 model: for the resource types we hold its element sets equal R4 4.0.1
(research/peers.md §0.2). The model instance is thrown away; we keep the caller's JSON, so
decimal precision and element order survive.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from adapter.errors import InputError
from adapter.fhir import jsonio
from adapter.fhir.types import JsonObject
from adapter.issue import Issue

#: R4 resource types that R4B dropped or renamed; we refuse them rather than mis-parse them.
R4_ONLY_UNSUPPORTED: Final = frozenset(
    {
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "EffectEvidenceSynthesis",
        "RiskEvidenceSynthesis",
    }
)


def parse_json_bytes(data: bytes | str, *, what: str = "request body") -> JsonObject:
    """Parses a FHIR JSON resource, raising InputError (400) for anything that is not one."""
    try:
        value = jsonio.loads(data)
    except jsonio.JsonSyntaxError as exc:
        where = f" at line {exc.line}, column {exc.column}" if exc.line else ""
        raise InputError(
            [Issue("fatal", "structure", f"The {what} is not valid JSON: {exc}{where}")]
        ) from exc
    if not isinstance(value, dict):
        raise InputError([Issue("fatal", "structure", f"The {what} must be a JSON object")])
    rt = value.get("resourceType")
    if not isinstance(rt, str) or not rt:
        raise InputError(
            [
                Issue(
                    "fatal",
                    "structure",
                    f"The {what} has no resourceType",
                    expression="resourceType",
                )
            ]
        )
    return value


@cache
def model_class(resource_type: str) -> Any:
    if resource_type in R4_ONLY_UNSUPPORTED:
        return None
    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return None


def is_known_resource_type(resource_type: str) -> bool:
    return model_class(resource_type) is not None


def _loc_to_path(root: str, loc: tuple[int | str, ...]) -> str:
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}"
    return path


def _message(err: Any) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "Unknown element"
    if kind == "missing":
        return "Required element is missing"
    msg = str(err.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ")


def structural_issues(resource: JsonObject) -> list[Issue]:
    """Type, cardinality, primitive-format and unknown-element issues from the R4B model."""
    rt = resource.get("resourceType")
    if not isinstance(rt, str):
        return [Issue("fatal", "structure", "resourceType is missing", expression="resourceType")]
    cls = model_class(rt)
    if cls is None:
        return [
            Issue(
                "fatal",
                "not-supported",
                f"Unknown or unsupported resource type '{rt}'",
                expression="resourceType",
            )
        ]
    try:
        cls.model_validate(jsonio.to_plain(resource))
    except ValidationError as exc:
        issues: list[Issue] = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            issues.append(
                Issue("error", "structure", _message(err), expression=_loc_to_path(rt, loc))
            )
        return issues
    except (ValueError, TypeError, RecursionError) as exc:  # odd inputs the model chokes on
        return [
            Issue(
                "error",
                "structure",
                f"Structurally invalid resource: {type(exc).__name__}",
                expression=rt,
            )
        ]
    return []
