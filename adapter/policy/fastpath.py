"""A fast evaluator for the simple FHIRPath shapes the rule packs use, run straight over the JSON.

fhirpathpy is exact but costs 0.1-1 ms per expression (it wraps every node and re-walks its
tables); the packs hold hundreds of expressions, so that alone broke the 1 ms per resource budget.
This module compiles fhirpathpy's own parse tree (so the grammar is the same) into closures for a
subset: member paths with choice types (`value` -> `valueCoding`), `$this`, literals, `=` `!=` `in`
`contains` `|` `<` `<=` `>` `>=`, `and` `or` `xor` `implies`, and exists/empty/count/where/all/
not/first/ofType/extension/startsWith/endsWith.

Two ways out to fhirpathpy, so a result is never guessed:
- `Unsupported` at compile time: the rule keeps only the fhirpathpy evaluator;
- `Fallback` at run time, when data falls outside the subset's certain semantics (a primitive
  carrying an `_element` extension, a date-like string compared, a complex value in `=`, a
  non-boolean where a boolean is expected); the engine then asks fhirpathpy for that resource.

tests/unit/policy/test_fastpath.py runs every rule and guard over every fixture through both paths
and requires identical answers.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any, Final

from fhirpathpy.parser import parse

#: A compiled expression: the focus collection in, the result collection out.
FastFn = Callable[[list[Any]], list[Any]]


class Unsupported(Exception):
    """The expression uses FHIRPath this module does not compile."""


class Fallback(Exception):
    """This data needs fhirpathpy's full semantics."""


class Focus(list[Any]):
    """The root focus of one evaluation of one resource: `Focus([resource])`, shared by every rule
    and guard the engine runs over it. A subexpression evaluated on it (a member path, a `where`,
    the index behind `where(name = 'literal')`) is kept in `memo` under a key naming its parse
    tree, so rules that share `section.code.coding` or `item.where(...)` compute it once. Only the
    root focus memoises: the result depends on nothing else there. Nested focuses are plain lists;
    results are never changed in place, so sharing them is safe."""

    __slots__ = ("memo",)

    def __init__(self, resource: Any) -> None:
        super().__init__((resource,))
        self.memo: dict[Any, Any] = {}


#: parse-tree repr -> small int: equal subexpressions of different rules share a memo key
_SHARED: Final[dict[str, int]] = {}


def _shared_key(node: dict[str, Any]) -> int:
    return _SHARED.setdefault(repr(node), len(_SHARED))


def _memo_at_root(fn: FastFn, node: dict[str, Any]) -> FastFn:
    key = _shared_key(node)

    def memoised(items: list[Any]) -> list[Any]:
        if type(items) is Focus:
            memo = items.memo
            found: list[Any] | None = memo.get(key)
            if found is None:
                found = memo[key] = fn(items)  # a Fallback is not kept: it is raised again
            return found
        return fn(items)

    return memoised


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
_DATE_LIKE: Final = re.compile(r"^@?\d{4}(-\d\d(-\d\d(T[\d:.]*(Z|[+-]\d\d:\d\d)?)?)?)?$")
#: First characters that rule a string out of `_DATE_LIKE` without running it (ASCII other than
#: `@` and digits; `\d` also matches non-ASCII digits, so anything else still goes to the regex).
#: `value[:1] in _NOT_DATE_START or not _DATE_LIKE.match(value)` is the hot-loop form.
_NOT_DATE_START: Final = frozenset(chr(c) for c in range(128)) - frozenset("@0123456789")
_OPS_EQ: Final = {"=", "!="}
_OPS_CMP: Final = {"<", "<=", ">", ">="}
_ORDER: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def compile_fast(expression: str) -> FastFn:
    """Raises Unsupported when the expression is outside the subset."""
    try:
        tree = parse(expression)  # type: ignore[no-untyped-call]  # fhirpathpy is untyped
    except Exception as exc:  # fhirpathpy raises bare Exceptions on syntax errors
        raise Unsupported(str(exc)) from exc
    return _expr(tree["children"][0])


def is_true(fn: FastFn, resource: Any) -> bool:
    return fn([resource]) == [True]


# -- data access -------------------------------------------------------------------------------
def _member_of(name: str) -> FastFn:
    """`name` of every item: the compiled form of `_member`, with the `_name` shadow key built once.
    A plain value under `name` with no shadow is the common case and costs one lookup."""
    shadow = "_" + name

    def member(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            if not isinstance(item, dict):
                continue
            value = item.get(name)
            if value is None:
                value = _choice(item, name)
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
    member = _member_of(name)
    return lambda items: member(base(items))


def _choice(item: dict[str, Any], name: str) -> Any:
    """`value` -> the `valueCoding` (etc.) key, scanning the item's few keys, not the type list."""
    size = len(name)
    for key in item:
        if key.startswith(name) and key[size:] in _FHIR_TYPE_SET:
            if "_" + key in item:
                raise Fallback(key)
            return item[key]
    return None


def _root_member(name: str) -> FastFn:
    """The first identifier of a path: a resource type selects the focus itself when it matches."""
    if name[:1].isupper():

        def typed(items: list[Any]) -> list[Any]:
            return [i for i in items if isinstance(i, dict) and i.get("resourceType") == name]

        return typed
    return _member_of(name)


def _singleton_bool(result: list[Any]) -> bool | None:
    if not result:
        return None
    if len(result) == 1 and isinstance(result[0], bool):
        return result[0]
    raise Fallback("not a boolean")


def _plain(value: Any) -> Any:
    if isinstance(value, dict | list):
        raise Fallback("complex value compared")
    if isinstance(value, str) and _DATE_LIKE.match(value):
        raise Fallback("date-like value compared")
    return value


def _equal(a: Any, b: Any) -> bool:
    a, b = _plain(a), _plain(b)
    if isinstance(a, bool) or isinstance(b, bool):
        if type(a) is not type(b):
            raise Fallback("boolean compared with another type")
        return bool(a == b)
    if isinstance(a, str) != isinstance(b, str):
        raise Fallback("string compared with a number")
    return bool(a == b)


# -- compilation -------------------------------------------------------------------------------
def _identifier(node: dict[str, Any]) -> str:
    text = str(node.get("text") or node["terminalNodeText"][0])
    return text.strip("`")


def _expr(node: dict[str, Any]) -> FastFn:
    kind = node["type"]
    handler = _HANDLERS.get(kind)
    if handler is None:
        raise Unsupported(kind)
    return handler(node)


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


def _function_parts(node: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    functn = node["children"][0]
    name = _identifier(functn["children"][0])
    params = functn["children"][1]["children"] if len(functn["children"]) > 1 else []
    return name, params


def _type_name(param: dict[str, Any]) -> str:
    text = str(param.get("text", ""))
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", text):
        raise Unsupported(f"type specifier {text!r}")
    return text


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


def _string_literal_param(params: list[dict[str, Any]]) -> str:
    if len(params) != 1:
        raise Unsupported("one string parameter expected")
    value = _literal_value(params[0])
    if not isinstance(value, str):
        raise Unsupported("string literal parameter expected")
    return value


def _literal_value(node: dict[str, Any]) -> Any:
    if node["type"] == "TermExpression" and node["children"][0]["type"] == "LiteralTerm":
        result = _literal(node["children"][0])([])
        return result[0] if result else None
    raise Unsupported("parameter is not a literal")


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


# -- criteria read straight off one item -------------------------------------------------------
#: The criterion of a `where`/`all`/`exists` for one item: True or False when the item's shape makes
#: the answer certain (a plain string member with no `_shadow`, an integer `$this`), else None, and
#: the compiled general criterion decides. A predicate evaluates in the general criterion's order
#: and raises only where it would, so both give the same answer (pinned in test_fastpath.py).
Predicate = Callable[[Any], bool | None]


def _predicate(node: dict[str, Any]) -> Predicate | None:
    """The predicate for a criterion of these shapes, else None: `name = 'literal'`, `name !=
    'literal'`, `name.startsWith('x')`, `name.endsWith('x')`, `$this < 7` (any order operator and
    an integer), `name.count() <= 1`, `p.not()`, `p and q`, `p or q`, `(p)`."""
    kind = node["type"]
    if kind == "TermExpression" and node["children"][0]["type"] == "ParenthesizedTerm":
        return _predicate(node["children"][0]["children"][0])
    if kind == "EqualityExpression":
        return _equals_predicate(node)
    if kind == "InequalityExpression":
        return _order_predicate(node)
    if kind == "InvocationExpression":
        return _call_predicate(node)
    if kind in ("AndExpression", "OrExpression"):
        left, right = (_predicate(c) for c in node["children"])
        if left is None or right is None:
            return None
        return _both(left, right) if _op(node) == "and" else _either(left, right)
    return None


def _simple_member(node: dict[str, Any]) -> str | None:
    """`name` when the node is a bare lower-case member of the focus (`linkId`, `code`)."""
    if node["type"] != "TermExpression":
        return None
    term = node["children"][0]
    if term["type"] != "InvocationTerm" or term["children"][0]["type"] != "MemberInvocation":
        return None
    name = _identifier(term["children"][0]["children"][0])
    return None if name[:1].isupper() else name


def _is_this(node: dict[str, Any]) -> bool:
    if node["type"] != "TermExpression":
        return False
    term = node["children"][0]
    return bool(
        term["type"] == "InvocationTerm" and term["children"][0]["type"] == "ThisInvocation"
    )


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


def _where_equals(base: FastFn, crit: FastFn, name: str, literal: str) -> FastFn:
    """`where(name = 'literal')` (the commonest criterion: `linkId = 'dialog-3'`), the equality
    predicate inlined into the loop."""
    shadow = "_" + name

    def where(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for i in base(items):
            if isinstance(i, dict):
                value = i.get(name)
                if type(value) is str and shadow not in i:
                    if value == literal:
                        out.append(i)
                        continue
                    if value[:1] in _NOT_DATE_START or not _DATE_LIKE.match(value):
                        continue
            if _keep(crit, i):
                out.append(i)
        return out

    return where


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
        member = _member_of(name)
        return lambda item: order(len(member([item])), bound)
    return None


def _call_predicate(node: dict[str, Any]) -> Predicate | None:
    base_node, call = node["children"]
    if call["type"] != "FunctionInvocation":
        return None
    function, params = _function_parts(call)
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


def _where_predicate(base: FastFn, pred: Predicate, crit: FastFn) -> FastFn:
    def where(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for i in base(items):
            keep = pred(i)
            if keep is None:
                keep = _keep(crit, i)
            if keep:
                out.append(i)
        return out

    return where


def _exists_predicate(base: FastFn, pred: Predicate, crit: FastFn) -> FastFn:
    def exists(items: list[Any]) -> list[Any]:
        for i in base(items):
            keep = pred(i)
            if keep is None:
                keep = _keep(crit, i)
            if keep:
                return [True]
        return [False]

    return exists


def _all_predicate(base: FastFn, pred: Predicate, crit: FastFn) -> FastFn:
    def all_hold(items: list[Any]) -> list[Any]:
        for i in base(items):
            holds = pred(i)
            if holds is None:
                holds = _all_holds(crit, i)
            if not holds:
                return [False]
        return [True]

    return all_hold


def _where_equals_indexed(
    base: FastFn, crit: FastFn, name: str, literal: str, base_node: dict[str, Any]
) -> FastFn:
    """`where(name = 'literal')` at the root reads an index of `base` by `name`, built once per
    Focus and shared by every literal (eleven DIALOG rules, `item.where(linkId = 'dialog-N')`, scan
    the items once). An item `_where_equals` would decide without the general criterion is indexed
    by its value; every other item is kept aside and asked the criterion on each call, as before."""
    plain = _where_equals(base, crit, name, literal)
    key = ("index", _shared_key(base_node), name)

    def where(items: list[Any]) -> list[Any]:
        if type(items) is not Focus:
            return plain(items)
        index: _Index | None = items.memo.get(key)
        if index is None:
            index = items.memo[key] = _Index(base(items), name)
        at = index.certain.get(literal)
        if not index.uncertain:
            return [index.found[p] for p in at] if at else []
        kept = [p for p in index.uncertain if _keep(crit, index.found[p])]
        return [index.found[p] for p in sorted([*(at or ()), *kept])]

    return where


class _Index:
    """Positions in `found` by the plain value of member `name`; `uncertain`: the rest."""

    __slots__ = ("certain", "found", "uncertain")

    def __init__(self, found: list[Any], name: str) -> None:
        shadow = "_" + name
        self.found = found
        self.certain: dict[str, list[int]] = {}
        self.uncertain: list[int] = []
        for p, i in enumerate(found):
            if isinstance(i, dict):
                value = i.get(name)
                if (
                    type(value) is str
                    and shadow not in i
                    and (value[:1] in _NOT_DATE_START or not _DATE_LIKE.match(value))
                ):
                    self.certain.setdefault(value, []).append(p)
                    continue
            self.uncertain.append(p)


def _keep(crit: FastFn, item: Any) -> bool:
    result = crit([item])
    if not result:
        return False
    if isinstance(result[0], bool):
        return result[0]
    raise Fallback("where criterion is not boolean")


def _all_holds(crit: FastFn, item: Any) -> bool:
    result = crit([item])
    if result == [True]:
        return True
    if result == [] or result == [False]:
        return False
    raise Fallback("all criterion is not boolean")


def _literal(node: dict[str, Any]) -> FastFn:
    inner = node["children"][0] if node.get("children") else None
    if inner is None:
        raise Unsupported("literal")
    kind, text = inner["type"], str(inner.get("text", ""))
    value: Any
    if kind == "StringLiteral":
        value = text[1:-1].replace("\\'", "'").replace('\\"', '"').replace("\\\\", "\\")
        if "\\" in value:
            raise Unsupported("escape in string literal")
    elif kind == "BooleanLiteral":
        value = text == "true"
    elif kind == "NumberLiteral" and re.fullmatch(r"\d+", text):
        value = int(text)
    elif kind == "NullLiteral":
        return lambda _items: []
    else:
        raise Unsupported(kind)
    constant = [value]
    return lambda _items: constant


def _parenthesized(node: dict[str, Any]) -> FastFn:
    return _expr(node["children"][0])


def _op(node: dict[str, Any]) -> str:
    return str(node["terminalNodeText"][0])


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


def _string_constant(node: dict[str, Any]) -> str | None:
    """The value of a string literal that cannot be read as a date, else None."""
    try:
        value = _literal_value(node)
    except Unsupported:
        return None
    if isinstance(value, str) and not _DATE_LIKE.match(value):
        return value
    return None


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

_HANDLERS: Final[dict[str, Callable[[dict[str, Any]], FastFn]]] = {
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
