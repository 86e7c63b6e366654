"""Issue #4 must-shows through the facade: citations in the OperationOutcome, warnings that do not
block, and MUST overrides recorded as Provenance in the same unit of work."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from adapter.api.app import create_app
from adapter.clock import FixedClock
from adapter.wiring import build_services
from tests.support.referrals import referral_bundle

ROOT = Path(__file__).resolve().parents[3]
FHIR_JSON = {"Content-Type": "application/fhir+json"}
OVERRIDE = "https://fhir.cmh-adapter.example/StructureDefinition/policy-override"


def _fixture(name: str) -> dict:
    return yaml.safe_load((ROOT / "fixtures" / "policy" / name).read_text())


def _as_transaction(resources: list[dict]) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


@pytest.fixture
def welsh_client(settings):
    doc = _fixture("wales-measure/ctp.yaml")
    clock = FixedClock(datetime.fromisoformat(doc["now"].replace("Z", "+00:00")))
    services = build_services(settings, clock=clock)
    with TestClient(create_app(settings, services=services)) as c:
        yield c, doc, services
    services.close()


def test_welsh_ctp_is_accepted_and_one_without_an_outcome_is_rejected_citing_the_code(welsh_client):
    client, doc, services = welsh_client
    good = _as_transaction([*doc["bundle"], copy.deepcopy(doc["base"])])
    r = client.post("/fhir", content=json.dumps(good), headers=FHIR_JSON)
    assert r.status_code == 200, r.text

    bad_plan = copy.deepcopy(doc["base"])
    bad_plan["id"] = "ctp-2"
    del bad_plan["contained"][1]["category"]  # the Goal no longer names an area of life
    before = services.repo.count()
    r = client.post("/fhir", content=json.dumps(_as_transaction([bad_plan])), headers=FHIR_JSON)
    assert r.status_code == 422, r.text
    cited = [
        i
        for i in r.json()["issue"]
        if i["severity"] == "error" and "002_b5b903ed5658e1bd.txt" in i.get("diagnostics", "")
    ]
    assert cited, r.json()
    assert all(i["details"]["coding"][0]["code"] for i in cited)
    assert all(i["expression"][0].startswith("Bundle.entry[0].resource") for i in cited)
    assert services.repo.count() == before


def test_should_warning_is_accepted_and_shown(client):
    bundle = referral_bundle("9990000131")  # authored a week ago, urgent, no assessment booked
    r = client.post("/fhir", content=json.dumps(bundle), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    outcome = r.json()["entry"][4]["response"]["outcome"]
    warnings = [i for i in outcome["issue"] if i["severity"] == "warning"]
    assert "S000-ASM-04" in {i["details"]["coding"][0]["code"] for i in warnings}


def test_must_override_is_recorded_on_the_resource_and_in_provenance(client, services):
    bundle = referral_bundle("9990000158")
    sr = bundle["entry"][4]["resource"]
    sr["reasonCode"] = [
        {
            "coding": [
                {
                    "system": "https://fhir.cmh-adapter.example/CodeSystem/mhsds-primary-reason",
                    "code": "01",
                }
            ]
        }
    ]
    refused = client.post("/fhir", content=json.dumps(bundle), headers=FHIR_JSON)
    assert refused.status_code == 422, refused.text
    assert "LPT-CMHT-ELIG-05-FEP" in refused.text

    prac = bundle["entry"][2]["fullUrl"]
    sr["extension"].append(
        {
            "url": OVERRIDE,
            "extension": [
                {"url": "rule", "valueCode": "LPT-CMHT-ELIG-05-FEP"},
                {"url": "reason", "valueString": "EIP declined; consultant agreed"},
                {"url": "author", "valueReference": {"reference": prac}},
            ],
        }
    )
    r = client.post("/fhir", content=json.dumps(bundle), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    entry = r.json()["entry"][4]
    sr_ref = entry["response"]["location"].rsplit("/_history", 1)[0]
    overridden = [
        i
        for i in entry["response"]["outcome"]["issue"]
        if i["details"].get("coding", [{}])[0].get("code") == "LPT-CMHT-ELIG-05-FEP"
    ]
    assert overridden
    assert overridden[0]["severity"] == "warning"
    provenances = client.get("/fhir/Provenance").json()
    targets = [
        p["resource"]
        for p in provenances.get("entry", [])
        if p["resource"]["target"][0]["reference"] == sr_ref
    ]
    assert len(targets) == 1
    prov = targets[0]
    assert prov["reason"][0]["text"] == "EIP declined; consultant agreed"
    assert prov["agent"][0]["who"]["reference"].startswith("Practitioner/")
    assert prov["policy"] == ["https://fhir.cmh-adapter.example/rules/LPT-CMHT-ELIG-05-FEP"]
