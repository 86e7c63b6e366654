"""The walking skeleton's must-shows, through the ASGI app, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.referrals import NHS, entry_of, referral_bundle, with_change

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "referrals"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def post_bundle(client, bundle):
    return client.post("/fhir", content=json.dumps(bundle), headers=FHIR_JSON)


def total_resources(services) -> int:
    return services.repo.count()


def test_metadata_is_a_truthful_capability_statement(client):
    r = client.get("/fhir/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+json")
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    sr = next(x for x in cs["rest"][0]["resource"] if x["type"] == "ServiceRequest")
    names = {p["name"] for p in sr["searchParam"]}
    assert {"_id", "identifier", "patient", "subject", "status", "_lastUpdated"} <= names
    assert {"transaction", "batch"} <= {i["code"] for i in cs["rest"][0]["interaction"]}


def test_valid_referral_is_stored_and_found_by_nhs_number(client):
    bundle = json.loads((FIXTURES / "valid-urgent-referral.json").read_text())
    r = post_bundle(client, bundle)
    assert r.status_code == 200, r.text
    resp = r.json()
    assert resp["type"] == "transaction-response"
    assert [e["response"]["status"] for e in resp["entry"]] == ["201 Created"] * 5
    sr_loc = resp["entry"][4]["response"]["location"]
    assert sr_loc.startswith("ServiceRequest/")
    sr_id = sr_loc.split("/")[1]

    got = client.get(f"/fhir/ServiceRequest/{sr_id}")
    assert got.status_code == 200
    assert got.headers["etag"] == 'W/"1"'
    assert "last-modified" in got.headers
    sr = got.json()
    patient_ref = sr["subject"]["reference"]
    assert patient_ref.startswith("Patient/")  # urn:uuid rewritten
    assert client.get(f"/fhir/{patient_ref}").json()["identifier"][0]["value"] == "9990000018"

    found = client.get(
        "/fhir/ServiceRequest", params={"subject:identifier": f"{NHS}|9990000018"}
    ).json()
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["id"] == sr_id
    by_patient = client.get("/fhir/ServiceRequest", params={"patient": patient_ref}).json()
    assert [e["resource"]["id"] for e in by_patient["entry"]] == [sr_id]


def test_bad_nhs_number_rejected_with_expression_and_nothing_stored(client, services):
    before = total_resources(services)
    bundle = json.loads((FIXTURES / "invalid-nhs-number.json").read_text())
    r = post_bundle(client, bundle)
    assert r.status_code == 422
    oo = r.json()
    assert oo["resourceType"] == "OperationOutcome"
    idx, _ = entry_of(bundle, "Patient")
    expressions = [e for i in oo["issue"] for e in i.get("expression", [])]
    assert f"Bundle.entry[{idx}].resource.identifier[0].value" in expressions
    assert total_resources(services) == before


def test_missing_priority_is_a_policy_violation_with_rule_and_citation(client, services):
    before = total_resources(services)
    r = post_bundle(client, json.loads((FIXTURES / "invalid-missing-priority.json").read_text()))
    assert r.status_code == 422
    issue = next(i for i in r.json()["issue"] if i.get("details", {}).get("coding"))
    assert issue["details"]["coding"][0]["code"] == "S000-REF-URG-01"
    assert "000_d2f535f8876d1512.txt:395-437" in issue["diagnostics"]
    assert issue["expression"] == ["Bundle.entry[4].resource.priority"]
    assert total_resources(services) == before


@pytest.mark.parametrize(
    ("fixture", "status", "expression_part"),
    [
        ("invalid-ods-system-value.json", 422, "identifier[0].value"),
        ("invalid-subject-unresolved.json", 422, "subject.reference"),
        ("invalid-not-json-structure.json", 400, "birthDate"),
    ],
)
def test_invalid_referrals_rejected_whole(client, services, fixture, status, expression_part):
    before = total_resources(services)
    r = post_bundle(client, json.loads((FIXTURES / fixture).read_text()))
    assert r.status_code == status, r.text
    expressions = [e for i in r.json()["issue"] for e in i.get("expression", [])]
    assert any(expression_part in e for e in expressions), expressions
    assert total_resources(services) == before


def test_unparseable_body_is_400_operation_outcome(client):
    r = client.post("/fhir", content=b"{not json", headers=FHIR_JSON)
    assert r.status_code == 400
    assert r.json()["issue"][0]["severity"] == "fatal"


def test_wrong_media_type_is_415(client):
    r = client.post(
        "/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/xml"}
    )
    assert r.status_code == 415
    assert r.json()["resourceType"] == "OperationOutcome"


def test_conditional_create_does_not_duplicate_the_patient(client, services):
    assert post_bundle(client, referral_bundle("9990000026")).status_code == 200
    assert post_bundle(client, referral_bundle("9990000026")).status_code == 200
    patients = client.get("/fhir/Patient", params={"identifier": f"{NHS}|9990000026"}).json()
    assert patients["total"] == 1
    srs = client.get(
        "/fhir/ServiceRequest", params={"subject:identifier": f"{NHS}|9990000026"}
    ).json()
    assert srs["total"] == 2


def test_create_read_update_with_if_match_and_history(client):
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": "9990079196"}],
        "gender": "female",
    }
    r = client.post("/fhir/Patient", content=json.dumps(body), headers=FHIR_JSON)
    assert r.status_code == 201
    assert r.headers["etag"] == 'W/"1"'
    pid = r.json()["id"]
    assert r.headers["location"].endswith(f"/fhir/Patient/{pid}/_history/1")

    updated = {**r.json(), "gender": "male"}
    ok = client.put(
        f"/fhir/Patient/{pid}",
        content=json.dumps(updated),
        headers={**FHIR_JSON, "If-Match": 'W/"1"'},
    )
    assert ok.status_code == 200
    assert ok.headers["etag"] == 'W/"2"'
    stale = client.put(
        f"/fhir/Patient/{pid}",
        content=json.dumps(updated),
        headers={**FHIR_JSON, "If-Match": 'W/"1"'},
    )
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient/{pid}").json()["gender"] == "male"

    hist = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert hist["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in hist["entry"]] == ["2", "1"]
    v1 = client.get(f"/fhir/Patient/{pid}/_history/1").json()
    assert v1["gender"] == "female"


def test_if_none_exist_header_returns_existing(client):
    body = {"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9990237573"}]}
    first = client.post("/fhir/Patient", content=json.dumps(body), headers=FHIR_JSON)
    again = client.post(
        "/fhir/Patient",
        content=json.dumps(body),
        headers={**FHIR_JSON, "If-None-Exist": f"identifier={NHS}|9990237573"},
    )
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


def test_search_paging_has_next_links_and_total(client):
    for i in range(5):
        body = {
            "resourceType": "Patient",
            "gender": "other",
            "identifier": [
                {"system": "https://fhir.cmh-adapter.example/Id/test", "value": f"p{i}"}
            ],
        }
        assert (
            client.post("/fhir/Patient", content=json.dumps(body), headers=FHIR_JSON).status_code
            == 201
        )
    page = client.get("/fhir/Patient", params={"_count": 2}).json()
    assert page["total"] == 5
    assert len(page["entry"]) == 2
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    seen = [e["resource"]["id"] for e in page["entry"]]
    while nxt:
        page = client.get(nxt.replace("http://testserver", "")).json()
        seen += [e["resource"]["id"] for e in page["entry"]]
        nxt = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert len(seen) == len(set(seen)) == 5


def test_transaction_is_all_or_nothing_when_a_later_entry_fails(client, services):
    before = total_resources(services)
    bundle = referral_bundle("9990316767")
    bundle["entry"].append(
        {
            "resource": {"resourceType": "Patient", "id": "x"},
            "request": {"method": "PUT", "url": "Patient/x"},
        }
    )
    bundle["entry"].append({"request": {"method": "DELETE", "url": "Patient/does-not-exist"}})
    r = post_bundle(client, bundle)
    # the last entry deletes nothing that exists; R4 allows that, so the Bundle commits
    assert r.status_code == 200, r.text
    # now one whose PUT carries a stale If-Match: the whole Bundle must roll back
    after_first = total_resources(services)
    bad = referral_bundle("9990395950")
    bad["entry"].append(
        {
            "resource": {"resourceType": "Patient", "id": "x"},
            "request": {"method": "PUT", "url": "Patient/x", "ifMatch": 'W/"9"'},
        }
    )
    r2 = post_bundle(client, bad)
    assert r2.status_code == 412
    assert total_resources(services) == after_first > before


def test_batch_entries_succeed_or_fail_independently(client):
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": NHS, "value": "9990475148"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": NHS, "value": "9990475149"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    r = post_bundle(client, bundle)
    assert r.status_code == 200
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0] == "201 Created"
    assert statuses[1].startswith("422")
    assert r.json()["entry"][1]["response"]["outcome"]["issue"][0]["expression"] == [
        "Bundle.entry[1].resource.identifier[0].value"
    ]


def test_validate_operation_always_200(client):
    bad = with_change(referral_bundle("9990000019"), "ServiceRequest", priority=None)
    r = client.post("/fhir/$validate", content=json.dumps(bad), headers=FHIR_JSON)
    assert r.status_code == 200
    codes = [i["code"] for i in r.json()["issue"]]
    assert "value" in codes
    assert "business-rule" in codes


def test_unknown_type_and_missing_resource_are_outcomes(client):
    assert client.get("/fhir/Spaceship").status_code == 404
    r = client.get("/fhir/Patient/nope")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"


def test_unsupported_result_parameters_are_reported_not_silently_ignored(client):
    r = client.get("/fhir/Patient", params={"_contained": "true"})
    assert r.status_code == 200
    outcomes = [e for e in r.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcomes) == 1
    expressions = {x for i in outcomes[0]["resource"]["issue"] for x in i["expression"]}
    assert expressions == {"_contained"}
