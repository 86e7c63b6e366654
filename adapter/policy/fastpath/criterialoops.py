"""The loops of `where`/`all`/`exists` that ask an item criterion (criteria.py) before the
compiled general criterion, and `where(name = 'literal')` with its per-Focus index.

`_where_equals` and `_Index` inline `criteria._equals_predicate` (the commonest criterion,
`linkId = 'dialog-3'`): the three must decide the same items the same way.
"""

from __future__ import annotations

from typing import Any

from adapter.policy.fastpath.criteria import Predicate
from adapter.policy.fastpath.dispatch import FastFn
from adapter.policy.fastpath.focus import Focus, _shared_key
from adapter.policy.fastpath.values import _DATE_LIKE, _NOT_DATE_START, _all_holds, _keep


def _where_equals(base: FastFn, crit: FastFn, name: str, literal: str) -> FastFn:
    """`where(name = 'literal')` (the commonest criterion: `linkId = 'dialog-3'`), the equality
    predicate (`criteria._equals_predicate`) inlined into the loop."""
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
