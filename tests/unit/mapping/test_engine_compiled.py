"""Selectors, paths and pruning, which the engine parses once per distinct string: the cases the
golden mappings do not reach (negated `where`, `??` with a literal, `[+]` reads, shared consts)."""

from __future__ import annotations

from typing import Any

from adapter.mapping.engine import apply_mapping, get_path, prune_empty, set_path
from adapter.mapping.loader import ConceptMaps
from adapter.mapping.spec import parse_spec
from adapter.sources.record import SourceRecord, prefix_groups


def _spec(rules: list[dict[str, Any]]) -> Any:
    return parse_spec(
        {
            "id": "t",
            "version": "1",
            "status": "active",
            "source": {"kind": "csv"},
            "resources": [{"name": "x", "type": "Basic", "id": ["'fixed'"], "rules": rules}],
        },
        "t.yaml",
    )


def _record(values: dict[str, str]) -> SourceRecord:
    return SourceRecord("csv", "t", values, group_finder=prefix_groups)


def _map(rules: list[dict[str, Any]], values: dict[str, str]) -> Any:
    result = apply_mapping(_spec(rules), _record(values), ConceptMaps())
    return result.resources[0].resource if result.resources else None


def test_alternatives_take_the_first_present_and_a_literal_always_is():
    rules = [
        {"from": "a ?? b", "to": "first"},
        {"from": "missing ?? 'fallback'", "to": "literal"},
        {"from": "'x ?? y'", "to": "split_first"},
        {"from": "''", "to": "empty_literal"},
    ]
    out = _map(rules, {"a": "", "b": "B"})
    assert out["first"] == "B"
    assert out["literal"] == "fallback"
    assert "split_first" not in out  # `'x` and `y'` are two keys, neither present
    assert "empty_literal" not in out  # read as "", then pruned


def test_negated_where_keeps_every_instance_but_the_named_value():
    rules = [
        {
            "foreach": "item",
            "where": {"kind": "!skip"},
            "to": "kept[+]",
            "rules": [{"from": "v", "to": "value"}],
        }
    ]
    values = {
        "item[0].kind": "keep",
        "item[0].v": "1",
        "item[1].kind": "skip",
        "item[1].v": "2",
        "item[2].v": "3",
    }
    assert _map(rules, values)["kept"] == [{"value": "1"}, {"value": "3"}]


def test_absolute_and_selected_selectors_inside_a_group():
    rules = [
        {
            "foreach": "item",
            "to": "out[+]",
            "rules": [
                {"from": "v", "to": "local"},
                {"from": "/top", "to": "absolute"},
                {"from": "item(kind=b).v", "to": "selected"},
            ],
        }
    ]
    values = {
        "top": "T",
        "item[0].kind": "a",
        "item[0].v": "1",
        "item[1].kind": "b",
        "item[1].v": "2",
    }
    assert _map(rules, values)["out"] == [
        {"local": "1", "absolute": "T", "selected": "2"},
        {"local": "2", "absolute": "T", "selected": "2"},
    ]


def test_set_path_returns_the_concrete_path_and_get_path_cannot_read_an_append():
    target: dict[str, Any] = {}
    assert set_path(target, "a[+].b", 1) == "a[0].b"
    assert set_path(target, "a[+].b", 2) == "a[1].b"
    assert set_path(target, "c[01].d", 3) == "c[1].d"
    assert set_path(target, "e", 4) == "e"
    assert target == {"a": [{"b": 1}, {"b": 2}], "c": [{}, {"d": 3}], "e": 4}
    assert get_path(target, "a[1].b") == 2
    assert get_path(target, "a[+].b") is None
    assert get_path(target, "a[5].b") is None
    assert get_path(target, "bad]path") is None


def test_prune_empty_drops_only_empty_values_and_copies_every_container():
    const = {"keep": [0, False, 0.0, "x", {}], "drop": ["", None, {"z": []}]}
    pruned = prune_empty({"c": const, "n": None, "s": ""})
    assert pruned == {"c": {"keep": [0, False, 0.0, "x"]}}
    assert pruned["c"] is not const
    assert const["keep"] == [0, False, 0.0, "x", {}]  # the input is left as it was


def test_compiled_paths_read_and_write_as_the_general_walk_does():
    target: dict[str, Any] = {}
    assert set_path(target, "code.text", "t") == "code.text"
    assert set_path(target, "answer[1].valueInteger", 3) == "answer[1].valueInteger"
    assert set_path(target, "item[+]", {"linkId": "a"}) == "item[0]"
    assert target == {
        "code": {"text": "t"},
        "answer": [{}, {"valueInteger": 3}],
        "item": [{"linkId": "a"}],
    }
    assert get_path(target, "answer[1].valueInteger") == 3
    assert get_path(target, "answer[0].valueInteger") is None
    assert get_path(target, "answer[2].valueInteger") is None
    assert get_path(target, "code[0].text") is None  # a dict where a list should be
    assert get_path({"answer": ["x"]}, "answer[0].valueInteger") is None  # an item not a dict
    assert get_path({"answer": [None]}, "answer[0].valueInteger") is None
    assert get_path(["not", "a", "dict"], "answer[0].valueInteger") is None
    assert get_path({"item": "x"}, "item") == "x"
    assert get_path("x", "item") is None


def test_results_compare_equal_whether_or_not_their_trace_was_read():
    spec, record = _spec([{"from": "a", "to": "value"}]), _record({"a": "A"})
    read, unread = (apply_mapping(spec, record, ConceptMaps()) for _ in range(2))
    assert read.trace  # builds the trace of one of them only
    assert read == unread
    different = apply_mapping(spec, _record({"a": "B"}), ConceptMaps())
    assert different != unread
