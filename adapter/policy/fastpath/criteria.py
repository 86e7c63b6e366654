"""Item criteria of `where`/`all`/`exists` read straight off one item, without the compiled
general criterion when the item's shape makes the answer certain. The loops that use them, and the
per-Focus index behind `where(name = 'literal')`, are criterialoops.py."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from adapter.policy.fastpath.access import FHIR_TYPES, _member_of
from adapter.policy.fastpath.errors import Unsupported
from adapter.policy.fastpath.nodes import (
    _function_parts,
    _is_this,
    _literal_value,
    _op,
    _simple_member,
    _string_constant,
    _string_literal_param,
    _type_name,
)
from adapter.policy.fastpath.operators import _OPS_CMP, _OPS_EQ, _ORDER
from adapter.policy.fastpath.values import _DATE_LIKE, _NOT_DATE_START

#: The criterion of a `where`/`all`/`exists` for one item: True or False when the item's shape makes
#: the answer certain (a plain string member with no `_shadow`, an integer `$this`), else None, and
#: the compiled general criterion decides. A predicate evaluates in the general criterion's order
#: and raises only where it would, so both give the same answer (pinned in test_fastpath.py).
Predicate = Callable[[Any], bool | None]


def _predicate(node: dict[str, Any]) -> Predicate | None:
    """The predicate for a criterion of these shapes, else None: `name = 'literal'`, `name !=
    'literal'`, `name.startsWith('x')`, `name.endsWith('x')`, `$this < 7` (any order operator and
    an integer), `name.count() <= 1`, `name.exists()`, `name.ofType(type).exists()`, `p.not()`,
    `p and q`, `p or q`, `(p)`."""
    kind = node["type"]
    string_test = _string_test(node)
    if string_test is not None:
        return _on_string_member(*string_test)
    if kind == "TermExpression" and node["children"][0]["type"] == "ParenthesizedTerm":
        return _predicate(node["children"][0]["children"][0])
    if kind == "EqualityExpression":
        return _equals_predicate(node)
    if kind == "InequalityExpression":
        return _order_predicate(node)
    if kind == "InvocationExpression":
        return _call_predicate(node)
    if kind in ("AndExpression", "OrExpression"):
        if _op(node) == "and":
            between = _this_between(node)
            if between is not None:
                return between
        left, right = (_predicate(c) for c in node["children"])
        if left is None or right is None:
            return None
        return _both(left, right) if _op(node) == "and" else _either(left, right)
    return None


def _this_order(node: dict[str, Any]) -> tuple[Callable[[Any, Any], bool], int] | None:
    """(order, bound) for `$this < 7` (any order operator, an integer bound), else None."""
    if node["type"] != "InequalityExpression" or _op(node) not in _OPS_CMP:
        return None
    left_node, right_node = node["children"]
    if not _is_this(left_node):
        return None
    try:
        bound = _literal_value(right_node)
    except Unsupported:
        return None
    return (_ORDER[_op(node)], bound) if type(bound) is int else None


def _this_between(node: dict[str, Any]) -> Predicate | None:
    """`$this >= 1 and $this <= 7` (a DIALOG rating) in one call per item: None unless the item
    is an integer, as each part answers; then the parts in order, as `_both` joins them."""
    low, high = (_this_order(c) for c in node["children"])
    if low is None or high is None:
        return None
    (first, first_bound), (second, second_bound) = low, high

    def between(item: Any) -> bool | None:
        if type(item) is int:
            return first(item, first_bound) and second(item, second_bound)
        return None

    return between


def _equals_shape(node: dict[str, Any]) -> tuple[str, str, bool] | None:
    """(name, literal, negated) for `name = 'literal'` or `name != 'literal'`."""
    if node["type"] != "EqualityExpression" or _op(node) not in _OPS_EQ:
        return None
    name = _simple_member(node["children"][0])
    literal = _string_constant(node["children"][1])
    if name is None or literal is None:
        return None
    return name, literal, _op(node) == "!="


def _equals_predicate(node: dict[str, Any]) -> Predicate | None:
    """Inlined by `criterialoops._where_equals` and `criterialoops._Index`: keep the three alike."""
    shape = _equals_shape(node)
    if shape is None:
        return None
    name, literal, negate = shape
    shadow = "_" + name

    def equals(item: Any) -> bool | None:
        if isinstance(item, dict):
            value = item.get(name)
            if type(value) is str and shadow not in item:
                if value == literal:
                    return not negate
                if value[:1] in _NOT_DATE_START or not _DATE_LIKE.match(value):
                    return negate
        return None

    return equals


def _order_predicate(node: dict[str, Any]) -> Predicate | None:
    op = _op(node)
    left_node, right_node = node["children"]
    if op not in _OPS_CMP:
        return None
    try:
        bound = _literal_value(right_node)
    except Unsupported:
        return None
    if type(bound) is not int:
        return None
    order = _ORDER[op]
    if _is_this(left_node):

        def this_in_order(item: Any) -> bool | None:
            return order(item, bound) if type(item) is int else None

        return this_in_order
    if left_node["type"] == "InvocationExpression":
        base_node, call = left_node["children"]
        name = _simple_member(base_node)
        if name is None or call["type"] != "FunctionInvocation":
            return None
        function, params = _function_parts(call)
        if function != "count" or params:
            return None
        return _count_in_order(name, order, bound)
    return None


def _count_in_order(name: str, order: Callable[[Any, Any], bool], bound: int) -> Predicate:
    """`name.count() <= 1` and the like: a present member with no `_shadow` is counted where it
    lies (a list without None is its length, anything else one item); the rest through
    `_member_of`, which raises or looks for choice types as the general criterion does."""
    member = _member_of(name)
    shadow = "_" + name

    def counted(item: Any) -> bool:
        if isinstance(item, dict):
            value = item.get(name)
            if value is not None and shadow not in item:
                if not isinstance(value, list):
                    return order(1, bound)
                if None not in value:
                    return order(len(value), bound)
        return order(len(member([item])), bound)

    return counted


def _call_predicate(node: dict[str, Any]) -> Predicate | None:
    base_node, call = node["children"]
    if call["type"] != "FunctionInvocation":
        return None
    function, params = _function_parts(call)
    if function == "exists" and not params:
        key = _member_key(base_node)
        return None if key is None else _present(key)
    if function == "not" and not params:
        inner = _predicate(base_node)
        if inner is None:
            return None

        def negated(item: Any) -> bool | None:
            value = inner(item)
            return None if value is None else not value

        return negated
    if function not in ("startsWith", "endsWith"):
        return None
    name = _simple_member(base_node)
    try:
        affix = _string_literal_param(params)
    except Unsupported:
        return None
    if name is None:
        return None
    shadow, at_start = "_" + name, function == "startsWith"

    def affixed(item: Any) -> bool | None:
        if isinstance(item, dict):
            value = item.get(name)
            if type(value) is str and shadow not in item:
                return value.startswith(affix) if at_start else value.endswith(affix)
        return None

    return affixed


def _member_key(node: dict[str, Any]) -> str | None:
    """The JSON key a criterion's `name` or `name.ofType(type)` reads (`value.ofType(integer)`
    reads `valueInteger`, as `functions._fuse_of_type` compiles it), else None."""
    name = _simple_member(node)
    if name is not None:
        return name
    if node["type"] != "InvocationExpression":
        return None
    base_node, call = node["children"]
    name = _simple_member(base_node)
    if name is None or call["type"] != "FunctionInvocation":
        return None
    function, params = _function_parts(call)
    if function != "ofType" or len(params) != 1:
        return None
    try:
        type_name = _type_name(params[0])
    except Unsupported:
        return None
    if type_name[:1].isupper() and type_name not in FHIR_TYPES:
        return None
    return name + type_name[:1].upper() + type_name[1:]


def _present(key: str) -> Predicate:
    """`key.exists()` for one item: True when the item holds a single value under `key` with no
    `_shadow` (the member is then that value); otherwise the general criterion decides (a missing
    key may still be a choice type, a list may hold only nulls)."""
    shadow = "_" + key

    def present(item: Any) -> bool | None:
        if isinstance(item, dict):
            value = item.get(key)
            if value is not None and type(value) is not list and shadow not in item:
                return True
        return None

    return present


#: A test of a member's plain string value, and the member it reads.
StringTest = tuple[str, Callable[[str], bool]]


def _string_test(node: dict[str, Any]) -> StringTest | None:
    """(name, test) when the criterion is `startsWith`/`endsWith` calls on one member `name`,
    joined by `and`/`or`/`not()`/parentheses (`linkId.startsWith('dialog-') and
    linkId.endsWith('-help').not()`), else None. Every part answers None on the same items (no
    plain string under `name`, or a `_name` shadow), so the joined predicate reads the member
    once, answers None on those items and otherwise applies `test` to the string, as the parts
    joined by `_both`/`_either`/`negated` would."""
    kind = node["type"]
    if kind == "TermExpression" and node["children"][0]["type"] == "ParenthesizedTerm":
        return _string_test(node["children"][0]["children"][0])
    if kind in ("AndExpression", "OrExpression"):
        left, right = (_string_test(c) for c in node["children"])
        if left is None or right is None or left[0] != right[0]:
            return None
        first, second = left[1], right[1]
        if _op(node) == "and":
            return left[0], lambda text: first(text) and second(text)
        return left[0], lambda text: first(text) or second(text)
    if kind != "InvocationExpression":
        return None
    base_node, call = node["children"]
    if call["type"] != "FunctionInvocation":
        return None
    function, params = _function_parts(call)
    if function == "not" and not params:
        inner = _string_test(base_node)
        if inner is None:
            return None
        test = inner[1]
        return inner[0], lambda text: not test(text)
    if function not in ("startsWith", "endsWith"):
        return None
    name = _simple_member(base_node)
    try:
        affix = _string_literal_param(params)
    except Unsupported:
        return None
    if name is None:
        return None
    return name, operator.methodcaller(function.lower(), affix)


def _on_string_member(name: str, test: Callable[[str], bool]) -> Predicate:
    shadow = "_" + name

    def on_string(item: Any) -> bool | None:
        if isinstance(item, dict):
            value = item.get(name)
            if type(value) is str and shadow not in item:
                return test(value)
        return None

    return on_string


def _both(left: Predicate, right: Predicate) -> Predicate:
    def both(item: Any) -> bool | None:
        a = left(item)
        if a is None:
            return None
        if a is False:
            return False
        return right(item)

    return both


def _either(left: Predicate, right: Predicate) -> Predicate:
    def either(item: Any) -> bool | None:
        a = left(item)
        if a is None:
            return None
        if a is True:
            return True
        return right(item)

    return either
