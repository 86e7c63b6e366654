"""POST /fhir/$process-message (BaRS) and POST /fhir/$convert-ers through the app (SQLite/PostgreSQL)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from adapter.api.app import create_app
from adapter.api.security import current_grant
from adapter.auth.scopes import SmartGrant
from adapter.wiring import build_services
from tests.unit.mapping.golden import FIXTURES

MESSAGE = FIXTURES / "fhir-bars-servicerequest-request" / "gp-referral" / "input.json"
ERS = FIXTURES / "fhir-ers-referralrequest" / "two-week-wait-with-letter" / "input.json"


@pytest.fixture
def services(settings):
    s = build_services(settings)
    yield s
    s.close()


@pytest.fixture
def app(settings, services):
    return create_app(settings, services=services)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as c:
        yield c


def _post(client: TestClient, body: dict, path: str = "/fhir/$process-message", **headers: str):
    return client.post(
        path, content=json.dumps(body), headers={"content-type": "application/fhir+json", **headers}
    )


def _header(response_bundle: dict) -> dict:
    return response_bundle["entry"][0]["resource"]


def _counts(services) -> tuple[int, int]:
    return services.repo.count(), services.repo.history(None, None, count=1, offset=0).total


def test_message_is_stored_and_answered_ok_with_the_servicerequest(client, services):
    message = json.loads(MESSAGE.read_text())
    r = _post(client, message, **{"X-Request-Id": "60a9b1e2-0000-4000-8000-000000000001"})
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "60a9b1e2-0000-4000-8000-000000000001"
    body = r.json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "message"
    header = _header(body)
    assert header["eventCoding"]["code"] == "servicerequest-response"
    assert header["response"] == {
        "identifier": message["id"],
        "code": "ok",
        "details": header["response"]["details"],
    }
    focus = body["entry"][1]["resource"]
    assert focus["resourceType"] == "ServiceRequest"
    assert header["focus"] == [{"reference": f"ServiceRequest/{focus['id']}"}]
    assert {"system": "https://fhir.nhs.uk/Id/ubr-number", "value": "000000070002"} in focus[
        "identifier"
    ]
    patient = services.repo.read("Patient", focus["subject"]["reference"].split("/")[1]).resource
    status = patient["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]
    assert (status["system"], status["code"]) == (
        "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
        "01",
    )


def test_resending_the_same_message_duplicates_nothing_and_answers_the_same(client, services):
    message = json.loads(MESSAGE.read_text())
    first = _post(client, message)
    assert first.status_code == 200, first.text
    counts = _counts(services)
    second = _post(client, message)
    assert second.status_code == 200, second.text
    assert _counts(services) == counts
    assert second.json()["id"] == first.json()["id"]
    assert _header(second.json())["id"] == _header(first.json())["id"]


def test_reusing_a_message_id_for_different_content_is_409_duplicate(client, services):
    message = json.loads(MESSAGE.read_text())
    assert _post(client, message).status_code == 200
    counts = _counts(services)
    changed = copy.deepcopy(message)
    changed["entry"][1]["resource"]["note"][0]["text"] = "Changed after sending"
    r = _post(client, changed)
    assert r.status_code == 409
    header = _header(r.json())
    assert header["response"]["code"] == "fatal-error"
    oo = r.json()["entry"][-1]["resource"]
    assert oo["issue"][0]["code"] == "duplicate"
    assert {
        "system": "https://fhir.nhs.uk/CodeSystem/http-error-codes",
        "code": "REC_CONFLICT",
    } in oo["issue"][0]["details"]["coding"]
    assert _counts(services) == counts


def test_bad_nhs_number_is_fatal_error_naming_the_source_field(client, services):
    message = json.loads(MESSAGE.read_text())
    message["entry"][2]["resource"]["identifier"][0]["value"] = "9990000019"
    r = _post(client, message)
    assert r.status_code == 400
    assert _header(r.json())["response"]["code"] == "fatal-error"
    oo = r.json()["entry"][-1]["resource"]
    errors = [i for i in oo["issue"] if i["severity"] == "error"]
    assert errors
    assert errors[0]["expression"] == ["entry[2].resource.identifier[0].value"]
    assert errors[0]["details"]["coding"][-1]["code"] == "REC_BAD_REQUEST"
    assert services.repo.count() == 0


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda m: m.update(type="transaction"), 400, "invalid"),
        (lambda m: m["meta"].pop("versionId"), 400, "invariant"),
        (
            lambda m: m["entry"][0]["resource"]["eventCoding"].update(code="booking-request"),
            422,
            "not-supported",
        ),
        (
            lambda m: m["entry"][0]["resource"].update(focus=[{"reference": "urn:uuid:nowhere"}]),
            400,
            "invariant",
        ),
    ],
)
def test_malformed_messages_get_bars_status_codes(client, services, mutate, status, code):
    message = json.loads(MESSAGE.read_text())
    mutate(message)
    r = _post(client, message)
    assert r.status_code == status, r.text
    body = r.json()
    oo = body if body["resourceType"] == "OperationOutcome" else body["entry"][-1]["resource"]
    assert oo["issue"][0]["code"] == code
    assert services.repo.count() == 0


def test_scopes_are_enforced_per_mapped_resource(app, client, services):
    app.dependency_overrides[current_grant] = lambda: SmartGrant.from_scope_string(
        "system/ServiceRequest.cu system/MessageHeader.cu"
    )
    r = _post(client, json.loads(MESSAGE.read_text()))
    assert r.status_code == 403, r.text
    assert "Patient" in r.text
    assert services.repo.count() == 0
    app.dependency_overrides[current_grant] = lambda: SmartGrant.from_scope_string(
        "system/Patient.r"
    )
    assert _post(client, json.loads(MESSAGE.read_text())).status_code == 403


def test_ers_referralrequest_converts_once(client, services):
    body = json.loads(ERS.read_text())
    r = _post(client, body, "/fhir/$convert-ers")
    assert r.status_code == 200, r.text
    counts = _counts(services)
    again = _post(client, body, "/fhir/$convert-ers")
    assert again.status_code == 200
    assert _counts(services) == counts


def test_two_different_messages_sent_at_once_under_one_id_store_one_and_refuse_the_other(
    client, services
):
    """The MessageHeader.id check is settled inside the write, not before it: two messages that
    reuse one id with different content, arriving together, cannot both be stored (the second
    would silently overwrite the first's referral)."""
    import threading

    message = json.loads(MESSAGE.read_text())
    bodies = []
    for text in ("First version", "Second version"):
        changed = copy.deepcopy(message)
        changed["entry"][1]["resource"]["note"][0]["text"] = text
        bodies.append(changed)
    barrier = threading.Barrier(2)
    statuses: dict[str, int] = {}

    def send(body: dict) -> None:
        barrier.wait()
        statuses[body["entry"][1]["resource"]["note"][0]["text"]] = _post(client, body).status_code

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses.values()) == [200, 409], statuses
    winner = next(text for text, status in statuses.items() if status == 200)
    from adapter.store.repository import SearchQuery

    referrals = services.repo.search("ServiceRequest", SearchQuery(count=10)).resources
    assert [r.resource["note"][0]["text"] for r in referrals] == [winner]
    assert [r.version_id for r in referrals] == [1]
