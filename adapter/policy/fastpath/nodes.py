"""Reading fhirpathpy's parse-tree nodes: identifiers, operator symbols, function parameters,
literal constants (a literal compiles to a constant closure here)."""

from __future__ import annotations

import re
from typing import Any

from adapter.policy.fastpath.dispatch import FastFn
from adapter.policy.fastpath.errors import Unsupported
from adapter.policy.fastpath.values import _DATE_LIKE


def _identifier(node: dict[str, Any]) -> str:
    text = str(node.get("text") or node["terminalNodeText"][0])
    return text.strip("`")


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


def _op(node: dict[str, Any]) -> str:
    return str(node["terminalNodeText"][0])


def _string_constant(node: dict[str, Any]) -> str | None:
    """The value of a string literal that cannot be read as a date, else None."""
    try:
        value = _literal_value(node)
    except Unsupported:
        return None
    if isinstance(value, str) and not _DATE_LIKE.match(value):
        return value
    return None
