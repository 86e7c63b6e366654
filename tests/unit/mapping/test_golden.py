"""Every golden case: output equals expected.json, and the invariants hold over the output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapter.fhir.references import iter_references
from tests.unit.mapping.golden import cases, compare, record_for, run_case

CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_golden_case_matches_expected_json(case: Path):
    diff = compare(case, run_case(case))
    assert not diff, "\n".join(diff)


def _empty_paths(node: Any, path: str = "") -> list[str]:
    if node in ({}, [], "", None):
        return [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _empty_paths(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _empty_paths(v, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_golden_case_invariants(case: Path):
    result = run_case(case)
    refs = [m.reference for m in result.resources]
    assert len(refs) == len(set(refs)), "ids unique"
    for m in result.resources:
        assert _empty_paths(m.resource) == [], f"no empty elements in {m.reference}"
        contained = {f"#{c['id']}" for c in m.resource.get("contained", [])}
        for _, ref in iter_references(m.resource, m.resource["resourceType"]):
            if (
                "reference" not in ref
            ):  # a logical reference (identifier), e.g. the linked RiskAssessment
                continue
            assert ref["reference"] in refs or ref["reference"] in contained, (
                f"{m.reference} -> {ref['reference']} resolves in the output (or is contained)"
            )
        assert json.loads(json.dumps(m.resource)) == m.resource
    record = record_for(case)
    reported = result.used | set(result.unmapped) | set(result.ignored)
    if not any(i.is_blocking for i in result.issues):
        assert set(record.non_empty_keys()) <= reported, "every source field is used or reported"
    unmapped_issues = {i.expression for i in result.issues if i.severity == "information"}
    assert set(result.unmapped) | set(result.ignored) <= unmapped_issues, (
        "each one as an information issue"
    )


def test_every_mapping_has_a_golden_case():
    from tests.unit.mapping.golden import registry

    with_cases = {c.parent.name for c in CASES}
    assert set(registry().mappings) <= with_cases
