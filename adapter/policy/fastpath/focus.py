"""The per-resource subexpression cache: a `Focus` root and the memoised closures that use it."""

from __future__ import annotations

from typing import Any, Final

from adapter.policy.fastpath.dispatch import FastFn


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
