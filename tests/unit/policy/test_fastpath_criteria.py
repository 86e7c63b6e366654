"""Item criteria read in one step (`criteria._predicate`) answer as the general criterion does.

Covers the shapes read without a call per part: `startsWith`/`endsWith` on one member joined by
`and`/`or`/`not()`, `name.count() <op> n`, `name.exists()` and `name.ofType(type).exists()`, and
the member read with its choice types found in the loop (`access._member_of`).
"""

from __future__ import annotations

from typing import Any

import pytest
from fhirpathpy.parser import parse

from adapter.policy import fastpath
from adapter.policy.fastpath import Fallback, compile_fast

_ITEMS: list[Any] = [
    {"linkId": "dialog-1", "answer": [{"valueInteger": 3}]},
    {"linkId": "dialog-1-help", "answer": [{"valueBoolean": False}, {"valueBoolean": True}]},
    {"linkId": "dialog-2", "answer": []},
    {"linkId": "dialog-3", "answer": [None]},
    {"linkId": "dialog-4", "answer": [None, {"valueInteger": 1}]},
    {"linkId": "dialog-5", "answer": {"valueInteger": 2}},
    {"linkId": "dialog-6", "answer": None},
    {"linkId": "dialog-7", "_answer": {"extension": []}},
    {"linkId": "-help"},
    {"linkId": "other"},
    {"linkId": "2026-01-01"},
    {"linkId": ["dialog-1"]},
    {"linkId": 7},
    {"linkId": "dialog-8", "_linkId": {"extension": []}},
    {"valueInteger": 4},
    {"valueInteger": [4, 5]},
    {"valueInteger": []},
    {"valueInteger": [None]},
    {"valueInteger": None},
    {"valueInteger": 4, "_valueInteger": {}},
    {"valueIntegerString": "x"},
    {"valueBoolean": True},
    {"value": 3},
    {},
    "dialog-1",
    0,
    1,
    4,
    7,
    8,
    -3,
    2.5,
    True,
    False,
]


@pytest.mark.parametrize(
    "criterion",
    [
        "linkId.startsWith('dialog-')",
        "linkId.endsWith('-help').not()",
        "linkId.startsWith('dialog-') and linkId.endsWith('-help').not()",
        "linkId.startsWith('dialog-') or linkId.endsWith('-help')",
        "(linkId.startsWith('dialog-1') or linkId.startsWith('dialog-2')).not()",
        "answer.count() <= 1",
        "answer.count() > 0",
        "answer.count() = 1 or linkId.startsWith('d')",
        "value.ofType(integer).exists()",
        "valueInteger.exists()",
        "answer.exists()",
        "value.exists()",
        "$this >= 1 and $this <= 7",
        "$this > 1 and $this < 7",
        "$this >= 1 and answer.count() <= 1",
    ],
)
def test_item_predicate_agrees_with_the_general_criterion(criterion: str) -> None:
    node = parse(criterion)["children"][0]  # type: ignore[no-untyped-call]  # fhirpathpy is untyped
    pred, crit = fastpath._predicate(node), fastpath._expr(node)
    if criterion == "answer.count() = 1 or linkId.startsWith('d')":
        assert pred is None  # `=` of a count is not an item shape: the general criterion runs
        return
    assert pred is not None, criterion
    answered = 0
    for item in _ITEMS:
        try:
            got = pred(item)
        except Fallback:
            with pytest.raises(Fallback):
                crit([item])
            continue
        if got is not None:
            answered += 1
            assert [got] == crit([item]), (criterion, item)
    assert answered, criterion


def test_parts_on_different_members_are_not_joined() -> None:
    node = parse("linkId.startsWith('a') and text.startsWith('b')")["children"][0]  # type: ignore[no-untyped-call]  # fhirpathpy is untyped
    pred = fastpath._predicate(node)
    assert pred is not None
    assert pred({"linkId": "a", "text": "b"}) is True
    assert pred({"linkId": "a"}) is None  # `text` absent: the general criterion decides
    assert pred({"linkId": "x"}) is False


@pytest.mark.parametrize(
    ("expression", "resource", "expected"),
    [
        (
            "x.value",
            {"x": [{"valueInteger": 1}, {"valueString": "a"}, {"value": 2}, {}]},
            [1, "a", 2],
        ),
        ("x.value", {"x": [{"valueIntegerX": 1}, {"valueBoolean": None}]}, []),
        ("x.value", {"x": [{"valueInteger": [1, None, 2]}]}, [1, 2]),
        (
            "x.where(a.count() <= 1).count()",
            {"x": [{"a": [1, 2]}, {"a": 1}, {"a": [None, 1]}]},
            [2],
        ),
        (
            "x.all(value.ofType(integer).exists())",
            {"x": [{"valueInteger": 1}, {"valueString": "1"}]},
            [False],
        ),
        (
            "x.all(value.ofType(integer).exists())",
            {"x": [{"valueInteger": 1}, {"valueInteger": [2]}]},
            [True],
        ),
    ],
)
def test_fast_path_reads(expression: str, resource: dict[str, Any], expected: list[Any]) -> None:
    assert compile_fast(expression)([resource]) == expected


@pytest.mark.parametrize(
    "resource",
    [
        {"x": [{"valueInteger": 1, "_valueInteger": {}}]},
        {"x": [{"value": None, "_value": {}}]},
        {"x": [{"linkId": "d", "_valueString": {}, "valueString": "a"}]},
    ],
)
def test_a_shadowed_choice_value_falls_back(resource: dict[str, Any]) -> None:
    with pytest.raises(Fallback):
        compile_fast("x.value")([resource])
