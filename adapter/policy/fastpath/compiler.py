"""The tree walk from an expression to its closure: `compile_fast` parses with fhirpathpy and
compiles terms and invocations here, handing each other node type to its module through the
handler table in `dispatch.py`, which this module fills."""

from __future__ import annotations

from typing import Any

from fhirpathpy.parser import parse

from adapter.policy.fastpath.access import _root_member, _then_member
from adapter.policy.fastpath.dispatch import _HANDLERS, FastFn, _expr
from adapter.policy.fastpath.errors import Unsupported
from adapter.policy.fastpath.focus import _memo_at_root
from adapter.policy.fastpath.functions import _function, _fuse_of_type
from adapter.policy.fastpath.nodes import _function_parts, _identifier, _literal
from adapter.policy.fastpath.operators import (
    _equality,
    _inequality,
    _logic,
    _membership,
    _union,
)


def compile_fast(expression: str) -> FastFn:
    """Raises Unsupported when the expression is outside the subset."""
    try:
        tree = parse(expression)  # type: ignore[no-untyped-call]  # fhirpathpy is untyped
    except Exception as exc:  # fhirpathpy raises bare Exceptions on syntax errors
        raise Unsupported(str(exc)) from exc
    return _expr(tree["children"][0])


def is_true(fn: FastFn, resource: Any) -> bool:
    return fn([resource]) == [True]


def _term(node: dict[str, Any]) -> FastFn:
    return _expr(node["children"][0])


def _invocation_term(node: dict[str, Any]) -> FastFn:
    inner = node["children"][0]
    if inner["type"] == "MemberInvocation":
        return _root_member(_identifier(inner["children"][0]))
    if inner["type"] == "ThisInvocation":
        return lambda items: items
    if inner["type"] == "FunctionInvocation":
        return _function(inner, lambda items: items)
    raise Unsupported(inner["type"])


def _invocation_expression(node: dict[str, Any]) -> FastFn:
    left_node, right = node["children"]
    if right["type"] == "MemberInvocation":
        left = _expr(left_node)
        return _memo_at_root(_then_member(left, _identifier(right["children"][0])), node)
    if right["type"] == "FunctionInvocation":
        fused = _fuse_of_type(left_node, right)
        if fused is not None:
            return fused
        function = _function(right, _expr(left_node), left_node)
        if _function_parts(right)[0] == "where":
            return _memo_at_root(function, node)
        return function
    raise Unsupported(right["type"])


def _parenthesized(node: dict[str, Any]) -> FastFn:
    return _expr(node["children"][0])


_HANDLERS.update(
    {
        "TermExpression": _term,
        "InvocationTerm": _invocation_term,
        "InvocationExpression": _invocation_expression,
        "LiteralTerm": _literal,
        "ParenthesizedTerm": _parenthesized,
        "EqualityExpression": _equality,
        "InequalityExpression": _inequality,
        "MembershipExpression": _membership,
        "UnionExpression": _union,
        "AndExpression": _logic,
        "OrExpression": _logic,
        "ImpliesExpression": _logic,
    }
)
