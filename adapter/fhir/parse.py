"""Structural parsing: bytes -> JSON -> Issues with FHIRPath-style paths.

`structural_issues` is the native check (adapter.conformance.shape), driven by the core R4 tables.
`r4b_structural_issues` is the former check with fhir.resources R4B models, kept as the reference
the differential corpus test (tests/corpus/test_structure_differential.py) compares it with; it is
not on any request path. Either way we keep the caller's JSON, so decimal precision and element
order survive.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any, Final

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from adapter.errors import InputError
from adapter.fhir import jsonio
from adapter.fhir.types import JsonObject
from adapter.issue import Issue

if TYPE_CHECKING:
    from adapter.conformance.shape import ShapeChecker

#: R4 resource types that R4B dropped or renamed; we refuse them rather than mis-parse them
#: (the native check refuses these and the other R4 types R4B lacks: shape.REFUSED_R4_TYPES).
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
    """An R4 resource type the adapter accepts (the structural check refuses the others)."""
    return _native().is_accepted_type(resource_type)


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
    """Type, cardinality, primitive-format and unknown-element issues (the native check).

    Every issue is an error or fatal with a FHIRPath-style path; see adapter.conformance.shape.
    """
    return _native().check(resource)


@cache
def _native() -> ShapeChecker:
    # imported here: adapter.conformance imports adapter.fhir (types, jsonio), which imports us
    from adapter.conformance.shape import shape_checker

    return shape_checker()


def r4b_structural_issues(resource: JsonObject) -> list[Issue]:
    """The former structural check, by fhir.resources R4B models: the reference for the
    differential corpus test. Slow (a model per resource); not used on any request path."""
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
