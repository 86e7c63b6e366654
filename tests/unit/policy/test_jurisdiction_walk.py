"""The marshal precheck before the Welsh ODS walk never changes the answer.

`jurisdiction.detect` skips the walk when the ODS system URI, or a value starting as a Welsh health
board code does, occurs nowhere in the resource. Deciding
England vs Wales wrongly applies the wrong pack, so the skip is held to the walk itself over every
fixture resource, every depth up to and past the walk's limit, values marshal refuses (Decimal, a
str subclass equal to the URI, a dict subclass) and a few thousand random trees.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapter.clock import FixedClock
from adapter.context import ValidationContext
from adapter.policy import jurisdiction
from adapter.policy.scenarios import load_all
from adapter.policy.vocab import ODS_SYSTEM, WELSH_HEALTH_BOARD_ODS_PREFIX

ROOT = Path(__file__).resolve().parents[3]
CTX = ValidationContext(clock=FixedClock(datetime(2026, 6, 1, 9, tzinfo=UTC)))


class _Text(str):
    """A str subclass: marshal refuses it, so the walk must decide."""


class _Object(dict[str, Any]):
    """A dict subclass: marshal refuses it, so the walk must decide."""


def _walk_answer(resource: Any) -> str | None:
    """What `detect` answers without the precheck: the walk always runs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jurisdiction, "_may_carry_welsh_ods", lambda _resource: True)
        return jurisdiction.detect(resource, CTX)


def _subtrees(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _subtrees(value)
    elif isinstance(node, list):
        for value in node:
            yield from _subtrees(value)


_SYSTEMS: list[Any] = [ODS_SYSTEM, _Text(ODS_SYSTEM), "urn:other", None, ODS_SYSTEM + " "]
_VALUES: list[Any] = [
    "7A1",
    "7a3XX",
    "7\u1e9a4",
    "x7A1",
    "7B1",
    _Text("7A2"),
    "RT5",
    "",
    None,
    7,
    7.5,
    Decimal("7.1"),
    True,
]


def _random_tree(rng: random.Random, depth: int) -> Any:
    """Dicts and lists down to level 12, some holding ODS identifiers (Welsh or not)."""
    roll = rng.random()
    if depth >= 12 or roll < 0.2:
        return rng.choice([*_VALUES, [], {}, ODS_SYSTEM])
    if roll < 0.35:
        identifier = {"system": rng.choice(_SYSTEMS), "value": rng.choice(_VALUES)}
        return _Object(identifier) if rng.random() < 0.05 else identifier
    if roll < 0.65:
        return [_random_tree(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {f"k{i}": _random_tree(rng, depth + 1) for i in range(rng.randint(0, 3))}


def _nested(level: int, shape: str, identifier: dict[str, Any]) -> Any:
    """`identifier` `level` containers below the root, the containers given by `shape` (`d` a
    dict, `l` a list), innermost last."""
    node: Any = identifier
    for kind in reversed(shape[:level]):
        node = {"x": node} if kind == "d" else [node]
    return node


@pytest.mark.parametrize("level", range(12))
@pytest.mark.parametrize("shape", ["dddddddddddd", "dlllllllllll", "dldldldldldl"])
@pytest.mark.parametrize("system", [ODS_SYSTEM, _Text(ODS_SYSTEM)])
def test_an_identifier_at_any_level_gets_the_walks_answer(
    level: int, shape: str, system: str
) -> None:
    tree = _nested(level, shape, {"system": system, "value": "7A1"})
    expected = "wales" if level <= 8 else None
    assert jurisdiction._has_welsh_ods(tree, 0) is (expected == "wales")
    assert jurisdiction.detect(tree, CTX) == expected


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Observation", "performer": [{"value": "7A1"}]},
        {"resourceType": "Encounter", "serviceProvider": {"system": ODS_SYSTEM, "value": "RT5"}},
    ],
    ids=["no-ods-system", "no-welsh-value"],
)
def test_a_resource_without_both_parts_is_not_walked(resource: dict[str, Any]) -> None:
    assert jurisdiction._may_carry_welsh_ods(resource) is False
    assert jurisdiction.detect(resource, CTX) is None


def test_a_value_uppercasing_to_7a_is_walked() -> None:
    resource = {"resourceType": "Encounter", "x": {"system": ODS_SYSTEM, "value": "7\u1e9a1"}}
    assert jurisdiction._may_carry_welsh_ods(resource) is True
    assert jurisdiction.detect(resource, CTX) == "wales"


def test_the_value_starts_cover_every_code_point_that_uppercases_to_the_prefix() -> None:
    """Which two-character starts uppercase to `7A`, read from this Python's Unicode tables."""
    assert WELSH_HEALTH_BOARD_ODS_PREFIX == "7A"
    firsts = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).upper().startswith("7")}
    seconds = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).upper().startswith("A")}
    assert firsts == {"7"}
    starts = {f"7{c}".encode("utf-8", "surrogatepass") for c in seconds}
    assert starts == set(jurisdiction._WELSH_VALUE_STARTS)


@pytest.mark.parametrize(
    "resource",
    [
        {"valueDecimal": Decimal("1.5"), "x": {"system": ODS_SYSTEM, "value": "7A1"}},
        {"x": _Object({"system": ODS_SYSTEM, "value": "7A1"})},
        {"x": {"system": _Text(ODS_SYSTEM), "value": "7A1"}},
    ],
    ids=["decimal", "dict-subclass", "str-subclass"],
)
def test_values_marshal_refuses_are_walked(resource: dict[str, Any]) -> None:
    assert jurisdiction._may_carry_welsh_ods(resource) is True
    assert jurisdiction.detect(resource, CTX) == "wales"


def test_detect_agrees_with_the_walk_on_random_trees() -> None:
    rng = random.Random(20260601)
    welsh = 0
    for _ in range(3000):
        tree = {"resourceType": "Basic", "x": _random_tree(rng, 1)}
        expected = _walk_answer(tree)
        assert jurisdiction.detect(tree, CTX) == expected, tree
        welsh += expected == "wales"
    assert 300 < welsh < 2700  # the trees exercise both answers


def test_detect_agrees_with_the_walk_on_every_fixture_resource_and_part() -> None:
    checked = 0
    for scenario in load_all(ROOT / "fixtures" / "policy"):
        for resource in (scenario.resource, *scenario.bundle):
            for node in _subtrees(resource):
                if not isinstance(node, dict):
                    continue
                assert jurisdiction.detect(node, CTX) == _walk_answer(node)
                checked += 1
    assert checked > 500
