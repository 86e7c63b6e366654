"""The pipeline's one-walk working copy (`adapter.fhir.prepare.prepared_copy`) does exactly what the
three walks it replaced did: copy, normalise legacy identifier systems, rewrite Bundle-local
references. A difference would silently change what is stored (a reference left pointing at a
`urn:uuid`, or a legacy NHS-number system kept, so the patient is not found: HAZ-004)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapter.fhir.identifiers import NHS_NUMBER_SYSTEM, normalise_identifier_systems
from adapter.fhir.jsonio import copy_json
from adapter.fhir.prepare import prepared_copy

ROOT = Path(__file__).resolve().parents[3]


def _reference_rewrite(node: Any, mapping: dict[str, str]) -> None:
    """The rewrite the pipeline ran before the one-walk copy, kept as the reference."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref in mapping and "resourceType" not in node:
            node["reference"] = mapping[ref]
        for key, value in node.items():
            if not key.startswith("_"):
                _reference_rewrite(value, mapping)
    elif isinstance(node, list):
        for item in node:
            _reference_rewrite(item, mapping)


def _three_walks(resource: dict[str, Any], mapping: dict[str, str]) -> tuple[Any, int]:
    copy = copy_json(resource)
    changed = normalise_identifier_systems(copy)
    _reference_rewrite(copy, mapping)
    return copy, changed


LEGACY = "http://fhir.nhs.net/Id/nhs-number"


def _sample() -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": LEGACY, "value": "9990000018"}],
        "subject": {
            "reference": "urn:uuid:1",
            "identifier": {"system": "https://fhir.nhs.uk/id/nhs-number", "value": "9990000018"},
        },
        "contained": [{"resourceType": "Patient", "id": "p", "reference": "urn:uuid:1"}],
        "_status": {"extension": [{"url": "x", "valueReference": {"reference": "urn:uuid:1"}}]},
        "note": [[{"system": LEGACY}]],
        "": {"system": LEGACY},
    }


def test_copy_normalises_rewrites_and_counts() -> None:
    original = _sample()
    before = json.dumps(original, sort_keys=True)
    out, changed = prepared_copy(original, {"urn:uuid:1": "Patient/abc"})
    assert json.dumps(original, sort_keys=True) == before, "the caller's JSON was changed"
    assert changed == 4
    assert out["identifier"][0]["system"] == NHS_NUMBER_SYSTEM
    assert out["subject"]["reference"] == "Patient/abc"
    assert out["subject"]["identifier"]["system"] == NHS_NUMBER_SYSTEM
    # a contained resource is not a Reference; `_x` extensions are copied, not walked
    assert out["contained"][0]["reference"] == "urn:uuid:1"
    assert out["_status"]["extension"][0]["valueReference"]["reference"] == "urn:uuid:1"
    assert out["_status"] is not original["_status"]
    assert out["_status"]["extension"][0] is not original["_status"]["extension"][0]
    assert out == _three_walks(original, {"urn:uuid:1": "Patient/abc"})[0]


def _documents() -> list[Any]:
    docs: list[Any] = []
    for path in sorted((ROOT / "fixtures").rglob("*.json")):
        try:
            docs.append(json.loads(path.read_text()))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
    return docs


def _resources(node: Any) -> list[dict[str, Any]]:
    """Every object with a resourceType, anywhere in a fixture (Bundle entries, golden lists)."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if isinstance(node.get("resourceType"), str):
            found.append(node)
        for value in node.values():
            found += _resources(value)
    elif isinstance(node, list):
        for item in node:
            found += _resources(item)
    return found


def test_identical_to_the_three_walks_on_every_fixture_resource() -> None:
    resources = [r for doc in _documents() for r in _resources(doc)]
    assert len(resources) > 100
    compared = 0
    for resource in resources:
        refs = {r: f"Patient/rewritten-{i}" for i, r in enumerate(sorted(set(re_refs(resource))))}
        expected, expected_changed = _three_walks(resource, refs)
        got, got_changed = prepared_copy(resource, refs)
        assert json.dumps(got) == json.dumps(expected), resource.get("id")
        assert got_changed == expected_changed
        compared += bool(refs)
    assert compared > 20, "too few fixtures with references to compare the rewrite"


def re_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return out + [r for v in node.values() for r in re_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in re_refs(v)]
    return []


@pytest.mark.parametrize("value", [None, 1, "x", [], {}])
def test_leaves_and_empty_containers_are_kept(value: Any) -> None:
    out, changed = prepared_copy({"resourceType": "Basic", "v": value}, {})
    assert out == {"resourceType": "Basic", "v": value}
    assert changed == 0
