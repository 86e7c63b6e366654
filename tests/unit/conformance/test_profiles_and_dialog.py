"""Our profiles (profiles/) and the DIALOG Questionnaire, enforced by the conformance stage."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapter.conformance import ConformanceValidator
from adapter.context import ValidationContext

BASE = "https://fhir.cmh-adapter.example"
DIALOG = f"{BASE}/Questionnaire/dialog"


@pytest.fixture(scope="module")
def validator() -> ConformanceValidator:
    return ConformanceValidator()


def errors(validator, resource, profiles=()):
    ctx = ValidationContext(profiles=tuple(profiles))
    return [(i.code, i.expression) for i in validator.validate(resource, ctx) if i.is_blocking]


def dialog_response(**overrides):
    items = []
    for n in range(1, 12):
        items.append({"linkId": f"dialog-{n}", "answer": [{"valueInteger": 5}]})
        items.append({"linkId": f"dialog-{n}-help", "answer": [{"valueBoolean": False}]})
    qr = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": DIALOG,
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "authored": "2026-11-20T10:00:00Z",
        "meta": {"profile": [f"{BASE}/StructureDefinition/DIALOG-QuestionnaireResponse"]},
        "item": items,
    }
    qr.update(overrides)
    return qr


def test_every_artefact_loads_with_id_version_and_status(validator):
    reg = validator.profiles
    assert len(reg.structure_definitions) >= 13
    assert DIALOG in reg.questionnaires
    for sd in reg.structure_definitions.values():
        assert sd["differential"]["element"]
        assert sd["baseDefinition"]


def test_dialog_questionnaire_has_11_snomed_coded_items_with_help_questions(validator):
    q = validator.profiles.questionnaire(DIALOG)
    scored = [i for i in q["item"] if i["type"] == "integer"]
    helps = [i for i in q["item"] if i["type"] == "boolean"]
    assert len(scored) == 11
    assert len(helps) == 11
    assert all(i["code"][0]["system"] == "http://snomed.info/sct" for i in scored)
    assert [o["valueInteger"] for o in scored[0]["answerOption"]] == list(range(1, 8))


def test_complete_dialog_response_is_valid(validator):
    assert errors(validator, dialog_response()) == []


def test_dialog_answer_outside_scale_is_rejected(validator):
    qr = dialog_response()
    qr["item"][0]["answer"] = [{"valueInteger": 8}]
    assert errors(validator, qr) == [("code-invalid", "QuestionnaireResponse.item[0].answer[0]")]


def test_dialog_missing_required_item_and_wrong_type_and_unknown_link(validator):
    qr = dialog_response()
    qr["item"] = [i for i in qr["item"] if i["linkId"] != "dialog-3"]
    qr["item"][0]["answer"] = [{"valueString": "five"}]
    qr["item"].append({"linkId": "dialog-99", "answer": [{"valueInteger": 1}]})
    found = errors(validator, qr)
    assert ("structure", "QuestionnaireResponse.item[0].answer[0]") in found
    assert ("required", "QuestionnaireResponse") in found
    assert ("structure", f"QuestionnaireResponse.item[{len(qr['item']) - 1}]") in found


def test_dialog_repeats_are_refused(validator):
    qr = dialog_response()
    qr["item"][1]["answer"].append({"valueBoolean": True})
    assert errors(validator, qr) == [("structure", "QuestionnaireResponse.item[1]")]


def test_dialog_profile_requires_subject(validator):
    qr = dialog_response()
    del qr["subject"]
    assert errors(validator, qr) == [("required", "QuestionnaireResponse.subject")]


def score(value, code="subjective-quality-of-life"):
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": f"{BASE}/CodeSystem/dialog-score", "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-11-20",
        "valueQuantity": {"value": value},
        "derivedFrom": [{"reference": "QuestionnaireResponse/q"}],
    }


def test_dialog_score_profile_checks_range_and_code(validator):
    prof = [f"{BASE}/StructureDefinition/DIALOG-SubjectiveQualityOfLife"]
    assert errors(validator, score(Decimal("4.38")), prof) == []
    assert errors(validator, score(Decimal("7.5")), prof) == [("invariant", "Observation")]
    assert errors(validator, score(Decimal("4"), code="treatment-satisfaction"), prof) == [
        ("value", "Observation.code")
    ]


def patient(identifiers):
    return {
        "resourceType": "Patient",
        "identifier": identifiers,
        "name": [{"family": "Test"}],
        "birthDate": "1980-01-01",
        "meta": {"profile": [f"{BASE}/StructureDefinition/CMH-Patient"]},
    }


def test_patient_nhs_number_slice_is_at_most_one(validator):
    nhs = {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000050"}
    assert errors(validator, patient([nhs])) == []
    found = errors(validator, patient([nhs, dict(nhs)]))
    assert found == [("structure", "Patient.identifier")]


def test_patient_profile_requires_identifier_and_name(validator):
    p = patient([])
    del p["identifier"], p["name"]
    assert sorted(errors(validator, p)) == [
        ("required", "Patient.identifier"),
        ("required", "Patient.name"),
    ]


def test_referral_profile_fixed_pattern_and_cardinality(validator):
    sr = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/p1"},
        "meta": {"profile": [f"{BASE}/StructureDefinition/CMHT-Referral"]},
    }
    found = errors(validator, sr)
    for expected in [
        ("value", "ServiceRequest.intent"),
        ("required", "ServiceRequest.category"),
        ("required", "ServiceRequest.requester"),
    ]:
        assert expected in found


def test_risk_assessment_binding_to_our_value_set(validator):
    ra = {
        "resourceType": "RiskAssessment",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "occurrenceDateTime": "2026-11-20",
        "performer": {"reference": "Practitioner/x"},
        "prediction": [
            {
                "outcome": {
                    "coding": [
                        {"system": f"{BASE}/CodeSystem/mh-risk-type", "code": "risk-to-moon"}
                    ]
                },
                "qualitativeRisk": {
                    "coding": [{"system": f"{BASE}/CodeSystem/mh-risk-level", "code": "high"}]
                },
            }
        ],
        "meta": {"profile": [f"{BASE}/StructureDefinition/MH-RiskAssessment"]},
    }
    # the code is neither in our (complete) CodeSystem nor, therefore, in the bound ValueSet
    assert errors(validator, ra) == [
        ("code-invalid", "RiskAssessment.prediction[0].outcome.coding[0].code"),
        ("code-invalid", "RiskAssessment.prediction[0].outcome"),
    ]


def test_unknown_profile_of_ours_is_an_error(validator):
    p = patient([{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000050"}])
    p["meta"]["profile"] = [f"{BASE}/StructureDefinition/Nope"]
    assert errors(validator, p) == [("not-found", "Patient.meta.profile")]


def test_every_artefact_in_profiles_is_itself_valid_r4(validator):
    import json
    from pathlib import Path

    from adapter.fhir.parse import structural_issues

    folders = ["structure-definitions", "value-sets", "code-systems", "questionnaires"]
    paths = [p for f in folders for p in sorted((validator.profiles_dir / f).glob("*.json"))]
    assert len(paths) >= 26
    for path in paths:
        res = json.loads(Path(path).read_text(encoding="utf-8"))
        found = structural_issues(res) + validator.validate(res, ValidationContext())
        assert [i for i in found if i.is_blocking] == [], path.name
