"""A profile compiled from its StructureDefinition's differential, as profiles.py applies it.

`compile_profile` keeps the differential elements and compiles their error-severity FHIRPath
constraints once; a `CompiledProfile` derives the value filters that select each slice's members.
`select_nodes` finds the instance nodes an element id (slices included) names, with their parents, for
the registry's cardinality and value rules. The small JSON helpers (canonical url, `fixed[x]` /
`pattern[x]` lookup, pattern containment) are shared with profiles.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from adapter.conformance.invariants import Invariant, compile_invariant
from adapter.fhir.types import JsonObject, JsonValue

Located = tuple[JsonValue, str]  # (instance node, its FHIRPath-style path)


def canonical_url(url: str) -> str:
    """The url without its `|version`."""
    return url.split("|", 1)[0]


def prefixed(el: JsonObject, prefix: str) -> tuple[str, JsonValue] | None:
    """The (key, value) of `el`'s `fixed[x]` or `pattern[x]` (by `prefix`), or None."""
    for k, v in el.items():
        if k.startswith(prefix) and k[len(prefix) :][:1].isupper():
            return k, v
    return None


def contains_pattern(value: JsonValue, pattern: JsonValue) -> bool:
    """Whether `value` holds everything in `pattern` (pattern[x]: lists by any member)."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and contains_pattern(value[k], v) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(value, list) and all(
            any(contains_pattern(x, p) for x in value) for p in pattern
        )
    return bool(value == pattern)


def member_of(node: JsonValue, name: str) -> JsonValue:
    return node.get(name) if isinstance(node, dict) else None


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    slice: str | None


@dataclass
class CompiledProfile:
    url: str
    id: str
    type: str
    elements: list[JsonObject]
    constraints: dict[str, list[Invariant]] = field(default_factory=dict)

    @cached_property
    def slice_filters(self) -> dict[str, list[tuple[str, JsonValue]]]:
        """element id of a slice -> [(child name, fixed/pattern value)] that select its members."""
        out: dict[str, list[tuple[str, JsonValue]]] = {}
        for el in self.elements:
            eid = str(el.get("id", el["path"]))
            own = prefixed(el, "fixed") or prefixed(el, "pattern")
            if el.get("sliceName") and ":" in eid.rsplit(".", 1)[-1] and own is not None:
                # a `$this` pattern/value discriminator: the slice's own value selects members
                out.setdefault(eid, []).append(("$this", own[1]))
            head, _, child = eid.rpartition(".")
            if ":" not in head.rsplit(".", 1)[-1]:
                continue
            fixed = prefixed(el, "fixed") or prefixed(el, "pattern")
            if fixed is not None:
                out.setdefault(head, []).append((child, fixed[1]))
        return out


def compile_profile(url: str, sd: JsonObject) -> CompiledProfile:
    """The profile of `sd`'s differential (elements with a path), its constraints compiled."""
    elements = [e for e in sd["differential"]["element"] if isinstance(e, dict) and "path" in e]
    profile = CompiledProfile(url, str(sd.get("id", url)), str(sd.get("type")), elements)
    for el in elements:
        for c in el.get("constraint") or []:
            if (
                c.get("severity") == "error"
                and isinstance(c.get("expression"), str)
                # fhirpathpy 2.2 gives wrong type() results on %context/%resource: never
                # judge with it (counts as passed, like any invariant we cannot evaluate)
                and ".type()" not in c["expression"]
            ):
                inv = compile_invariant(str(c.get("key")), c["expression"], str(c.get("human", "")))
                if inv is not None:
                    profile.constraints.setdefault(str(el.get("id", el["path"])), []).append(inv)
    return profile


def select_nodes(
    profile: CompiledProfile,
    resource: JsonObject,
    eid: str,
) -> Iterator[tuple[Located, list[Located]]]:
    """(parent, children) pairs for the element id, slices applied."""
    parts = eid.split(".")
    parents: list[Located] = [(resource, parts[0])]
    prefix = parts[0]
    for i, part in enumerate(parts[1:], start=1):
        name, _, slice_name = part.partition(":")
        prefix = f"{prefix}.{part}"
        last = i == len(parts) - 1
        next_parents: list[Located] = []
        for node, path in parents:
            kids = list(child_nodes(node, path, name))
            if slice_name:
                filters = profile.slice_filters.get(prefix, [])
                kids = [
                    (k, p)
                    for k, p in kids
                    if all(
                        contains_pattern(k if f == "$this" else member_of(k, f), v)
                        for f, v in filters
                    )
                ]
            if last:
                yield (node, path), kids
            next_parents += kids
        parents = next_parents
    if len(parts) == 1:
        yield (resource, parts[0]), [(resource, parts[0])]


def child_nodes(node: JsonValue, path: str, name: str) -> Iterator[Located]:
    if not isinstance(node, dict):
        return
    keys = (
        [name]
        if not name.endswith("[x]")
        else [k for k in node if k.startswith(name[:-3]) and k[len(name) - 3 :][:1].isupper()]
    )
    for key in keys:
        value = node.get(key)
        if value is None:
            continue
        if isinstance(value, list):
            for j, v in enumerate(value):
                yield v, f"{path}.{key}[{j}]"
        else:
            yield value, f"{path}.{key}"
