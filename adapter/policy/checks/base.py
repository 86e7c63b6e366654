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
    for step in _steps(path):
        nxt: list[Any] = []
        for item in current:
            if not isinstance(item, dict):
                continue
            if step.startswith("extension(") and step.endswith(")"):
                url = step[len("extension(") : -1]
                nxt.extend(e for e in item.get("extension") or [] if e.get("url") == url)
                continue
            if step == "value":
                nxt.extend(v for k, v in item.items() if k.startswith("value"))
                continue
            name, _, condition = step.partition("[")
            value = item.get(name)
            if condition:
                key, _, wanted = condition.rstrip("]").partition("=")
                items = value if isinstance(value, list) else [value] if value is not None else []
                nxt.extend(i for i in items if wanted in {str(v) for v in values(i, key)})
                continue
            if isinstance(value, list):
                nxt.extend(value)
            elif value is not None:
                nxt.append(value)
        current = nxt
    return current


@functools.cache
def _steps(path: str) -> tuple[str, ...]:
    return tuple(_split_steps(path))


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
