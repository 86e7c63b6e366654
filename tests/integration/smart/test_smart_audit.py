"""The audit trail: an AuditEvent per access and write, and none lost in silence when the store
refuses one (the fault is injected on purpose: the repository's create fails for AuditEvents)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from tests.integration.smart.harness import FHIR_JSON, bearer, system_token, unique_nhs
from tests.support.referrals import NHS

pytestmark = pytest.mark.integration


@pytest.fixture
def audit_store_down(live, monkeypatch):
    """The store accepts everything but AuditEvents, which fail as a lost connection would."""
    import sqlalchemy.exc

    real_create = live.repo.create

    def create(resource, *args, **kwargs):
        if resource.get("resourceType") == "AuditEvent":
            raise sqlalchemy.exc.OperationalError("INSERT ...", {}, ConnectionError("lost"))
        return real_create(resource, *args, **kwargs)

    monkeypatch.setattr(live.repo, "create", create)


def _patient(nhs: str) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": nhs}],
        "name": [{"family": "Quixotic", "given": ["Zebedee"]}],
        "birthDate": "1980-02-03",
    }


def test_audit_events_record_client_action_resource_and_outcome_without_content(live):
    nhs = unique_nhs()
    token = system_token(live, "system/Patient.cruds system/AuditEvent.rs")
    created = httpx.post(
        f"{live.base}/Patient",
        content=json.dumps(_patient(nhs)),
        headers={**FHIR_JSON, **bearer(token)},
    )
    assert created.status_code == 201, created.text
    patient_id = created.json()["id"]
    events = httpx.get(
        f"{live.base}/AuditEvent",
        params={"entity": f"Patient/{patient_id}"},
        headers=bearer(token),
    ).json()
    assert events["total"] == 1
    event = events["entry"][0]["resource"]
    assert event["action"] == "C"
    assert event["outcome"] == "0"
    assert event["subtype"][0]["code"] == "create"
    assert event["agent"][0]["who"]["identifier"]["value"] == "system-admin"
    text = json.dumps(events)
    for secret in (nhs, "Quixotic", "Zebedee", "1980-02-03"):
        assert secret not in text


def test_a_write_whose_audit_event_fails_is_counted_and_logged_with_a_correlation_id(
    live, audit_store_down, caplog
):
    caplog.set_level(logging.INFO)
    nhs = unique_nhs()
    token = system_token(live, "system/Patient.cruds")
    before = live.smart.audit_failures.count
    r = httpx.post(
        f"{live.base}/Patient",
        content=json.dumps(_patient(nhs)),
        headers={**FHIR_JSON, **bearer(token), "X-Request-ID": "req-4711"},
    )
    assert r.status_code == 201, r.text  # the write itself is committed and stands
    patient_id = r.json()["id"]
    assert live.repo.read("Patient", patient_id).resource["id"] == patient_id
    assert live.smart.audit_failures.count == before + 1
    failures = [
        rec for rec in caplog.records if rec.getMessage() == "audit event could not be stored"
    ]
    assert len(failures) == 1
    record = failures[0]
    assert record.levelno == logging.ERROR
    assert record.correlation_id == "req-4711"
    assert record.error == "OperationalError"
    assert record.exc_info is None  # no traceback: a driver error may quote SQL parameters
    event = json.loads(record.audit_event)  # the event itself, recoverable from the log
    assert event["resourceType"] == "AuditEvent"
    assert event["entity"][0]["what"]["reference"] == f"Patient/{patient_id}"
    assert event["action"] == "C"
    logged = "\n".join(f"{rec.getMessage()} {rec.__dict__}" for rec in caplog.records)
    for secret in (nhs, "Quixotic", "Zebedee", "1980-02-03"):
        assert secret not in logged


def test_a_read_whose_audit_event_fails_gets_a_fresh_correlation_id(live, audit_store_down, caplog):
    caplog.set_level(logging.INFO)
    token = system_token(live, "system/Patient.rs")
    before = live.smart.audit_failures.count
    r = httpx.get(
        f"{live.base}/Patient",
        headers={**bearer(token), "X-Request-ID": "not a token; drop table"},
    )
    assert r.status_code == 200
    assert live.smart.audit_failures.count == before + 1
    (record,) = [
        rec for rec in caplog.records if rec.getMessage() == "audit event could not be stored"
    ]
    assert len(record.correlation_id) == 36  # a UUID, not the caller's malformed header
