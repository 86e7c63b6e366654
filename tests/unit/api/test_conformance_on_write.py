"""Issue #3 must-show: what fhir.resources lets through is refused on write, 422, with a path."""

from __future__ import annotations

import json

import pytest

from tests.support.referrals import NHS

FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def patient_ref(client) -> str:
    body = {"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9990000123"}]}
    r = client.post("/fhir/Patient", content=json.dumps(body), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    return f"Patient/{r.json()['id']}"


def _encounter(subject: str, **changes):
    enc = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB",
            "display": "ambulatory",
        },
        "subject": {"reference": subject},
    }
    enc.update(changes)
    return enc


def _observation(subject: str, **changes):
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Mood"},
        "subject": {"reference": subject},
        "valueString": "low",
    }
    obs.update(changes)
    return obs


CASES = {
    "bogus-required-code": (lambda p: _encounter(p, status="bogus"), "Encounter.status"),
    "ele-1-empty-element": (lambda p: _encounter(p, period={}), "Encounter.period"),
    "obs-6-value-and-absent-reason": (
        lambda p: _observation(p, dataAbsentReason={"text": "not asked"}),
        "Observation",
    ),
    "malformed-reference": (lambda p: _encounter("Patient/has spaces"), "Encounter.subject"),
    "wrong-target-type": (lambda p: _encounter("Organization/x1"), "Encounter.subject"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_defect_is_refused_with_422_and_an_expression(client, services, patient_ref, case):
    build, expected_path = CASES[case]
    resource = build(patient_ref)
    before = services.repo.count()
    r = client.post(
        f"/fhir/{resource['resourceType']}", content=json.dumps(resource), headers=FHIR_JSON
    )
    assert r.status_code == 422, r.text
    errors = [i for i in r.json()["issue"] if i["severity"] in ("error", "fatal")]
    assert errors
    assert any(e.startswith(expected_path) for i in errors for e in i.get("expression", [])), errors
    assert services.repo.count() == before


def test_the_same_resources_pass_when_correct(client, patient_ref):
    for resource in (_encounter(patient_ref), _observation(patient_ref)):
        r = client.post(
            f"/fhir/{resource['resourceType']}", content=json.dumps(resource), headers=FHIR_JSON
        )
        assert r.status_code == 201, r.text


def test_validate_answers_200_with_the_same_findings(client, patient_ref):
    r = client.post(
        "/fhir/Encounter/$validate",
        content=json.dumps(_encounter(patient_ref, status="bogus")),
        headers=FHIR_JSON,
    )
    assert r.status_code == 200
    assert any("Encounter.status" in e for i in r.json()["issue"] for e in i.get("expression", []))
