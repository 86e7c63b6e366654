"""Which nation's law a resource falls under, read from the data, so the right pack applies.

Wales is detected when the resource (or anything it contains) carries:
- an ODS organisation identifier starting `7A` (the seven Welsh health boards, 7A1-7A7), as a
  performer, author, requester, appointing body or contained Organization; or
- an explicit tag: meta.tag `{CS}policy-jurisdiction#wales` or `urn:iso:std:iso:3166:-2#GB-WLS`; or
- the caller's fact `jurisdiction=wales` (ValidationContext.facts); or
- a code that exists only under the Measure in its own `category` or `type` (a Welsh Care and
  Treatment Plan, a Part 3 request or report): the CSV care-plan mapping emits `welsh-ctp` with no
  health board identifier, and such a plan is Welsh whoever sends it.
An explicit `england` tag or fact wins over identifiers. Patient addresses are deliberately ignored:
the Measure follows the provider, not where the patient lives (002.md §6.21).

The identifier walk visits every dict and list of the resource, and runs on every judged resource
of every write (10 us for a DIALOG response of 22 items, a sixth of its policy time; 16 us for a
discharge Composition). Most resources carry no Welsh ODS code at all, so `_may_carry_welsh_ods`
first asks one serialisation in C whether the ODS system URI and a value starting `7A` both occur
anywhere; only then does the walk decide.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable
from typing import Any, Final, Literal

from adapter.context import ValidationContext
from adapter.fhir.types import JsonObject
from adapter.policy.vocab import (
    ISO_3166_2,
    JURISDICTION_SYSTEM,
    ODS_SYSTEM,
    WALES_ONLY_CODES,
    WELSH_HEALTH_BOARD_ODS_PREFIX,
)

Nation = Literal["england", "wales"]
_CONTAINERS: Final = (dict, list)


def detect(resource: JsonObject, ctx: ValidationContext) -> Nation | None:
    fact = ctx.facts.get("jurisdiction")
    if fact in ("england", "wales"):
        return fact  # type: ignore[return-value]  # narrowed by the membership test
    for tag in (resource.get("meta") or {}).get("tag") or []:
        system, code = tag.get("system"), tag.get("code")
        if system == JURISDICTION_SYSTEM and code in ("england", "wales"):
            return "wales" if code == "wales" else "england"
        if system == ISO_3166_2 and code in ("GB-WLS", "GB-ENG"):
            return "wales" if code == "GB-WLS" else "england"
    if _has_wales_only_code(resource):
        return "wales"
    if not _may_carry_welsh_ods(resource):
        return None
    return "wales" if _has_welsh_ods(resource, 0) else None


_ODS_SYSTEM_BYTES: Final = ODS_SYSTEM.encode("ascii")
#: How a str `v` with `v.upper().startswith("7A")` begins in marshal's output (UTF-8): only "7"
#: uppercases to "7", and only "a", "A" and U+1E9A (which uppercases to "A" + U+02BE) to a
#: string starting "A"; test_jurisdiction_walk.py checks this against every code point.
_WELSH_VALUE_STARTS: Final = tuple(f"7{c}".encode() for c in ("A", "a", "\u1e9a"))


def _may_carry_welsh_ods(resource: JsonObject) -> bool:
    """False only when the walk would find nothing: no value anywhere equals the ODS system URI,
    or no value starts as a Welsh health board code does.

    `marshal` accepts exact built-in types only (a str or dict subclass, a Decimal, nesting past
    its depth limit: ValueError), so when it succeeds every value is a plain dict, list, str,
    number, bool, None (or tuple, set, bytes). Of those only a str equals the URI, and only a str
    has a `str()` starting "7A" (digits, "e", "j", brackets or words otherwise). marshal writes a
    str's characters as they are (UTF-8 when not ASCII) the first time it meets it; later
    occurrences refer back. Whatever marshal refuses goes to the walk.
    """
    try:
        data = marshal.dumps(resource)
    except ValueError:
        return True
    return _ODS_SYSTEM_BYTES in data and any(start in data for start in _WELSH_VALUE_STARTS)


def _has_wales_only_code(resource: JsonObject) -> bool:
    for key in ("category", "type"):
        concepts = resource.get(key)
        for concept in concepts if isinstance(concepts, list) else [concepts]:
            if not isinstance(concept, dict):
                continue
            for coding in concept.get("coding") or []:
                if (coding.get("system"), coding.get("code")) in WALES_ONLY_CODES:
                    return True
    return False


def _has_welsh_ods(node: Any, depth: int) -> bool:
    """Walk of dicts and lists only, to depth 8 (runs on every resource of every write, so it
    recurses without building a stack of tuples and looks at a dict's values only by type)."""
    if depth > 8:
        return False
    if isinstance(node, dict):
        if node.get("system") == ODS_SYSTEM and str(node.get("value", "")).upper().startswith(
            WELSH_HEALTH_BOARD_ODS_PREFIX
        ):
            return True
        children: Iterable[Any] = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return False
    if depth == 8:
        return False
    deeper = depth + 1
    for value in children:
        if isinstance(value, _CONTAINERS) and _has_welsh_ods(value, deeper):
            return True
    return False
