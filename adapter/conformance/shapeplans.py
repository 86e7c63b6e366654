"""What the structural check (shape.py) needs per definition path, worked out once.

A `ShapePlan` holds, for one definition path (resource root or not), each allowed JSON property's
`ShapeSlot` (repeats, primitive, type, Resource, choice element, and its primitive check) and the
required elements. The primitive check is `primitive_shape_problem`: why a JSON value cannot be a
given primitive type (JSON kind, 32-bit range and sign, non-empty string, base64 as R4B decoded it,
the formats the R4B models checked: code, id, date, dateTime, instant, time, oid, uuid, calendar
days included); `fast_shape_check` answers its common valid values first. The other formats (uri,
markdown, xhtml, …) are the instance walk's, answered as 422.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Final

from adapter.conformance.definitions import CoreDefinitions, core_definitions
from adapter.conformance.primitives import calendar_day_problem
from adapter.fhir.types import JsonValue

_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
_INTEGER_TYPES: Final = frozenset({"integer", "positiveInt", "unsignedInt"})
#: String primitives whose format the structural check owns (the rest are the walk's, as 422).
_FORMAT_TYPES: Final = frozenset(
    {"code", "id", "date", "dateTime", "instant", "time", "oid", "uuid"}
)
#: base64 as R4B decoded it: whitespace anywhere, whole 4-character groups, padding at the end.
#: (The R4 regex, stricter about whitespace inside a group, is applied by the walk.)
_BASE64: Final = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_WHITESPACE: Final = re.compile(r"\s+")
_DATED: Final = frozenset({"date", "dateTime", "instant"})


@cache
def _format(type_code: str) -> re.Pattern[str]:
    return re.compile(core_definitions().primitive_regex[type_code])


def primitive_shape_problem(type_code: str, value: JsonValue) -> str | None:
    """Why `value` cannot be a `type_code` in FHIR JSON, or None. The text never echoes the value."""
    if type_code == "boolean":
        return None if value is True or value is False else "must be a JSON boolean"
    if type_code in _INTEGER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be a JSON integer"
        if not _INT32_MIN <= value <= _INT32_MAX:
            return "is outside the 32-bit integer range"
        if type_code == "positiveInt" and value < 1:
            return "must be 1 or more"
        if type_code == "unsignedInt" and value < 0:
            return "must be 0 or more"
        return None
    if type_code == "decimal":
        if isinstance(value, bool) or not isinstance(value, (int, Decimal, float)):
            return "must be a JSON number"
        return None
    if not isinstance(value, str):
        return "must be a JSON string"
    if type_code == "string":
        return None if value else "must not be empty"
    if type_code == "base64Binary":
        return None if _BASE64.fullmatch(_WHITESPACE.sub("", value)) else "is not valid base64"
    if type_code not in _FORMAT_TYPES:
        return None  # uri, url, canonical, markdown, xhtml: formats judged by the walk (422)
    if not _format(type_code).fullmatch(value):
        return f"is not a valid {type_code}"
    if type_code in _DATED:
        return calendar_day_problem(value, type_code)
    return None


ShapeCheck = Callable[[JsonValue], str | None]


def fast_shape_check(type_code: str) -> ShapeCheck:
    """`primitive_shape_problem` for one type, answering the common valid values without the
    chain of type tests (anything else goes to it, so the answers are the same)."""

    def full(value: JsonValue) -> str | None:
        return primitive_shape_problem(type_code, value)

    if type_code == "boolean":
        return lambda v: None if v is True or v is False else full(v)
    if type_code in _INTEGER_TYPES:
        low = {"positiveInt": 1, "unsignedInt": 0}.get(type_code, _INT32_MIN)
        return lambda v: None if type(v) is int and low <= v <= _INT32_MAX else full(v)
    if type_code == "decimal":
        return lambda v: None if type(v) is Decimal or type(v) is int else full(v)
    if type_code == "string":
        return lambda v: None if type(v) is str and v else full(v)
    if type_code == "base64Binary" or type_code in _FORMAT_TYPES:
        return full
    return lambda v: None if type(v) is str else full(v)  # uri, markdown, …: any string


@dataclass(frozen=True, slots=True)
class ShapeSlot:
    """One allowed JSON property at a definition path, with what the check needs of it."""

    repeats: bool
    primitive: bool
    type_code: str  # for a resource's own `id`: "id"
    def_path: str
    resource: bool  # of type Resource: checked as a resource of its own `resourceType`
    choice: str | None  # the choice element (`value` for `valueString`), or None
    #: `primitive_shape_problem` for `type_code` (primitives only)
    check: ShapeCheck | None


@dataclass(frozen=True, slots=True)
class ShapePlan:
    """The allowed properties at a definition path (resource root or not) and its minimums."""

    slots: dict[str, ShapeSlot]
    #: (element name, the properties any one of which makes it present)
    required: tuple[tuple[str, frozenset[str]], ...]
    resource_root: bool  # `resourceType` is allowed


def build_shape_plan(defs: CoreDefinitions, def_path: str, resource_root: bool) -> ShapePlan:
    """The plan at `def_path`; "Element" is the `_name` sibling of a primitive (id, extension)."""
    if def_path == "Element":  # not in the tables: the two children every type declares
        ext = defs.children("Extension")
        children = {"id": ext["id"], "extension": ext["extension"]}
    else:
        children = defs.children(def_path)
    slots: dict[str, ShapeSlot] = {}
    for key, child in children.items():
        choice = child.name if child.element.path.endswith("[x]") else None
        type_code = "id" if resource_root and key == "id" else child.type_code
        slot = ShapeSlot(
            child.element.is_array,
            child.is_primitive,
            type_code,
            child.def_path,
            child.type_code == "Resource",
            choice,
            fast_shape_check(type_code) if child.is_primitive else None,
        )
        slots[key] = slot
        # a resource's own id is a plain string: no `_id` with an id or extensions
        if child.is_primitive and not (resource_root and key == "id"):
            slots["_" + key] = slot
    required: list[tuple[str, frozenset[str]]] = []
    for el in defs.required_children(def_path) if def_path != "Element" else ():
        name = el.path.rsplit(".", 1)[-1].removesuffix("[x]")
        keys = [k for k, c in children.items() if c.element is el]
        keys += ["_" + k for k in keys if children[k].is_primitive]
        required.append((name, frozenset(keys)))
    return ShapePlan(slots, tuple(required), resource_root)
