"""Compiling one parse-tree node: the handler table, looked up by node type.

The compiler is recursive (a function's criterion, an operator's operands are nodes too), so the
parts call `_expr` here rather than the compiler module; `compiler.py` fills `_HANDLERS` when it is
imported, which the package does first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from adapter.policy.fastpath.errors import Unsupported

#: A compiled expression: the focus collection in, the result collection out.
FastFn = Callable[[list[Any]], list[Any]]


#: node type -> the function compiling that node; filled by `compiler.py`
_HANDLERS: Final[dict[str, Callable[[dict[str, Any]], FastFn]]] = {}


def _expr(node: dict[str, Any]) -> FastFn:
    kind = node["type"]
    handler = _HANDLERS.get(kind)
    if handler is None:
        raise Unsupported(kind)
    return handler(node)
