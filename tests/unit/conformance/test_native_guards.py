"""The walk's shortcuts for invariants agree with evaluating them.

`natives.HAS_GUARD` says a native passes wherever `_has(node, name)` is false, and
`invariants.GUARDED_BY` that an invariant passes wherever its property is absent; the walk skips
them there. Each claim is checked here on nodes with the property removed.
"""

from __future__ import annotations

import pytest

from adapter.conformance.invariants import GUARDED_BY, compiled
from adapter.conformance.natives import HAS_GUARD, NATIVES, _has, has_matches

#: Nodes that would fail each guarded native with its property present.
FAILING: dict[str, dict] = {
    "qrs-1": {"linkId": "a", "answer": [{"valueInteger": 1}], "item": [{"linkId": "b"}]},
    "obs-6": {"dataAbsentReason": {"text": "x"}, "valueString": "y"},
    "att-1": {"data": "AAAA"},
    "qty-3": {"code": "mg"},
    "cpt-2": {"value": "1"},
    "que-4": {"answerOption": [{"valueInteger": 1}], "answerValueSet": "http://x"},
    "prr-1": {"orderDetail": [{"text": "x"}]},
    "cpl-3": {"detail": {"kind": "Task"}, "reference": {"reference": "Task/1"}},
    "con-4": {"abatementString": "x", "clinicalStatus": {"coding": []}},
}


@pytest.mark.parametrize("key", sorted(HAS_GUARD))
def test_a_has_guarded_native_passes_without_its_property(key: str) -> None:
    native = NATIVES[key]
    name = HAS_GUARD[key]
    node = FAILING[key]
    assert not native(node, {}, {}), "the example must fail with the property present"
    without = {k: v for k, v in node.items() if not has_matches(k, name)}
    assert not _has(without, name)
    assert native(without, {}, {})


def test_has_matches_is_has_on_one_property() -> None:
    for name in ("value", "item", "code", "data"):
        for key in ("value", "_value", "valueString", "valueset", "item", "itemX", "_code", "x"):
            assert has_matches(key, name) == _has({key: 1}, name)


@pytest.mark.parametrize("key", sorted(GUARDED_BY))
def test_a_guarded_native_passes_without_its_property(key: str) -> None:
    inv = compiled(key)
    assert inv is not None
    assert inv.native is not None
    resource = {"resourceType": "Observation", "code": {"coding": [{"code": "a"}]}}
    node = {"valueString": "x", "status": "final", "code": {"coding": [{"code": "a"}]}}
    assert GUARDED_BY[key] not in node
    assert inv.native(node, resource, resource)
