"""Element paths in the JSON a mapping builds (`a.b[0].c`, `[+]` to append), compiled once per
distinct path into a setter and a getter, and the pruning of empty elements that rules with no
source leave."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final, NamedTuple

from adapter.fhir.types import JsonObject

_SEGMENT: Final = re.compile(r"^(?P<name>[^\[\]]+)(?:\[(?P<index>\d+|\+)\])?$")


@lru_cache(maxsize=4096)
def _segments(path: str) -> tuple[tuple[str, str | None], ...]:
    """`a.b[0].c` -> ((a, None), (b, "0"), (c, None)), parsed once per distinct path."""
    out: list[tuple[str, str | None]] = []
    for part in path.split("."):
        m = _SEGMENT.match(part)
        if m is None:
            raise ValueError(f"bad path segment {part!r} in {path!r}")
        out.append((m["name"], m["index"]))
    return tuple(out)


#: `[+]` (append) in a compiled path; other indexes are the int they spell
_APPEND: Final = -1
_Compiled = tuple[tuple[str, int | None], ...]


@lru_cache(maxsize=4096)
def _compiled(path: str) -> tuple[_Compiled, str | None]:
    """The segments with their indexes as ints (`[+]` is _APPEND), and the concrete path set_path
    returns when that is fixed (no `[+]`): a rule's `to` is parsed once, not on every record."""
    segments = tuple(
        (name, None if index is None else _APPEND if index == "+" else int(index))
        for name, index in _segments(path)
    )
    if any(index == _APPEND for _, index in segments):
        return segments, None
    return segments, ".".join(name if i is None else f"{name}[{i}]" for name, i in segments)


@lru_cache(maxsize=4096)
def _readable(path: str) -> _Compiled | None:
    """The segments get_path walks, or None when nothing can be read there (a bad path, or `[+]`,
    which names an element not made yet)."""
    try:
        segments, concrete = _compiled(path)
    except ValueError:
        return None
    return segments if concrete is not None else None


class Setter(NamedTuple):
    """A compiled `set_path` for one path: `put(target, value)` returns the concrete path."""

    put: Callable[[Any, Any], str]
    #: True when a fixed index above 0 may pad a list with empty dicts, which pruning must remove
    may_pad: bool


def _walk_fixed(node: Any, name: str, index: int | None) -> Any:
    """One step down a fixed segment, creating the container (and padding a list) as needed."""
    if index is None:
        return node.setdefault(name, {})
    items = node.setdefault(name, [])
    while len(items) <= index:
        items.append({})
    return items[index]


@lru_cache(maxsize=4096)
def setter(path: str) -> Setter:
    """`set_path` for one path, specialised once: the common shapes (`status`, `code.text`,
    `item[+]`, paths with no `[+]`) skip the general walk and the building of the concrete path."""
    segments, fixed = _compiled(path)
    may_pad = any(index is not None and index > 0 for _, index in segments)
    head, (last_name, last_index) = segments[:-1], segments[-1]
    if fixed is not None:
        if not head and last_index is None:

            def put_name(target: Any, value: Any) -> str:
                target[last_name] = value
                return fixed

            return Setter(put_name, may_pad)

        if len(head) == 1 and last_index is None:
            ((head_name, head_index),) = head

            def put_one_down(target: Any, value: Any) -> str:
                """`code.text`, `answer[0].valueInteger`: one container, then the leaf."""
                _walk_fixed(target, head_name, head_index)[last_name] = value
                return fixed

            return Setter(put_one_down, may_pad)

        def put_fixed(target: Any, value: Any) -> str:
            node = target
            for name, index in head:
                node = _walk_fixed(node, name, index)
            if last_index is None:
                node[last_name] = value
            else:
                items = node.setdefault(last_name, [])
                while len(items) <= last_index:
                    items.append({})
                items[last_index] = value
            return fixed

        return Setter(put_fixed, may_pad)
    if not head:  # `item[+]`

        def put_append(target: Any, value: Any) -> str:
            items = target.setdefault(last_name, [])
            items.append(value)
            return f"{last_name}[{len(items) - 1}]"

        return Setter(put_append, may_pad)
    return Setter(lambda target, value: _set_walk(target, segments, value), may_pad)


def _set_walk(target: JsonObject, segments: _Compiled, value: Any) -> str:
    """The general walk: a path with `[+]` somewhere, building the concrete path as it goes."""
    node: Any = target
    concrete: list[str] = []
    last_i = len(segments) - 1
    for i, (name, index) in enumerate(segments):
        last = i == last_i
        if index is None:
            concrete.append(name)
            if last:
                node[name] = value
            else:
                node = node.setdefault(name, {})
            continue
        items = node.setdefault(name, [])
        if index == _APPEND:
            items.append(value if last else {})
            pos = len(items) - 1
        else:
            pos = index
            while len(items) <= pos:
                items.append({})
            if last:
                items[pos] = value
        concrete.append(f"{name}[{pos}]")
        if not last:
            node = items[pos]
    return ".".join(concrete)


def set_path(target: JsonObject, path: str, value: Any) -> str:
    """Sets `a.b[0].c` (or appends with `[+]`), creating containers; returns the concrete path."""
    return setter(path).put(target, value)


@lru_cache(maxsize=4096)
def getter(path: str) -> Callable[[Any], Any]:
    """`get_path` for one path, compiled once (the engine reads `linkId` of every item to sort)."""
    segments = _readable(path)
    if segments is None:
        return lambda _node: None
    if len(segments) == 1 and segments[0][1] is None:
        name = segments[0][0]
        return lambda node: node.get(name) if isinstance(node, dict) else None
    if len(segments) == 2 and segments[0][1] is not None and segments[1][1] is None:
        (list_name, _), (leaf_name, _) = segments
        index: int = segments[0][1]

        def get_item_leaf(node: Any) -> Any:
            """`answer[0].valueInteger`, the shape an aggregate reads from every item."""
            if not isinstance(node, dict):
                return None
            items = node.get(list_name)
            if not isinstance(items, list) or index >= len(items):
                return None
            item = items[index]
            return item.get(leaf_name) if isinstance(item, dict) else None

        return get_item_leaf
    return lambda node: _get_walk(node, segments)


def _get_walk(node: Any, segments: _Compiled) -> Any:
    for name, index in segments:
        if not isinstance(node, dict):
            return None
        node = node.get(name)
        if index is not None:
            if not isinstance(node, list) or index >= len(node):
                return None
            node = node[index]
        if node is None:
            return None
    return node


def get_path(node: Any, path: str) -> Any:
    """The value at a fixed path (no `[+]`), or None when any step is missing."""
    return getter(path)(node)


#: what prune_empty removes; compared with `in` (equality), as JSON values compare
_EMPTY: Final[tuple[Any, ...]] = ({}, [], "", None)


def prune_empty(node: Any) -> Any:
    """Removes empty dicts/lists/strings left by rules whose source was absent (no empty elements).

    Always returns fresh containers, so the output never shares a dict or list with the mapping
    file (a `const` or `setting` value). The common leaf types are tested by exact type first:
    a non-empty str, an int, a float or a bool is never equal to an empty value."""
    if isinstance(node, dict):
        out: dict[Any, Any] = {}
        for key, value in node.items():
            kind = type(value)
            if kind is str:
                if value:
                    out[key] = value
            elif kind is int or kind is float or kind is bool:
                out[key] = value
            elif isinstance(value, dict | list):
                pruned = prune_empty(value)
                if pruned:
                    out[key] = pruned
            elif value not in _EMPTY:
                out[key] = value
        return out
    if isinstance(node, list):
        kept: list[Any] = []
        for value in node:
            kind = type(value)
            if kind is str:
                if value:
                    kept.append(value)
            elif kind is int or kind is float or kind is bool:
                kept.append(value)
            elif isinstance(value, dict | list):
                pruned = prune_empty(value)
                if pruned:
                    kept.append(pruned)
            elif value not in _EMPTY:
                kept.append(value)
        return kept
    return node
