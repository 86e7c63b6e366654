"""No personal data in logs: a fixture patient's NHS number and name never reach a log record."""

from __future__ import annotations

import json
import logging

from tests.support.referrals import referral_bundle

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _all_log_text(caplog) -> str:
    return "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


def test_rejected_referral_logs_no_patient_data(client, caplog):
    caplog.set_level(logging.DEBUG)
    bad = referral_bundle("9990000019", given="Zebedee", family="Quixotic")
    assert client.post("/fhir", content=json.dumps(bad), headers=FHIR_JSON).status_code == 422
    good = referral_bundle("9990712719", given="Zebedee", family="Quixotic")
    assert client.post("/fhir", content=json.dumps(good), headers=FHIR_JSON).status_code == 200
    text = _all_log_text(caplog)
    assert caplog.records, "expected the adapter to log something about these requests"
    for secret in ("9990000019", "9990712719", "Zebedee", "Quixotic"):
        assert secret not in text
