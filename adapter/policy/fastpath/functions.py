"""The FHIRPath functions of the subset: exists/empty/count/first/where/all/not/ofType/extension/
startsWith/endsWith, with `member.ofType(Type)` fused into a read of the `memberType` key."""

from __future__ import annotations

from typing import Any

from adapter.policy.fastpath.access import FHIR_TYPES, _member_of, _then_member
from adapter.policy.fastpath.criteria import _equals_shape, _predicate
from adapter.policy.fastpath.criterialoops import (
    _all_predicate,
    _exists_predicate,
    _where_equals,
    _where_equals_indexed,
    _where_predicate,
)
from adapter.policy.fastpath.dispatch import FastFn, _expr
from adapter.policy.fastpath.errors import Fallback, Unsupported
from adapter.policy.fastpath.nodes import (
    _function_parts,
    _identifier,
    _string_literal_param,
    _type_name,
)
from adapter.policy.fastpath.values import _all_holds, _keep, _singleton_bool


def _fuse_of_type(left_node: dict[str, Any], right: dict[str, Any]) -> FastFn | None:
    """`value.ofType(Signature)` reads `valueSignature`: the JSON carries the type in the key."""
    name, params = _function_parts(right)
    if name != "ofType" or len(params) != 1:
        return None
    type_name = _type_name(params[0])
    if type_name[:1].isupper() and type_name not in FHIR_TYPES:
        return None  # a resource type: filtered by resourceType in _function
    suffix = type_name[:1].upper() + type_name[1:]
    if left_node["type"] == "InvocationExpression" and (
        left_node["children"][1]["type"] == "MemberInvocation"
    ):
        base = _expr(left_node["children"][0])
        key = _identifier(left_node["children"][1]["children"][0]) + suffix
        return _then_member(base, key)
    if left_node["type"] == "TermExpression":
        inner = left_node["children"][0]
        if inner["type"] == "InvocationTerm" and inner["children"][0]["type"] == "MemberInvocation":
            key = _identifier(inner["children"][0]["children"][0]) + suffix
            return _member_of(key)
    raise Unsupported("ofType of a non-member")


def _function(
    node: dict[str, Any], base: FastFn, base_node: dict[str, Any] | None = None
) -> FastFn:
    name, params = _function_parts(node)
    if name == "exists":
        if not params:
            return lambda items: [bool(base(items))]
        crit = _expr(params[0])
        pred = _predicate(params[0])
        if pred is not None:
            return _exists_predicate(base, pred, crit)
        return lambda items: [any(_keep(crit, i) for i in base(items))]
    if name == "empty" and not params:
        return lambda items: [not base(items)]
    if name == "count" and not params:
        return lambda items: [len(base(items))]
    if name == "first" and not params:
        return lambda items: base(items)[:1]
    if name == "where" and len(params) == 1:
        crit = _expr(params[0])
        shape = _equals_shape(params[0])
        if shape is not None and not shape[2]:
            if base_node is not None:
                return _where_equals_indexed(base, crit, shape[0], shape[1], base_node)
            return _where_equals(base, crit, shape[0], shape[1])
        pred = _predicate(params[0])
        if pred is not None:
            return _where_predicate(base, pred, crit)
        return lambda items: [i for i in base(items) if _keep(crit, i)]
    if name == "all" and len(params) == 1:
        crit = _expr(params[0])
        pred = _predicate(params[0])
        if pred is not None:
            return _all_predicate(base, pred, crit)
        return lambda items: [all(_all_holds(crit, i) for i in base(items))]
    if name == "not" and not params:

        def negate(items: list[Any]) -> list[Any]:
            value = _singleton_bool(base(items))
            return [] if value is None else [not value]

        return negate
    if name == "ofType" and len(params) == 1:
        type_name = _type_name(params[0])
        if not type_name[:1].isupper() or type_name in FHIR_TYPES:
            raise Unsupported("ofType of a data type outside a member path")
        return lambda items: [
            i for i in base(items) if isinstance(i, dict) and i.get("resourceType") == type_name
        ]
    if name == "extension":
        url = _string_literal_param(params)

        def extension(items: list[Any]) -> list[Any]:
            found = base(items)
            if any(not isinstance(i, dict) for i in found):
                raise Fallback("extension on a primitive")
            return [e for i in found for e in i.get("extension") or [] if e.get("url") == url]

        return extension
    if name in ("startsWith", "endsWith"):
        affix = _string_literal_param(params)
        at_start = name == "startsWith"

        def affixed(items: list[Any]) -> list[Any]:
            found = base(items)
            if not found:
                return []
            if len(found) > 1 or not isinstance(found[0], str):
                raise Fallback(f"{name} on a non-string")
            text = found[0]
            return [text.startswith(affix) if at_start else text.endswith(affix)]

        return affixed
    raise Unsupported(f"function {name}")
