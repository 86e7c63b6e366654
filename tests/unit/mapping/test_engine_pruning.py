"""The engine prunes only what a rule may have left empty or shared: these are the rules that may
(a const container, a setting, a transform giving "", a fixed index that pads a list), and the
trace that is built only when read."""

from __future__ import annotations

from typing import Any

from adapter.mapping.engine import apply_mapping
from adapter.mapping.loader import ConceptMaps
from adapter.mapping.paths import setter
from adapter.mapping.spec import parse_spec
from adapter.mapping.trace import TraceEntry
from adapter.sources.record import SourceRecord, prefix_groups


def _spec(rules: list[dict[str, Any]], settings: dict[str, Any] | None = None) -> Any:
    return parse_spec(
        {
            "id": "t",
            "version": "1",
            "status": "active",
            "source": {"kind": "csv"},
            "settings": settings or {},
            "resources": [{"name": "x", "type": "Basic", "id": ["'fixed'"], "rules": rules}],
        },
        "t.yaml",
    )


def _run(rules: list[dict[str, Any]], values: dict[str, str], **kw: Any) -> Any:
    record = SourceRecord("csv", "t", values, group_finder=prefix_groups)
    return apply_mapping(_spec(rules, **kw), record, ConceptMaps())


def test_a_const_container_is_pruned_and_never_shared_with_the_mapping():
    spec = _spec([{"const": {"text": "t", "coding": [], "empty": ""}, "to": "code"}])
    const = spec.resources[0].rules[0].const
    out = apply_mapping(spec, SourceRecord("csv", "t", {}), ConceptMaps()).resources[0].resource
    assert out["code"] == {"text": "t"}
    assert out["code"] is not const
    assert const == {"text": "t", "coding": [], "empty": ""}


def test_a_setting_container_is_copied_into_each_output():
    spec = _spec([{"setting": "team", "to": "extension"}], settings={"team": {"id": "cmht"}})
    first = apply_mapping(spec, SourceRecord("csv", "t", {}), ConceptMaps()).resources[0]
    second = apply_mapping(spec, SourceRecord("csv", "t", {}), ConceptMaps()).resources[0]
    assert first.resource["extension"] == {"id": "cmht"}
    assert first.resource["extension"] is not second.resource["extension"]


def test_a_transform_that_gives_an_empty_string_leaves_no_element():
    out = _run([{"from": "code", "to": "text.value", "transform": "upper"}], {"code": "  "})
    assert "text" not in out.resources[0].resource


def test_a_fixed_index_that_pads_a_list_leaves_no_empty_dicts():
    out = _run([{"from": "v", "to": "note[2].text"}], {"v": "x"})
    assert out.resources[0].resource["note"] == [{"text": "x"}]
    assert setter("note[2].text").may_pad
    assert not setter("note[0].text").may_pad
    assert not setter("note[+].text").may_pad


def test_a_block_whose_rules_wrote_only_empties_is_dropped_with_its_trace():
    rules = [{"to": "item[+]", "rules": [{"from": "v", "to": "x", "transform": "upper"}]}]
    out = _run(rules, {"v": " "})
    assert "item" not in out.resources[0].resource
    assert out.trace == []


def test_the_trace_is_built_on_first_read_and_then_kept():
    rules = [{"to": "item[+]", "rules": [{"from": "v", "to": "x"}]}, {"const": "c", "to": "y"}]
    result = _run(rules, {"v": "1"})
    trace = result.trace
    ref = f"Basic/{result.resources[0].resource['id']}"
    assert trace == [
        TraceEntry(ref, "item[0].x", "v", "t@1#x.rules[0].rules[0]", "v"),
        TraceEntry(ref, "y", "const", "t@1#x.rules[1]", ""),
    ]
    assert result.trace is trace
    result.trace = []
    assert result.trace == []


def test_unused_field_issues_are_equal_from_record_to_record():
    first = _run([], {"a": "1"}).issues
    second = _run([], {"a": "2"}).issues
    assert first == second
    assert [i.text for i in first] == ["Source field a is not mapped"]
