"""The outbox on SQLite with httpx.MockTransport as the backing server (faults injected on purpose)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from adapter.errors import UpstreamUnavailable
from adapter.store.migrate import upgrade
from adapter.store.outbox import (
    CircuitBreaker,
    DeliveryWorker,
    Outbox,
    OutboxRepository,
    RetryPolicy,
)
from adapter.store.remote import AsyncFhirClient
from adapter.store.sql import SqlRepository, build_engine

PATIENT = {"resourceType": "Patient", "gender": "unknown"}


@pytest.fixture
def repo(tmp_path):
    url = f"sqlite:///{tmp_path / 'front.sqlite3'}"
    upgrade(url)
    sql = SqlRepository(build_engine(url))
    yield OutboxRepository(
        sql, Outbox(sql.engine), breaker=CircuitBreaker(threshold=2, reset_seconds=60)
    )
    sql.close()


def worker_for(repo, handler, attempts=3):
    client = AsyncFhirClient("http://backend.test/fhir", transport=httpx.MockTransport(handler))
    return DeliveryWorker(
        repo.outbox, client, policy=RetryPolicy(attempts, 0.0, 0.0), breaker=repo.breaker
    )


def _write_then_fail(repo):
    with repo.unit_of_work() as uow:
        uow.create(PATIENT, id="p1")
        raise RuntimeError("pipeline failed after the write")


def test_write_and_outbox_message_commit_together_or_not_at_all(repo):
    with pytest.raises(RuntimeError):
        _write_then_fail(repo)
    assert repo.count("Patient") == 0
    assert repo.outbox.status()["pending"] == 0
    repo.create(PATIENT, id="p2")
    assert repo.count("Patient") == 1
    assert repo.outbox.status()["pending"] == 1


def test_poison_message_is_dead_lettered_with_its_payload_and_every_error(repo):
    repo.create(PATIENT, id="p1")
    invalid = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invariant", "diagnostics": "bad"}],
    }
    answers = iter([httpx.Response(503), httpx.Response(422, json=invalid)])
    worker = worker_for(repo, lambda request: next(answers))
    asyncio.run(worker.run_once())
    assert repo.outbox.status()["pending"] == 1  # 503: rescheduled
    repo.breaker.success()
    asyncio.run(worker.run_once())
    status = repo.outbox.status()
    assert status["dead"] == 1
    entries, errors = repo.outbox.dead_letter(1)
    assert entries[0]["request"] == {"method": "PUT", "url": "Patient/p1"}
    assert entries[0]["resource"]["id"] == "p1"
    assert [e["status"] for e in errors] == [503, 422]
    assert repo.outbox.retry() == 1
    assert repo.outbox.status()["pending"] == 1


def test_bounded_attempts_then_dead_letter_and_breaker_opens(repo):
    repo.create(PATIENT, id="p1")
    worker = worker_for(repo, lambda request: httpx.Response(500), attempts=2)
    asyncio.run(worker.run_once())
    repo.breaker.success()
    asyncio.run(worker.run_once())
    assert repo.outbox.status()["dead"] == 1


def test_refuse_mode_answers_503_with_retry_after_and_stores_nothing(repo):
    repo.refuse_when_down = True
    repo.breaker.failure()
    repo.breaker.failure()
    with pytest.raises(UpstreamUnavailable) as caught:
        repo.create(PATIENT, id="p1")
    assert caught.value.status == 503
    assert int(caught.value.headers["Retry-After"]) >= 1
    assert repo.count("Patient") == 0


def test_delivery_is_one_transaction_bundle_of_puts_and_a_referral_waits_for_its_patient(repo):
    repo.create(PATIENT, id="p1")
    repo.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p1"},
        },
        id="o1",
    )
    sent: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response"})

    worker = worker_for(repo, handler)
    worker.batch_size = 10
    asyncio.run(worker.run_once())  # only the Patient is claimable
    asyncio.run(worker.run_once())
    assert [b["entry"][0]["request"]["url"] for b in sent] == ["Patient/p1", "Observation/o1"]
    assert all(b["type"] == "transaction" for b in sent)
    assert "versionId" not in sent[0]["entry"][0]["resource"].get("meta", {})
    assert repo.outbox.status()["delivered"] == 2


def _three_patients(repo):
    for i in range(3):
        repo.create(PATIENT, id=f"p{i}")


def test_claimed_messages_travel_in_one_bundle_and_a_retryable_failure_retries_them_all(repo):
    _three_patients(repo)
    sent: list[dict] = []
    answers = iter([503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(next(answers), json={"resourceType": "Bundle", "type": "x"})

    worker = worker_for(repo, handler)
    worker.messages_per_bundle = 10
    asyncio.run(worker.run_once())
    assert repo.outbox.status()["pending"] == 3  # all three rescheduled, none dead
    repo.breaker.success()
    asyncio.run(worker.run_once())
    assert [len(b["entry"]) for b in sent] == [3, 3]
    assert repo.outbox.status()["delivered"] == 3
    assert worker.delivered_count == 3


def test_a_poison_message_in_a_bundle_is_found_alone_and_only_it_is_dead_lettered(repo):
    _three_patients(repo)
    sent: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls = [e["request"]["url"] for e in json.loads(request.content)["entry"]]
        sent.append(urls)
        if "Patient/p1" in urls:
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "invariant", "diagnostics": "bad"}],
            }
            return httpx.Response(422, json=outcome)
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response"})

    worker = worker_for(repo, handler)
    worker.messages_per_bundle = 10
    asyncio.run(worker.run_once())
    assert sent[0] == ["Patient/p0", "Patient/p1", "Patient/p2"]
    assert sorted(map(tuple, sent[1:])) == [("Patient/p0",), ("Patient/p1",), ("Patient/p2",)]
    status = repo.outbox.status()
    assert (status["delivered"], status["dead"]) == (2, 1)
    entries, errors = repo.outbox.dead_letter(1)
    assert entries[0]["request"]["url"] == "Patient/p1"
    assert [e["status"] for e in errors] == [422]


def test_a_conflict_in_a_bundle_holds_up_only_its_own_message(repo):
    _three_patients(repo)

    def handler(request: httpx.Request) -> httpx.Response:
        urls = [e["request"]["url"] for e in json.loads(request.content)["entry"]]
        if "Patient/p2" in urls:
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "conflict", "diagnostics": "busy"}],
            }
            return httpx.Response(409, json=outcome)
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response"})

    worker = worker_for(repo, handler)
    worker.messages_per_bundle = 10
    asyncio.run(worker.run_once())
    status = repo.outbox.status()
    assert (status["delivered"], status["pending"], status["dead"]) == (2, 1, 0)


def test_a_refused_connection_backs_off_by_policy_not_by_our_own_retry_after(repo):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    repo.create(PATIENT, id="p1")
    worker = worker_for(repo, refuse)
    worker.policy = RetryPolicy(5, 0.01, 0.02)
    before = datetime.now(UTC)
    asyncio.run(worker.run_once())
    message = repo.outbox.message_status(1)
    assert message.status == "pending"
    assert message.errors[0]["status"] == 503
    assert message.next_attempt_at - before < timedelta(seconds=1)  # not the 5 s we tell callers


def test_the_servers_own_retry_after_is_a_floor(repo):
    answer = httpx.Response(429, headers={"Retry-After": "30"}, json={"resourceType": "x"})
    repo.create(PATIENT, id="p1")
    worker = worker_for(repo, lambda request: answer)
    worker.policy = RetryPolicy(5, 0.01, 0.02)
    before = datetime.now(UTC)
    asyncio.run(worker.run_once())
    message = repo.outbox.message_status(1)
    assert message.next_attempt_at - before >= timedelta(seconds=29)


def test_an_unreachable_server_never_dead_letters_a_valid_message(repo):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    repo.create(PATIENT, id="p1")
    worker = worker_for(repo, refuse, attempts=2)
    for _ in range(5):  # well past the attempt limit, as the breaker's probes would be
        repo.breaker.success()
        repo.outbox.retry()  # due now
        asyncio.run(worker.run_once())
    status = repo.outbox.status()
    assert (status["pending"], status["dead"]) == (1, 0)
    assert len(repo.outbox.message_status(1).errors) == 5
