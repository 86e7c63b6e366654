"""Jurisdiction read from the data: the Welsh ODS walk keeps its depth limit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from adapter.clock import FixedClock
from adapter.context import ValidationContext
from adapter.policy import jurisdiction
from adapter.policy.vocab import ODS_SYSTEM

CTX = ValidationContext(clock=FixedClock(datetime(2026, 6, 1, 9, tzinfo=UTC)))


def _at_level(level: int, value: str = "7A1") -> dict[str, Any]:
    """A resource whose ODS identifier dict sits `level` containers (dicts and lists, alternating)
    below the resource itself (level 0)."""
    node: Any = {"system": ODS_SYSTEM, "value": value}
    for i in range(level):
        node = [node] if (level - i) % 2 == 0 else {"x": node}
    return node  # type: ignore[no-any-return]


@pytest.mark.parametrize("level", [0, 1, 2, 7, 8])
def test_a_welsh_health_board_identifier_down_to_level_8_is_found(level: int) -> None:
    assert jurisdiction.detect(_at_level(level), CTX) == "wales"


@pytest.mark.parametrize("level", [9, 10])
def test_an_identifier_below_level_8_is_not_looked_at(level: int) -> None:
    assert jurisdiction.detect(_at_level(level), CTX) is None


@pytest.mark.parametrize("value", ["7a3", "7A7XX"])
def test_the_prefix_is_matched_case_insensitively(value: str) -> None:
    resource = {
        "resourceType": "CarePlan",
        "author": [{"identifier": {"system": ODS_SYSTEM, "value": value}}],
    }
    assert jurisdiction.detect(resource, CTX) == "wales"


def test_an_english_or_other_system_identifier_is_not_welsh() -> None:
    resource = {
        "resourceType": "CarePlan",
        "contained": [
            {"identifier": [{"system": ODS_SYSTEM, "value": "RT5"}]},
            {"identifier": [{"system": "urn:other", "value": "7A1"}]},
        ],
    }
    assert jurisdiction.detect(resource, CTX) is None
