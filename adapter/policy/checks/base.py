"""Helpers shared by the named checks: dotted-path reads, extensions, reference resolution."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from adapter.context import ValidationContext
from adapter.fhir.types import JsonObject
from adapter.policy.calendar import parse_fhir_instant


@dataclass(frozen=True, slots=True)
class Finding:
    """One failure of a check: `detail` is safe to show (dates, counts, codes; never patient data)."""

    detail: str | None = None
    location: str | None = None


def values(node: Any, path: str) -> list[Any]:
    """Values at a dotted path, flattening lists: `activity.detail.code.coding`.

    A step `extension(url)` selects extensions by url; `value` reads the value[x] element;
    `name[key.path=value]` keeps the items of `name` where `key.path` holds `value`.
    """
    current: list[Any] = [node]
    for kind, name, arg in _steps(path):
        nxt: list[Any] = []
        for item in current:
            if not isinstance(item, dict):
                continue
            if kind == _MEMBER:
                value = item.get(name)
                if isinstance(value, list):
                    nxt.extend(value)
                elif value is not None:
                    nxt.append(value)
            elif kind == _EXTENSION:
                nxt.extend(e for e in item.get("extension") or [] if e.get("url") == name)
            elif kind == _VALUE:
                nxt.extend(v for k, v in item.items() if k.startswith("value"))
            else:
                key, wanted = arg
                value = item.get(name)
                items = value if isinstance(value, list) else [value] if value is not None else []
                nxt.extend(i for i in items if wanted in {str(v) for v in values(i, key)})
        current = nxt
    return current


_MEMBER, _EXTENSION, _VALUE, _WHERE = range(4)
#: one parsed step: (kind, name or extension url, (key path, wanted value) for `_WHERE`)
_Step = tuple[int, str, tuple[str, str]]


@functools.cache
def _steps(path: str) -> tuple[_Step, ...]:
    """The path's steps, parsed once per distinct path (the checks' paths come from the packs)."""
    return tuple(_parse_step(step) for step in _split_steps(path))


def _parse_step(step: str) -> _Step:
    if step.startswith("extension(") and step.endswith(")"):
        return _EXTENSION, step[len("extension(") : -1], ("", "")
    if step == "value":
        return _VALUE, step, ("", "")
    name, _, condition = step.partition("[")
    if condition:
        key, _, wanted = condition.rstrip("]").partition("=")
        return _WHERE, name, (key, wanted)
    return _MEMBER, name, ("", "")


def _split_steps(path: str) -> Iterator[str]:
    depth, start = 0, 0
    for i, ch in enumerate(path):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "." and depth == 0:
            yield path[start:i]
            start = i + 1
    if path[start:]:
        yield path[start:]


def first(node: Any, path: str) -> Any:
    found = values(node, path)
    return found[0] if found else None


def instant(node: Any, path: str) -> datetime | None:
    """The first date/dateTime at `path` (Period -> its start), as an aware datetime."""
    value = first(node, path)
    if isinstance(value, dict):
        value = value.get("start") or value.get("end")
    return parse_fhir_instant(value)


def day(node: Any, path: str) -> date | None:
    moment = instant(node, path)
    return moment.date() if moment else None


def resolve(resource: JsonObject, reference: Any, ctx: ValidationContext) -> JsonObject | None:
    """A Reference (dict or string): contained `#id` first, then the Bundle, then the store."""
    ref = reference.get("reference") if isinstance(reference, dict) else reference
    if not isinstance(ref, str) or not ref:
        return None
    if ref.startswith("#"):
        for contained in resource.get("contained") or []:
            if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                return contained
        return None
    return ctx.resolve(ref)


def codes(node: Any, path: str, system: str) -> set[str]:
    return {
        str(c.get("code"))
        for c in values(node, path)
        if isinstance(c, dict) and c.get("system") == system and c.get("code") is not None
    }
