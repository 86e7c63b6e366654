"""Transaction details feeds rely on: conditional update, no-op updates, processing order."""

from __future__ import annotations

import json

from tests.support.referrals import NHS

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _patient(nhs: str, **extra):
    return {"resourceType": "Patient", "identifier": [{"system": NHS, "value": nhs}], **extra}


def _tx(*entries):
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def test_conditional_update_creates_then_updates_the_same_patient(client):
    url = f"Patient?identifier={NHS}|9990000034"
    first = client.post(
        "/fhir",
        content=json.dumps(
            _tx(
                {
                    "resource": _patient("9990000034", gender="female"),
                    "request": {"method": "PUT", "url": url},
                }
            )
        ),
        headers=FHIR_JSON,
    )
    assert first.status_code == 200, first.text
    assert first.json()["entry"][0]["response"]["status"] == "201 Created"
    pid = first.json()["entry"][0]["response"]["location"].split("/")[1]
    second = client.post(
        "/fhir",
        content=json.dumps(
            _tx(
                {
                    "resource": _patient("9990000034", gender="male"),
                    "request": {"method": "PUT", "url": url},
                }
            )
        ),
        headers=FHIR_JSON,
    )
    assert second.status_code == 200, second.text
    assert second.json()["entry"][0]["response"]["location"] == f"Patient/{pid}/_history/2"
    found = client.get("/fhir/Patient", params={"identifier": f"{NHS}|9990000034"}).json()
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["gender"] == "male"


def test_conditional_update_matching_two_is_412_and_writes_nothing(client, services):
    for _ in range(2):
        assert (
            client.post(
                "/fhir/Patient", content=json.dumps(_patient("9990000042")), headers=FHIR_JSON
            ).status_code
            == 201
        )
    before = services.repo.count()
    r = client.post(
        "/fhir",
        content=json.dumps(
            _tx(
                {
                    "resource": _patient("9990000042", gender="male"),
                    "request": {"method": "PUT", "url": f"Patient?identifier={NHS}|9990000042"},
                }
            )
        ),
        headers=FHIR_JSON,
    )
    assert r.status_code == 412
    assert r.json()["issue"][0]["code"] == "multiple-matches"
    assert services.repo.count() == before


def test_identical_update_adds_no_version(client):
    created = client.post(
        "/fhir/Patient", content=json.dumps(_patient("9990000050")), headers=FHIR_JSON
    ).json()
    same = client.put(
        f"/fhir/Patient/{created['id']}", content=json.dumps(created), headers=FHIR_JSON
    )
    assert same.status_code == 200
    assert same.headers["etag"] == 'W/"1"'
    hist = client.get(f"/fhir/Patient/{created['id']}/_history").json()
    assert hist["total"] == 1


def test_identical_update_with_stale_if_match_is_still_412(client):
    created = client.post(
        "/fhir/Patient", content=json.dumps(_patient("9990000069")), headers=FHIR_JSON
    ).json()
    changed = {**created, "gender": "other"}
    assert (
        client.put(
            f"/fhir/Patient/{created['id']}", content=json.dumps(changed), headers=FHIR_JSON
        ).status_code
        == 200
    )
    stale = client.put(
        f"/fhir/Patient/{created['id']}",
        content=json.dumps(changed),
        headers={**FHIR_JSON, "If-Match": 'W/"1"'},
    )
    assert stale.status_code == 412


def test_urn_uuid_reference_to_conditionally_matched_patient_points_at_existing(client):
    first = client.post(
        "/fhir/Patient", content=json.dumps(_patient("9990000077")), headers=FHIR_JSON
    ).json()
    urn = "urn:uuid:4b0ff5b2-8c6b-4d8e-9a53-4f1e8b8f6a01"
    bundle = _tx(
        {
            "fullUrl": urn,
            "resource": _patient("9990000077"),
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": f"identifier={NHS}|9990000077",
            },
        },
        {
            "resource": {
                "resourceType": "Flag",
                "status": "active",
                "code": {"text": "Risk alert"},
                "subject": {"reference": urn},
            },
            "request": {"method": "POST", "url": "Flag"},
        },
    )
    r = client.post("/fhir", content=json.dumps(bundle), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    flag = r.json()["entry"][1]["resource"]
    assert flag["subject"]["reference"] == f"Patient/{first['id']}"
    assert r.json()["entry"][0]["response"]["status"] == "200 OK"


def _create_only_bundle(patient_id: str, gender: str, if_none_match: str = "*") -> dict:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"Patient/{patient_id}",
                "resource": {"resourceType": "Patient", "id": patient_id, "gender": gender},
                "request": {
                    "method": "PUT",
                    "url": f"Patient/{patient_id}",
                    "ifNoneMatch": if_none_match,
                },
            }
        ],
    }


def test_put_with_if_none_match_star_creates_once_then_is_412(client):
    first = client.post("/fhir", content=json.dumps(_create_only_bundle("p-once", "female")))
    assert first.status_code == 200, first.text
    assert first.json()["entry"][0]["response"]["status"].startswith("201")
    again = client.post("/fhir", content=json.dumps(_create_only_bundle("p-once", "male")))
    assert again.status_code == 412, again.text
    issue = again.json()["issue"][0]
    assert issue["code"] == "duplicate"
    assert issue["expression"] == ["Bundle.entry[0].request.ifNoneMatch"]
    stored = client.get("/fhir/Patient/p-once").json()
    assert (stored["gender"], stored["meta"]["versionId"]) == ("female", "1")


def test_if_none_match_other_than_star_or_on_post_is_refused(client):
    r = client.post("/fhir", content=json.dumps(_create_only_bundle("p-etag", "female", 'W/"1"')))
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[0].request.ifNoneMatch"]
    assert client.get("/fhir/Patient/p-etag").status_code == 404
