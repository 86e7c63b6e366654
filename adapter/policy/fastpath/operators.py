"""The binary operators: `=` `!=` `<` `<=` `>` `>=` `in` `contains` `|` `and` `or` `xor`
`implies`."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Final

from adapter.policy.fastpath.dispatch import FastFn, _expr
from adapter.policy.fastpath.errors import Fallback, Unsupported
from adapter.policy.fastpath.nodes import _op, _string_constant
from adapter.policy.fastpath.values import _DATE_LIKE, _NOT_DATE_START, _equal, _singleton_bool

_OPS_EQ: Final = {"=", "!="}


_OPS_CMP: Final = {"<", "<=", ">", ">="}


_ORDER: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _equality(node: dict[str, Any]) -> FastFn:
    op = _op(node)
    if op not in _OPS_EQ:
        raise Unsupported(op)
    left_node, right_node = node["children"]
    left, right = _expr(left_node), _expr(right_node)
    negate = op == "!="
    literal = _string_constant(right_node)

    def equal(items: list[Any]) -> list[Any]:
        a, b = left(items), right(items)
        if not a or not b:
            return []
        if len(a) != len(b):
            return [negate]
        same = all(_equal(x, y) for x, y in zip(a, b, strict=True))
        return [same != negate]

    if literal is None:
        return equal

    def equal_literal(items: list[Any]) -> list[Any]:
        """`path = 'code'`: the common case, without the general type checks."""
        a = left(items)
        if not a:
            return []
        if len(a) != 1:
            return [negate]
        x = a[0]
        if type(x) is str and (x == literal or x[:1] in _NOT_DATE_START or not _DATE_LIKE.match(x)):
            return [(x == literal) != negate]
        return equal(items)

    return equal_literal


def _inequality(node: dict[str, Any]) -> FastFn:
    op = _op(node)
    if op not in _OPS_CMP:
        raise Unsupported(op)
    left, right = (_expr(c) for c in node["children"])
    order = _ORDER[op]

    def compare(items: list[Any]) -> list[Any]:
        a, b = left(items), right(items)
        if not a or not b:
            return []
        if len(a) != 1 or len(b) != 1:
            raise Fallback("comparison of collections")
        x, y = a[0], b[0]
        if isinstance(x, bool) or isinstance(y, bool):
            raise Fallback("comparison of booleans")
        if not (isinstance(x, int | float) and isinstance(y, int | float)):
            raise Fallback("comparison of non-numbers")
        return [order(x, y)]

    return compare


def _membership(node: dict[str, Any]) -> FastFn:
    op = _op(node)
    left, right = (_expr(c) for c in node["children"])
    if op == "contains":
        left, right = right, left
    elif op != "in":
        raise Unsupported(op)

    def member(items: list[Any]) -> list[Any]:
        a = left(items)
        if not a:
            return []
        if len(a) > 1:
            raise Fallback("membership of a collection")
        return [any(_equal(a[0], b) for b in right(items))]

    return member


def _union(node: dict[str, Any]) -> FastFn:
    left, right = (_expr(c) for c in node["children"])

    def union(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for value in (*left(items), *right(items)):
            if isinstance(value, dict | list):
                raise Fallback("union of complex values")
            if not any(type(value) is type(o) and value == o for o in out):
                out.append(value)
        return out

    return union


def _logic(node: dict[str, Any]) -> FastFn:
    op = _op(node)
    left, right = (_expr(c) for c in node["children"])
    combine = _COMBINE.get(op)
    if combine is None:
        raise Unsupported(op)
    if op == "and":

        def conjunction(items: list[Any]) -> list[Any]:
            """`_and` inlined (the commonest operator): no closure per call for the lazy side."""
            a = _singleton_bool(left(items))
            if a is False:
                return [False]
            b = _singleton_bool(right(items))
            if b is False:
                return [False]
            return [True] if a is True and b is True else []

        return conjunction
    if op == "or":

        def disjunction(items: list[Any]) -> list[Any]:
            a = _singleton_bool(left(items))
            if a is True:
                return [True]
            b = _singleton_bool(right(items))
            if b is True:
                return [True]
            return [False] if a is False and b is False else []

        return disjunction

    def logic(items: list[Any]) -> list[Any]:
        result = combine(_singleton_bool(left(items)), lambda: _singleton_bool(right(items)))
        return [] if result is None else [result]

    return logic


Lazy = Callable[[], bool | None]


def _and(a: bool | None, b: Lazy) -> bool | None:
    if a is False:
        return False
    rb = b()
    if rb is False:
        return False
    return True if a is True and rb is True else None


def _or(a: bool | None, b: Lazy) -> bool | None:
    if a is True:
        return True
    rb = b()
    if rb is True:
        return True
    return False if a is False and rb is False else None


def _xor(a: bool | None, b: Lazy) -> bool | None:
    rb = b()
    if a is None or rb is None:
        return None
    return a != rb


def _implies(a: bool | None, b: Lazy) -> bool | None:
    if a is False:
        return True
    rb = b()
    if rb is True:
        return True
    if a is None:
        return None
    return rb


_COMBINE: Final[dict[str, Callable[[bool | None, Lazy], bool | None]]] = {
    "and": _and,
    "or": _or,
    "xor": _xor,
    "implies": _implies,
}
