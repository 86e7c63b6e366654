"""Required bindings: membership of codes in the value sets expanded from the R4 definitions.

A value set or code system that cannot be expanded offline (UCUM, BCP 47, MIME types) is recorded as
"any code in that system", so we never raise an error we cannot justify.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from adapter.conformance.definitions import core_definitions
from adapter.fhir.types import JsonValue

ValueSetCodes = Mapping[str, frozenset[str] | None]


@cache
def core_valueset(url: str) -> ValueSetCodes | None:
    raw = core_definitions().valuesets.get(url)
    if raw is None:
        return None
    return {
        system: (frozenset(codes) if codes is not None else None) for system, codes in raw.items()
    }


def code_in(vs: ValueSetCodes, code: str) -> bool:
    """For a bare `code` element: in any system of the value set."""
    return any(codes is None or code in codes for codes in vs.values())


def coding_in(vs: ValueSetCodes, coding: Mapping[str, JsonValue]) -> bool:
    system, code = coding.get("system"), coding.get("code")
    if not isinstance(system, str) or not isinstance(code, str) or system not in vs:
        return False
    codes = vs[system]
    return codes is None or code in codes
