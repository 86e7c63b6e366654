"""Comparing UCUM quantities: a small table of common units with their dimension and scale.

Enough to compare quantities across units of the same dimension (10000 m against 5 km) and to tell
incomparable ones apart (kg against [mi_i]). A unit not in the table cannot be judged, so callers
treat it as "unknown" and never report an error for it. Scales are the UCUM definitions
(ucum.org, the International Customary units by their exact metric values).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

UCUM_SYSTEM: Final = "http://unitsofmeasure.org"

#: code -> (dimension, factor to the base unit of that dimension)
_UNITS: Final[dict[str, tuple[str, Decimal]]] = {
    # length, base m
    "m": ("length", Decimal(1)),
    "km": ("length", Decimal(1000)),
    "cm": ("length", Decimal("0.01")),
    "mm": ("length", Decimal("0.001")),
    "[in_i]": ("length", Decimal("0.0254")),
    "[ft_i]": ("length", Decimal("0.3048")),
    "[yd_i]": ("length", Decimal("0.9144")),
    "[mi_i]": ("length", Decimal("1609.344")),
    # mass, base g
    "g": ("mass", Decimal(1)),
    "kg": ("mass", Decimal(1000)),
    "mg": ("mass", Decimal("0.001")),
    "ug": ("mass", Decimal("0.000001")),
    "[lb_av]": ("mass", Decimal("453.59237")),
    "[oz_av]": ("mass", Decimal("28.349523125")),
    # time, base s
    "s": ("time", Decimal(1)),
    "min": ("time", Decimal(60)),
    "h": ("time", Decimal(3600)),
    "d": ("time", Decimal(86400)),
    "wk": ("time", Decimal(604800)),
    # volume, base L
    "L": ("volume", Decimal(1)),
    "l": ("volume", Decimal(1)),
    "dL": ("volume", Decimal("0.1")),
    "mL": ("volume", Decimal("0.001")),
    "ml": ("volume", Decimal("0.001")),
}


def unit(code: str) -> tuple[str, Decimal] | None:
    """(dimension, factor to base) of a UCUM code we know, or None."""
    return _UNITS.get(code)


def compare(value_a: Decimal, code_a: str, value_b: Decimal, code_b: str) -> int | str | None:
    """-1, 0 or 1 comparing a with b; "incomparable" for different dimensions; None if unknown."""
    if code_a == code_b:
        return (value_a > value_b) - (value_a < value_b)
    ua, ub = unit(code_a), unit(code_b)
    if ua is None or ub is None:
        return None
    if ua[0] != ub[0]:
        return "incomparable"
    a, b = value_a * ua[1], value_b * ub[1]
    return (a > b) - (a < b)
