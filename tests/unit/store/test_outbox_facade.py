"""The facade with backend=remote while the backing server is down: 202 + status location (accept),
503 + Retry-After (refuse). Delivery uses httpx.MockTransport; SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi.testclient import TestClient

from adapter.api.app import create_app
from adapter.store.outbox import DeliveryWorker, OutboxRepository, RetryPolicy
from adapter.store.remote import AsyncFhirClient
from adapter.wiring import build_services
from tests.support.referrals import NHS, nhs_number

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def patient(i: int) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": nhs_number(i)}],
        "name": [{"family": "Testperson", "given": ["Sam"]}],
        "gender": "unknown",
    }


def remote_client(settings, when_down: str):
    remote = settings.model_copy(
        update={
            "backend": "remote",
            "fhir_base_url": "http://backend.test/fhir",
            "outbox_when_down": when_down,
            "outbox_worker_in_process": False,
            "outbox_breaker_threshold": 2,
            "outbox_breaker_reset_seconds": 60.0,
        }
    )
    services = build_services(remote)
    return services, TestClient(create_app(remote, services=services), base_url="http://testserver")


def deliver_all(repo: OutboxRepository, answer: int = 200) -> None:
    def backend(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            answer, json={"resourceType": "Bundle", "type": "transaction-response"}
        )

    client = AsyncFhirClient("http://backend.test/fhir", transport=httpx.MockTransport(backend))
    worker = DeliveryWorker(repo.outbox, client, policy=RetryPolicy(3, 0.0, 0.0))
    asyncio.run(worker.run_once())


def test_accept_mode_answers_202_with_a_status_location_until_delivered(settings):
    services, client = remote_client(settings, "accept")
    repo = services.repo
    assert isinstance(repo, OutboxRepository)
    with client:
        up = client.post("/fhir/Patient", content=json.dumps(patient(1)), headers=FHIR_JSON)
        assert up.status_code == 201  # the server is not known to be down: the usual answer
        assert "content-location" not in up.headers
        repo.breaker.failure()
        repo.breaker.failure()  # threshold 2: open
        down = client.post("/fhir/Patient", content=json.dumps(patient(2)), headers=FHIR_JSON)
        assert down.status_code == 202, down.text
        location = down.headers["content-location"]
        assert location.startswith("http://testserver/fhir/_outbox/")
        stored = down.json()
        assert down.headers["location"].endswith(f"/Patient/{stored['id']}/_history/1")
        assert client.get(f"/fhir/Patient/{stored['id']}").status_code == 200  # read your write

        queued = client.get(location)
        assert queued.status_code == 202
        task = queued.json()
        assert task["resourceType"] == "Task"
        assert (task["status"], task["businessStatus"]["text"]) == ("requested", "queued")
        assert task["input"] == [
            {
                "type": {"text": "resource"},
                "valueReference": {"reference": f"Patient/{stored['id']}"},
            }
        ]
        assert queued.headers["x-progress"] == "queued"

        repo.breaker.success()
        deliver_all(repo)
        done = client.get(location)
        assert done.status_code == 200
        assert (done.json()["status"], done.json()["businessStatus"]["text"]) == (
            "completed",
            "delivered",
        )
        assert client.get("/fhir/_outbox/999999").status_code == 404
    assert repo.outbox.status()["pending"] == 0


def test_a_dead_lettered_write_reports_failed_with_its_dead_letter(settings):
    services, client = remote_client(settings, "accept")
    repo = services.repo
    with client:
        repo.breaker.failure()
        repo.breaker.failure()
        down = client.post("/fhir/Patient", content=json.dumps(patient(3)), headers=FHIR_JSON)
        assert down.status_code == 202
        repo.breaker.success()
        deliver_all(repo, answer=422)
        task = client.get(down.headers["content-location"]).json()
    assert task["status"] == "failed"
    assert task["businessStatus"]["text"] == "dead-lettered"
    assert "HTTP 422" in task["statusReason"]["text"]
    assert "dead letter 1" in task["statusReason"]["text"]


def test_an_idempotent_retry_of_a_202_replays_it_and_queues_nothing_more(settings):
    services, client = remote_client(settings, "accept")
    repo = services.repo
    headers = {**FHIR_JSON, "Idempotency-Key": "gp-message-17"}
    with client:
        repo.breaker.failure()
        repo.breaker.failure()
        first = client.post("/fhir/Patient", content=json.dumps(patient(4)), headers=headers)
        again = client.post("/fhir/Patient", content=json.dumps(patient(4)), headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.headers["content-location"] == first.headers["content-location"]
    assert repo.outbox.status()["pending"] == 1
    assert repo.count("Patient") == 1


def test_refuse_mode_answers_503_with_retry_after_and_stores_nothing(settings):
    services, client = remote_client(settings, "refuse")
    repo = services.repo
    with client:
        repo.breaker.failure()
        repo.breaker.failure()
        refused = client.post("/fhir/Patient", content=json.dumps(patient(5)), headers=FHIR_JSON)
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["issue"][0]["code"] == "transient"
        assert "content-location" not in refused.headers
    assert repo.count("Patient") == 0
    assert repo.outbox.status()["pending"] == 0


@pytest.mark.parametrize("when_down", ["accept", "refuse"])
def test_the_embedded_backend_never_answers_202(settings, when_down):
    services = build_services(settings.model_copy(update={"outbox_when_down": when_down}))
    with TestClient(create_app(settings, services=services)) as client:
        created = client.post("/fhir/Patient", content=json.dumps(patient(6)), headers=FHIR_JSON)
    assert created.status_code == 201


def test_metrics_show_the_outbox_pending_then_delivered(settings):
    services, client = remote_client(settings, "accept")
    repo = services.repo
    assert isinstance(repo, OutboxRepository)

    def gauge(text: str, name: str) -> float:
        return float(next(x for x in text.splitlines() if x.startswith(name)).rsplit(" ", 1)[1])

    with client:
        start = repo.outbox.status()
        assert client.post(
            "/fhir/Patient", content=json.dumps(patient(40)), headers=FHIR_JSON
        ).status_code in (201, 202)
        queued = client.get("/metrics").text
        assert gauge(queued, 'cmh_outbox_messages{status="pending"}') == start["pending"] + 1
        deliver_all(repo)
        delivered = client.get("/metrics").text
        assert gauge(delivered, 'cmh_outbox_messages{status="pending"}') == 0
        assert gauge(delivered, 'cmh_outbox_messages{status="delivered"}') >= 1
        assert gauge(delivered, "cmh_outbox_dead_letters_open") == start["dead_letters_open"]
    services.close()
