"""Each native invariant agrees with fhirpathpy on the same nodes (natives.py must not drift)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from fhirpathpy.engine.nodes import ResourceNode

from adapter.conformance.invariants import compile_invariant, compiled
from adapter.conformance.natives import NATIVES

CLIN = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CODE = {"coding": [{"system": "http://loinc.org", "code": "1-1"}]}
SAMPLES: dict[str, tuple[str, list[dict]]] = {
    "ref-1": ("Reference", [{"reference": "#a"}, {"reference": "#zz"}, {"reference": "P/1"}]),
    "per-1": (
        "Period",
        [
            {"start": "2023-01-01", "end": "2023-01-02"},
            {"start": "2023-01-02", "end": "2023-01-01"},
            {"start": "2023-01-01T10:00:00Z", "end": "2023-01-01T09:00:00Z"},
            {"start": "2023", "end": "2024-05"},
            {"start": "2023-01-01"},
        ],
    ),
    "cpt-2": ("ContactPoint", [{"value": "1"}, {"value": "1", "system": "phone"}, {"use": "home"}]),
    "qty-3": ("Quantity", [{"code": "kg"}, {"code": "kg", "system": "u"}, {"value": 1}]),
    "obs-6": (
        "Observation",
        [{"valueString": "x", "dataAbsentReason": CODE}, {"valueString": "x"}, {}],
    ),
    "obs-7": (
        "Observation",
        [
            {"code": CODE, "valueString": "x", "component": [{"code": CODE}]},
            {"code": CODE, "component": [{"code": CODE}]},
            {"code": CODE, "valueString": "x", "component": [{"code": {"text": "y"}}]},
        ],
    ),
    "que-1": (
        "Questionnaire.item",
        [
            {"type": "group"},
            {"type": "group", "item": [{"linkId": "a", "type": "string"}]},
            {"type": "display", "item": [{"linkId": "a", "type": "string"}]},
            {"type": "string"},
        ],
    ),
    "que-5": (
        "Questionnaire.item",
        [
            {"type": "boolean", "answerOption": [{"valueString": "a"}]},
            {"type": "choice"},
            {"type": "boolean"},
        ],
    ),
    "que-8": (
        "Questionnaire.item",
        [
            {"type": "group", "initial": [{"valueString": "a"}]},
            {"type": "string", "initial": [{"valueString": "a"}]},
        ],
    ),
    "que-10": (
        "Questionnaire.item",
        [{"type": "choice", "maxLength": 2}, {"type": "string", "maxLength": 2}],
    ),
    "qrs-1": (
        "QuestionnaireResponse.item",
        [{"answer": [{"valueString": "a"}], "item": [{"linkId": "b"}]}, {"answer": [{}]}],
    ),
    "dom-4": (
        "Patient",
        [
            {"contained": [{"resourceType": "Patient", "meta": {"versionId": "1"}}]},
            {"contained": [{"resourceType": "Patient", "meta": {"source": "x"}}]},
        ],
    ),
    "obs-3": ("Observation.referenceRange", [{"text": "x"}, {"appliesTo": [CODE]}]),
    "pat-1": ("Patient.contact", [{"gender": "male"}, {"name": {"family": "x"}}]),
    "con-4": (
        "Condition",
        [
            {"abatementString": "x"},
            {
                "abatementString": "x",
                "clinicalStatus": {"coding": [{"system": CLIN, "code": "resolved"}]},
            },
            {
                "abatementString": "x",
                "clinicalStatus": {"coding": [{"system": CLIN, "code": "active"}]},
            },
            {"clinicalStatus": {"coding": [{"system": CLIN, "code": "active"}]}},
        ],
    ),
    "con-5": (
        "Condition",
        [
            {"verificationStatus": {"coding": [{"system": VER, "code": "entered-in-error"}]}},
            {
                "verificationStatus": {"coding": [{"system": VER, "code": "entered-in-error"}]},
                "clinicalStatus": CODE,
            },
            {
                "verificationStatus": {"coding": [{"system": VER, "code": "confirmed"}]},
                "clinicalStatus": CODE,
            },
        ],
    ),
    "inv-1": (
        "Parameters.parameter",
        [
            {"name": "a", "valueString": "x"},
            {"name": "a", "part": [{"name": "b", "valueString": "x"}]},
            {"name": "a", "part": [{"name": "b"}], "valueString": "x"},
            {"name": "a"},
            {"name": "a", "valueString": "x", "resource": {"resourceType": "Patient"}},
            {"name": "a", "resource": {"resourceType": "Patient"}},
        ],
    ),
    "ppc-2": (
        "Consent",
        [
            {"scope": {"coding": [{"system": "something", "code": "patient-privacy"}]}},
            {
                "scope": {"coding": [{"system": "something", "code": "patient-privacy"}]},
                "patient": {"reference": "Patient/1"},
            },
            {"scope": {"coding": [{"system": "something", "code": "research"}]}},
        ],
    ),
    "ppc-5": (
        "Consent",
        [{"scope": {"coding": [{"system": "something", "code": "treatment"}]}}, {}],
    ),
    "que-2": (
        "Questionnaire",
        [
            {"item": [{"linkId": "a", "item": [{"linkId": "b"}]}]},
            {"item": [{"linkId": "a", "item": [{"linkId": "a"}]}]},
            {"item": [{"linkId": "a"}, {"linkId": "b"}]},
        ],
    ),
    "que-7": (
        "Questionnaire.item.enableWhen",
        [
            {"question": "a", "operator": "exists", "answerBoolean": True},
            {"question": "a", "operator": "exists", "answerString": "x"},
            {"question": "a", "operator": "=", "answerString": "x"},
        ],
    ),
    "que-12": (
        "Questionnaire.item",
        [
            {"enableWhen": [{"question": "a"}, {"question": "b"}]},
            {"enableWhen": [{"question": "a"}, {"question": "b"}], "enableBehavior": "any"},
            {"enableWhen": [{"question": "a"}]},
        ],
    ),
    "ras-2": (
        "RiskAssessment.prediction",
        [{"probabilityDecimal": Decimal("100.5")}, {"probabilityDecimal": Decimal(5)}, {}],
    ),
    "org-2": ("Organization.address", [{"use": "home"}, {"use": "work"}, {"city": "x"}]),
    "org-3": ("Organization.telecom", [{"use": "home"}, {"use": "work"}]),
    "att-1": ("Attachment", [{"data": "AA=="}, {"data": "AA==", "contentType": "a/b"}, {}]),
    "con-2": ("Condition.evidence", [{"code": [CODE]}, {"detail": [{"reference": "X/1"}]}, {}]),
    "cmp-1": ("Composition.section", [{"title": "x"}, {"text": {"status": "generated"}}]),
}


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_native_equals_fhirpath(key):
    assert key in NATIVES
    base, nodes = SAMPLES[key]
    inv = compiled(key)
    assert inv is not None
    assert inv.native is not None
    slow = compile_invariant(key, inv.expression, inv.human)
    for node in nodes:
        resource = node if "." not in base else {"resourceType": base.split(".")[0]}
        root = {"contained": [{"resourceType": "Patient", "id": "a"}]}
        expected_raw = slow.fn(
            ResourceNode.create_node(node, base), {"resource": resource, "rootResource": root}
        )
        expected = expected_raw in ([True], [])
        assert inv.native(node, resource, root) == expected, (key, node, expected_raw)


def test_per_1_normalises_timezones_where_fhirpathpy_does_not():
    # 10:00+01:00 is 09:00Z, before 09:30Z; fhirpathpy 2.2 compares the local times and says no.
    native = NATIVES["per-1"]
    period = {"start": "2023-01-01T10:00:00+01:00", "end": "2023-01-01T09:30:00Z"}
    assert native(period, {}, {}) is True
