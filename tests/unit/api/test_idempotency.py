"""Idempotency-Key on FHIR writes, through the ASGI app, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from adapter.errors import UpstreamUnavailable
from adapter.idempotency import IdempotencyStore, StoredResponse, key_hash, request_hash
from adapter.store.repository import SearchQuery
from tests.support.referrals import NHS, nhs_number

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def patient(nhs: str, given: str = "Alex") -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": nhs}],
        "name": [{"family": "Testperson", "given": [given]}],
        "gender": "unknown",
    }


def post(client, path: str, body: dict, key: str | None, **headers: str):
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(path, content=json.dumps(body), headers={**FHIR_JSON, **extra, **headers})


def test_same_key_replays_the_first_answer_and_stores_once(client, services):
    first = post(client, "/fhir/Patient", patient(nhs_number(1)), "key-1")
    again = post(client, "/fhir/Patient", patient(nhs_number(1)), "key-1")
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    for name in ("location", "etag", "last-modified", "content-type"):
        assert again.headers[name] == first.headers[name]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert services.repo.count("Patient") == 1


def test_same_key_with_a_different_body_is_422_and_writes_nothing(client, services):
    assert post(client, "/fhir/Patient", patient(nhs_number(2)), "key-2").status_code == 201
    other = post(client, "/fhir/Patient", patient(nhs_number(3)), "key-2")
    assert other.status_code == 422
    issue = other.json()["issue"][0]
    assert issue["code"] == "duplicate"
    assert "different request" in issue["details"]["text"]
    assert services.repo.count("Patient") == 1
    # the same body to another URL is another request too
    assert post(client, "/fhir/Observation", patient(nhs_number(2)), "key-2").status_code == 422


def small_bundle(nhs: str) -> dict:
    """A transaction without a referral: the policy packs' referral rules are not under test."""
    org = "urn:uuid:5f0d3a57-2a5c-4b8e-9a55-0d5c4c3e2a11"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": org,
                "resource": {"resourceType": "Organization", "name": "Synthetic Surgery"},
                "request": {"method": "POST", "url": "Organization"},
            },
            {
                "resource": {**patient(nhs), "managingOrganization": {"reference": org}},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }


def test_a_transaction_bundle_sent_twice_with_one_key_is_stored_once(client, services):
    bundle = small_bundle(nhs_number(4))
    first = post(client, "/fhir", bundle, "bundle-key")
    assert first.status_code == 200, first.text
    stored = services.repo.count()
    again = post(client, "/fhir", bundle, "bundle-key")
    assert again.status_code == 200
    assert again.json() == first.json()
    assert services.repo.count() == stored
    assert services.repo.count("Patient") == 1


def test_put_and_delete_are_replayed_without_a_new_version(client, services):
    created = post(client, "/fhir/Patient", patient(nhs_number(5)), None).json()
    body = json.dumps({**created, "gender": "female"})
    headers = {**FHIR_JSON, "Idempotency-Key": "put-1"}
    first = client.put(f"/fhir/Patient/{created['id']}", content=body, headers=headers)
    again = client.put(f"/fhir/Patient/{created['id']}", content=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.headers["etag"] == again.headers["etag"] == 'W/"2"'
    assert services.repo.read("Patient", created["id"]).version_id == 2
    gone = client.delete(f"/fhir/Patient/{created['id']}", headers={"Idempotency-Key": "del-1"})
    gone_again = client.delete(
        f"/fhir/Patient/{created['id']}", headers={"Idempotency-Key": "del-1"}
    )
    assert gone.status_code == gone_again.status_code == 204
    assert gone_again.headers["idempotent-replayed"] == "true"


def test_works_on_top_of_if_none_exist(client, services):
    nhs = nhs_number(6)
    criteria = {"If-None-Exist": f"identifier={NHS}|{nhs}"}
    created = post(client, "/fhir/Patient", patient(nhs), "a", **criteria)
    matched = post(client, "/fhir/Patient", patient(nhs), "b", **criteria)  # another key
    replayed = post(client, "/fhir/Patient", patient(nhs), "a", **criteria)
    assert (created.status_code, matched.status_code, replayed.status_code) == (201, 200, 201)
    assert created.json()["id"] == matched.json()["id"] == replayed.json()["id"]
    assert services.repo.count("Patient") == 1


def test_a_malformed_key_is_400_and_reads_are_not_keyed(client, services):
    bad = post(client, "/fhir/Patient", patient(nhs_number(7)), "x" * 256)
    assert bad.status_code == 400
    assert services.repo.count("Patient") == 0
    search = {"Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": "s"}
    for _ in range(2):
        found = client.post("/fhir/Patient/_search", content="_id=nobody", headers=search)
        assert found.status_code == 200
        assert "idempotent-replayed" not in found.headers


def test_a_transient_failure_is_not_stored_so_the_retry_runs(client, services, monkeypatch):
    real = services.pipeline.create
    calls: list[int] = []

    def flaky(resource, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise UpstreamUnavailable("database briefly unavailable", headers={"Retry-After": "1"})
        return real(resource, **kwargs)

    monkeypatch.setattr(services.pipeline, "create", flaky)
    assert post(client, "/fhir/Patient", patient(nhs_number(8)), "retry-me").status_code == 503
    retried = post(client, "/fhir/Patient", patient(nhs_number(8)), "retry-me")
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert len(calls) == 2
    assert services.repo.count("Patient") == 1


def test_a_concurrent_duplicate_gets_409_and_does_not_run(client, services, monkeypatch):
    real = services.pipeline.create
    entered, release = threading.Event(), threading.Event()
    runs: list[int] = []

    def slow(resource, **kwargs):
        runs.append(1)
        entered.set()
        assert release.wait(10)
        return real(resource, **kwargs)

    monkeypatch.setattr(services.pipeline, "create", slow)
    body = patient(nhs_number(9))
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, client, "/fhir/Patient", body, "same")
        assert entered.wait(10)
        duplicate = post(client, "/fhir/Patient", body, "same")
        release.set()
        assert first.result(10).status_code == 201
    assert duplicate.status_code == 409
    assert duplicate.headers["retry-after"] == "1"
    assert duplicate.json()["issue"][0]["code"] == "conflict"
    assert post(client, "/fhir/Patient", body, "same").headers["idempotent-replayed"] == "true"
    assert len(runs) == 1
    assert services.repo.count("Patient") == 1


# --- the store itself ----------------------------------------------------------------------------


@pytest.fixture
def store(database) -> IdempotencyStore:
    return IdempotencyStore(database.engine, in_flight_timeout=timedelta(seconds=30))


def test_concurrent_claims_of_one_key_let_exactly_one_run(store):
    key = key_hash("caller", "k")
    request = request_hash("POST", "/fhir/Patient", "", b"{}")
    barrier = threading.Barrier(8)

    def claim() -> str:
        barrier.wait()
        return store.begin(key, request).state

    with ThreadPoolExecutor(8) as pool:
        states = list(pool.map(lambda _: claim(), range(8)))
    assert states.count("claimed") == 1
    assert states.count("in_flight") == 7


def test_the_window_and_the_in_flight_timeout(store):
    key, request = key_hash("caller", "w"), request_hash("POST", "/fhir/Patient", "", b"{}")
    start = datetime.now(UTC)
    assert store.begin(key, request, now=start).state == "claimed"
    assert store.begin(key, request, now=start + timedelta(seconds=5)).state == "in_flight"
    # the first request died without an answer: after the timeout a retry may run
    assert store.begin(key, request, now=start + timedelta(seconds=31)).state == "claimed"
    store.complete(key, StoredResponse(201, [("Location", "x"), ("Date", "today")], b"{}"))
    replay = store.begin(key, request, now=start + timedelta(hours=23))
    assert replay.state == "replay"
    assert replay.response == StoredResponse(201, [("Location", "x")], b"{}")
    assert store.begin(key, request, now=start + timedelta(hours=25)).state == "claimed"
    assert store.purge(now=start + timedelta(hours=50)) == 1


def test_keys_belong_to_their_caller(store):
    request = request_hash("POST", "/fhir/Patient", "", b"{}")
    assert store.begin(key_hash("client-a", "k"), request).state == "claimed"
    assert store.begin(key_hash("client-b", "k"), request).state == "claimed"


@pytest.mark.parametrize("kind", ["create", "transaction"])
def test_a_retry_after_the_answer_was_lost_is_answered_not_run_again(
    client, services, monkeypatch, kind
):
    """The process 'dies' after the write commits but before its answer is stored (the fault is
    injected: storing the answer fails). The write marked its key committed inside its own unit of
    work, so the retry gets the write's status and Location instead of a second create."""
    store = services.idempotency
    real_complete = store.complete

    def die(key, response):
        raise RuntimeError("process killed before the answer was stored")

    monkeypatch.setattr(store, "complete", die)
    nhs = nhs_number(30 if kind == "create" else 31)
    path, body = (
        ("/fhir/Patient", patient(nhs)) if kind == "create" else ("/fhir", small_bundle(nhs))
    )
    with pytest.raises(RuntimeError):
        post(client, path, body, f"lost-{kind}")
    assert services.repo.count("Patient") == 1  # the write itself committed
    monkeypatch.setattr(store, "complete", real_complete)
    # a retry while the first may still be finishing is told to wait
    assert post(client, path, body, f"lost-{kind}").status_code == 409
    # after the in-flight timeout it is answered from the committed mark, not run again
    monkeypatch.setattr(store, "in_flight_timeout", timedelta(0))
    retried = post(client, path, body, f"lost-{kind}")
    assert retried.status_code == (201 if kind == "create" else 200), retried.text
    assert retried.headers["idempotent-replayed"] == "true"
    outcome = retried.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "not run again" in outcome["issue"][0]["details"]["text"]
    if kind == "create":
        stored = services.repo.search("Patient", SearchQuery(count=5)).resources
        assert retried.headers["location"].endswith(f"/Patient/{stored[0].id}")
    assert services.repo.count("Patient") == 1
