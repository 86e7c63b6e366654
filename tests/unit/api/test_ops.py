"""Liveness, readiness and Prometheus metrics outside /fhir: counts and names, never patient data."""

from __future__ import annotations

import json

from adapter.errors import UpstreamUnavailable
from adapter.issue import Issue
from tests.support.referrals import referral_bundle

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith((name + " ", name + "{")))
    return float(line.rsplit(" ", 1)[1])


def test_healthz_and_readyz_answer_when_the_store_answers(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert any(stamp.startswith("england-cmht@") for stamp in ready.json()["policy_packs"])


def test_readyz_is_503_with_an_outcome_when_the_store_does_not_answer(
    client, services, monkeypatch
):
    def down(*args, **kwargs):
        raise UpstreamUnavailable([Issue("error", "transient", "The database is unavailable")])

    monkeypatch.setattr(services.repo, "count", down)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["resourceType"] == "OperationOutcome"
    assert client.get("/healthz").status_code == 200  # alive, but not ready
    scraped = client.get("/metrics")
    assert scraped.status_code == 503
    assert scraped.json()["resourceType"] == "OperationOutcome"


def test_metrics_count_stored_resources_and_name_the_packs_without_patient_data(client):
    before = client.get("/metrics")
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain; version=0.0.4")
    patients = _metric(before.text, 'cmh_stored_resources{type="Patient"}')
    bundle = referral_bundle("9990000018", given="Perpetua", family="Zanzibarova")
    assert client.post("/fhir", content=json.dumps(bundle), headers=FHIR_JSON).status_code == 200
    after = client.get("/metrics").text
    assert _metric(after, 'cmh_stored_resources{type="Patient"}') == patients + 1
    assert _metric(after, 'cmh_stored_resources{type="ServiceRequest"}') >= 1
    assert _metric(after, "cmh_audit_failures") == 0
    assert 'cmh_policy_pack_info{stamp="england-cmht@' in after
    for secret in ("9990000018", "Perpetua", "Zanzibarova"):
        assert secret not in after


def test_ops_endpoints_need_no_token_even_when_auth_is_required(settings):
    from fastapi.testclient import TestClient

    from adapter.api.app import create_app
    from adapter.wiring import build_services

    secured = settings.model_copy(update={"auth_required": True})
    services = build_services(secured)
    try:
        with TestClient(create_app(secured, services=services)) as c:
            assert c.get("/healthz").status_code == 200
            assert c.get("/metrics").status_code == 200
            assert c.get("/fhir/Patient").status_code == 401  # the FHIR API still needs one
    finally:
        services.close()
