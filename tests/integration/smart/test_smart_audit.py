"""The audit trail: an AuditEvent per access and write. A write's event is stored in the write's
own unit of work (a write without its event is not made); a read's event that the store refuses is
counted and logged, never lost in silence. Faults are injected on purpose: the repository's create
fails for AuditEvents."""

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
    """The store accepts everything but AuditEvents, which fail as a lost connection would: in
    every repository of that class, so inside a write's unit of work too."""
    import sqlalchemy.exc

    from adapter.store.sql import translate_db_errors

    cls = type(live.repo)
    real_create = cls.create

    def create(self, resource, *args, **kwargs):
        if resource.get("resourceType") == "AuditEvent":
            with translate_db_errors(may_retry=False):
                raise sqlalchemy.exc.OperationalError("INSERT ...", {}, ConnectionError("lost"))
        return real_create(self, resource, *args, **kwargs)

    monkeypatch.setattr(cls, "create", create)


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


def test_a_write_and_its_audit_event_commit_together(live):
    nhs = unique_nhs()
    token = system_token(live, "system/Patient.cruds system/AuditEvent.rs")
    r = httpx.post(
        f"{live.base}/Patient",
        content=json.dumps(_patient(nhs)),
        headers={**FHIR_JSON, **bearer(token)},
    )
    assert r.status_code == 201, r.text
    patient_id = r.json()["id"]
    events = httpx.get(
        f"{live.base}/AuditEvent", params={"_count": "200"}, headers=bearer(token)
    ).json()
    mine = [
        e["resource"]
        for e in events.get("entry", [])
        if (e["resource"].get("entity") or [{}])[0].get("what", {}).get("reference")
        == f"Patient/{patient_id}"
    ]
    assert [(e["action"], e["outcome"], e["outcomeDesc"]) for e in mine] == [("C", "0", "HTTP 201")]


def test_a_write_whose_audit_event_cannot_be_stored_is_not_made_and_is_logged(
    live, audit_store_down, caplog
):
    """Fail closed (HAZ-022): no committed change to a record without its AuditEvent."""
    caplog.set_level(logging.INFO)
    nhs = unique_nhs()
    token = system_token(live, "system/Patient.cruds")
    before = live.smart.audit_failures.count
    r = httpx.post(
        f"{live.base}/Patient",
        content=json.dumps(_patient(nhs)),
        headers={**FHIR_JSON, **bearer(token), "X-Request-ID": "req-4711"},
    )
    assert r.status_code == 503, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    found = httpx.get(
        f"{live.base}/Patient", params={"identifier": f"{NHS}|{nhs}"}, headers=bearer(token)
    ).json()
    assert found["total"] == 0  # the Patient was rolled back with its AuditEvent
    # the failed attempt is still recorded: counted, and logged whole with the correlation id
    assert live.smart.audit_failures.count >= before + 1
    failures = [
        rec
        for rec in caplog.records
        if rec.getMessage() == "audit event could not be stored"
        and rec.correlation_id == "req-4711"
    ]
    assert len(failures) == 1
    record = failures[0]
    assert record.levelno == logging.ERROR
    assert record.error == "UpstreamUnavailable"
    assert record.exc_info is None  # no traceback: a driver error may quote SQL parameters
    event = json.loads(record.audit_event)  # the event itself, recoverable from the log
    assert event["resourceType"] == "AuditEvent"
    assert event["action"] == "C"
    assert event["outcome"] == "8"
    assert event["outcomeDesc"] == "HTTP 503"
    logged = "\n".join(
        f"{rec.getMessage()} {rec.__dict__}"
        for rec in caplog.records
        if rec.name != "httpx"  # the test's own client logs the URL it searched
    )
    for secret in (nhs, "Quixotic", "Zebedee", "1980-02-03"):
        assert secret not in logged


def test_an_update_and_a_transaction_without_their_audit_event_are_not_made(live, audit_store_down):
    nhs = unique_nhs()
    token = system_token(live, "system/Patient.cruds")
    # the store is down for AuditEvents only: make the Patient underneath the fault
    stored = live.repo.create({**_patient(nhs), "resourceType": "Patient"})
    r = httpx.put(
        f"{live.base}/Patient/{stored.id}",
        content=json.dumps({**stored.resource, "gender": "female"}),
        headers={**FHIR_JSON, **bearer(token)},
    )
    assert r.status_code == 503, r.text
    assert live.repo.read("Patient", stored.id).version_id == 1
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:4a3f0f55-7f7e-4f43-9d0e-3c1c2a1b0001",
                "resource": _patient(unique_nhs()),
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    }
    before = live.repo.count()
    r = httpx.post(live.base, content=json.dumps(bundle), headers={**FHIR_JSON, **bearer(token)})
    assert r.status_code == 503, r.text
    assert live.repo.count() == before


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
