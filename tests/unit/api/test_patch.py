"""R4 patch with JSON Patch: applied to the current version, then judged and written as an update."""

from __future__ import annotations

import json
import threading

import pytest

from tests.support.referrals import NHS

PATCH = {"Content-Type": "application/json-patch+json"}
FHIR = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def patient(client) -> dict:
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": "9990000018"}],
        "name": [{"family": "Example", "given": ["Alex"]}],
        "gender": "unknown",
    }
    r = client.post("/fhir/Patient", content=json.dumps(body), headers=FHIR)
    assert r.status_code == 201, r.text
    return r.json()


def _patch(client, patient, ops, **headers):
    return client.patch(
        f"/fhir/Patient/{patient['id']}", content=json.dumps(ops), headers={**PATCH, **headers}
    )


def test_a_patch_makes_a_new_version_with_only_the_patched_change(client, patient):
    r = _patch(
        client,
        patient,
        [
            {"op": "test", "path": "/gender", "value": "unknown"},
            {"op": "replace", "path": "/gender", "value": "female"},
            {"op": "add", "path": "/name/0/given/-", "value": "Jo"},
        ],
    )
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == 'W/"2"'
    body = r.json()
    assert body["gender"] == "female"
    assert body["name"] == [{"family": "Example", "given": ["Alex", "Jo"]}]
    assert body["identifier"] == patient["identifier"]
    history = client.get(f"/fhir/Patient/{patient['id']}/_history").json()
    assert history["total"] == 2


def test_if_match_is_honoured_and_a_stale_one_is_412(client, patient):
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    assert _patch(client, patient, ops, **{"If-Match": 'W/"1"'}).status_code == 200
    stale = _patch(client, patient, ops, **{"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"


def test_the_patched_result_is_judged_like_an_update(client, patient):
    r = _patch(client, patient, [{"op": "replace", "path": "/gender", "value": "bogus"}])
    assert r.status_code == 422, r.text
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["Patient.gender"]
    bad_nhs = [{"op": "replace", "path": "/identifier/0/value", "value": "9990000019"}]
    r = _patch(client, patient, bad_nhs)
    assert r.status_code == 422, r.text
    assert client.get(f"/fhir/Patient/{patient['id']}").json()["meta"]["versionId"] == "1"


@pytest.mark.parametrize(
    ("document", "status"),
    [
        ({"op": "replace", "path": "/gender", "value": "male"}, 400),  # not an array
        ([], 400),
        ([{"op": "frobnicate", "path": "/gender"}], 400),
        ([{"op": "replace", "value": "male"}], 400),  # no path
        ([{"op": "test", "path": "/gender", "value": "male"}], 422),  # the test fails
        ([{"op": "remove", "path": "/birthDate"}], 422),  # nothing there
        ([{"op": "replace", "path": "/id", "value": "other"}], 422),
        ([{"op": "replace", "path": "/resourceType", "value": "Group"}], 422),
    ],
)
def test_bad_patches_get_an_operation_outcome_and_change_nothing(client, patient, document, status):
    r = _patch(client, patient, document)
    assert r.status_code == status, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient/{patient['id']}").json()["meta"]["versionId"] == "1"


def test_unparseable_json_is_400_and_a_fhirpath_patch_is_415(client, patient):
    r = client.patch(f"/fhir/Patient/{patient['id']}", content=b"[{", headers=PATCH)
    assert r.status_code == 400
    params = {"resourceType": "Parameters", "parameter": []}
    r = client.patch(f"/fhir/Patient/{patient['id']}", content=json.dumps(params), headers=FHIR)
    assert r.status_code == 415
    assert "no FHIRPath Patch" in r.json()["issue"][0]["details"]["text"]


def test_patching_what_does_not_exist_is_404(client):
    r = client.patch(
        "/fhir/Patient/does-not-exist",
        content=json.dumps([{"op": "replace", "path": "/gender", "value": "male"}]),
        headers=PATCH,
    )
    assert r.status_code == 404


def test_concurrent_patches_without_if_match_both_land(client, patient):
    """Each patch is re-applied to the newest version when another write got in first: neither
    given name is lost."""
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def add(name: str) -> None:
        barrier.wait()
        r = _patch(client, patient, [{"op": "add", "path": "/name/0/given/-", "value": name}])
        statuses.append(r.status_code)

    threads = [threading.Thread(target=add, args=(n,)) for n in ("Sam", "Kit")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200, 200]
    given = client.get(f"/fhir/Patient/{patient['id']}").json()["name"][0]["given"]
    assert sorted(given) == ["Alex", "Kit", "Sam"]


def test_the_capability_statement_lists_patch_for_every_type(client):
    cs = client.get("/fhir/metadata").json()
    for resource in cs["rest"][0]["resource"]:
        assert "patch" in {i["code"] for i in resource["interaction"]}, resource["type"]
