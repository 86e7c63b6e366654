"""The defects named in issue #3 (Why): each gives an error with the right expression path."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapter.conformance import ConformanceValidator
from adapter.context import ValidationContext
from adapter.fhir.parse import structural_issues

PATIENT_REF = {"reference": "Patient/p1"}


@pytest.fixture(scope="module")
def validator() -> ConformanceValidator:
    return ConformanceValidator()


def errors(validator, resource, ctx=None):
    assert structural_issues(resource) == []  # the defect passes the fhir.resources parse
    return [i for i in validator.validate(resource, ctx or ValidationContext()) if i.is_blocking]


def encounter(**extra):
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        **extra,
    }


def test_valid_encounter_has_no_errors(validator):
    assert errors(validator, encounter(subject=PATIENT_REF)) == []


def test_bogus_required_binding_code_is_code_invalid_at_encounter_status(validator):
    found = errors(validator, encounter(status="bogus"))
    assert [(i.code, i.expression) for i in found] == [("code-invalid", "Encounter.status")]


def test_empty_element_breaks_ele_1(validator):
    found = errors(validator, encounter(period={}, subject=PATIENT_REF))
    assert [(i.code, i.expression) for i in found] == [("invariant", "Encounter.period")]
    assert "ele-1" in found[0].text


def test_observation_with_value_and_data_absent_reason_breaks_obs_6(validator):
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "score"},
        "valueQuantity": {"value": Decimal("4.5")},
        "dataAbsentReason": {"text": "not asked"},
    }
    found = errors(validator, obs)
    assert [(i.code, i.expression) for i in found] == [("invariant", "Observation")]
    assert "obs-6" in found[0].text


def test_component_paths_are_indexed(validator):
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "bp"},
        "component": [
            {"code": {"text": "a"}, "valueString": "x"},
            {
                "code": {"text": "b"},
                "valueQuantity": {"value": Decimal("1"), "comparator": "about"},
            },
        ],
    }
    found = errors(validator, obs)
    assert [(i.code, i.expression) for i in found] == [
        ("code-invalid", "Observation.component[1].valueQuantity.comparator")
    ]


def test_questionnaire_response_item_with_answer_and_items_breaks_qrs_1(validator):
    qr = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "item": [{"linkId": "1", "answer": [{"valueString": "x"}]}, {"text": "no link id"}],
    }
    qr["item"][1]["linkId"] = "2"
    qr["item"][1]["answer"] = [{"valueString": "y"}]
    qr["item"][1]["item"] = [{"linkId": "2.1"}]
    found = errors(validator, qr)
    assert ("invariant", "QuestionnaireResponse.item[1]") in [(i.code, i.expression) for i in found]
    assert any("qrs-1" in i.text for i in found)


def test_malformed_reference_is_value_error(validator):
    found = errors(validator, encounter(subject={"reference": "Patient/has space"}))
    assert [(i.code, i.expression) for i in found] == [("value", "Encounter.subject.reference")]


def test_reference_to_wrong_resource_type_is_rejected(validator):
    found = errors(validator, encounter(subject={"reference": "Practitioner/x"}))
    assert [(i.code, i.expression) for i in found] == [("structure", "Encounter.subject.reference")]
    assert "Practitioner" in found[0].text


@pytest.mark.parametrize("start", ["2023-02-30", "2023-02-03T10:00:00", "2023-2-03"])
def test_primitive_formats_are_exact_even_without_the_structural_parse(validator, start):
    found = validator.validate(encounter(period={"start": start}), ValidationContext())
    assert [(i.code, i.expression) for i in found] == [("value", "Encounter.period.start")]


def test_period_start_after_end_breaks_per_1(validator):
    found = errors(validator, encounter(period={"start": "2023-06-21", "end": "2023-06-20"}))
    assert [(i.code, i.expression) for i in found] == [("invariant", "Encounter.period")]


def test_urn_uuid_reference_must_resolve_in_the_bundle(validator):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    ctx = ValidationContext(bundle=bundle, entry_index=0)
    found = errors(
        validator,
        encounter(subject={"reference": "urn:uuid:6f1b5f0e-3c1a-4d2e-9a4b-1c2d3e4f5a6b"}),
        ctx,
    )
    assert [(i.code, i.expression) for i in found] == [("not-found", "Encounter.subject.reference")]


def test_contained_reference_target_type_is_checked(validator):
    enc = encounter(
        contained=[{"resourceType": "Practitioner", "id": "d"}], subject={"reference": "#d"}
    )
    found = errors(validator, enc)
    assert [(i.code, i.expression) for i in found] == [("structure", "Encounter.subject.reference")]


def test_decimal_precision_is_preserved_not_judged(validator):
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueQuantity": {"value": Decimal("1.50")},
    }
    assert errors(validator, obs) == []
    assert str(obs["valueQuantity"]["value"]) == "1.50"
