"""`adapter serve` as a real process on a free loopback port: post a referral, race two updates."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.referrals import NHS, referral_bundle

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(settings, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "ADAPTER_DATABASE_URL": settings.database_url,
        "ADAPTER_AUTO_MIGRATE": "true",
    }
    if settings.database_schema:
        env["ADAPTER_DATABASE_SCHEMA"] = settings.database_schema
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapter.cli",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "info",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/fhir"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"adapter serve exited: {(tmp_path / 'serve.log').read_text()}")
        try:
            if httpx.get(f"{base}/metadata", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("adapter serve did not answer within 30 s")
    yield base
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def test_real_process_accepts_a_referral_and_finds_it(server):
    r = httpx.post(
        server, content=json.dumps(referral_bundle("9990554331")), headers=FHIR_JSON, timeout=10
    )
    assert r.status_code == 200, r.text
    found = httpx.get(
        f"{server}/ServiceRequest", params={"subject:identifier": f"{NHS}|9990554331"}
    ).json()
    assert found["total"] == 1


def test_two_concurrent_updates_with_same_if_match_exactly_one_wins(server):
    body = {"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9990633525"}]}
    created = httpx.post(f"{server}/Patient", content=json.dumps(body), headers=FHIR_JSON).json()
    pid = created["id"]
    results: list[int] = []
    barrier = threading.Barrier(2)

    def update(gender: str) -> None:
        payload = {**created, "gender": gender}
        with httpx.Client(timeout=10) as c:
            barrier.wait()
            r = c.put(
                f"{server}/Patient/{pid}",
                content=json.dumps(payload),
                headers={**FHIR_JSON, "If-Match": 'W/"1"'},
            )
            results.append(r.status_code)

    threads = [threading.Thread(target=update, args=(g,)) for g in ("male", "female")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 412]
    assert httpx.get(f"{server}/Patient/{pid}").headers["etag"] == 'W/"2"'


def test_server_logs_carry_no_patient_data(server, tmp_path):
    bundle = referral_bundle("9990871094", given="Perpetua", family="Zanzibarova")
    r = httpx.post(server, content=json.dumps(bundle), headers=FHIR_JSON, timeout=10)
    assert r.status_code == 200, r.text
    bad = referral_bundle("9990871095", given="Perpetua", family="Zanzibarova")
    assert (
        httpx.post(server, content=json.dumps(bad), headers=FHIR_JSON, timeout=10).status_code
        == 422
    )
    q = {"subject:identifier": f"{NHS}|9990871094"}
    assert httpx.get(f"{server}/ServiceRequest", params=q).status_code == 200
    # the access log line is written after the response is sent: wait for it (up to 10 s)
    deadline = time.monotonic() + 10
    text = (tmp_path / "serve.log").read_text()
    while "GET /fhir/ServiceRequest 200" not in text and time.monotonic() < deadline:
        time.sleep(0.05)
        text = (tmp_path / "serve.log").read_text()
    assert "GET /fhir/ServiceRequest 200" in text  # the access log is there...
    for secret in ("9990871094", "9990871095", "Perpetua", "Zanzibarova"):
        assert secret not in text  # ...without identifiers or names
