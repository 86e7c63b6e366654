"""One contract, two real FHIR R4 servers, through RemoteFhirRepository (issue #7).

(a) our embedded store served over HTTP (`adapter serve`, SQLite; policy packs off: the store's
HTTP contract is under test, not the rules), and (b) sekmet-fhir from PyPI. Both start once per
module, at the same time, on free loopback ports. sekmet writes the `base_url` of its config into
Location headers, so the config names the real port (RemoteFhirRepository only trusts the path).

Where the servers differ, the test says so: sekmet checks structure but not invariants or
bindings, so its 422 comes from a failed JSON Patch in a transaction, ours from a binding.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from adapter.errors import ConformanceError, InputError, NotFound, PreconditionFailed
from adapter.store.remote import RemoteFhirRepository
from adapter.store.repository import SearchParam, SearchQuery
from tests.support.referrals import NHS, nhs_number

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SYSTEM = "https://fhir.cmh-adapter.example/Id/contract"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    base: str
    process: subprocess.Popen[bytes]
    log: Path

    def wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/metadata", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        pytest.fail(f"{self.name} did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_embedded(tmp: Path) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "ADAPTER_DATABASE_URL": f"sqlite:///{tmp / 'embedded.sqlite3'}",
        "ADAPTER_AUTO_MIGRATE": "true",
        "ADAPTER_BACKEND": "embedded",
        "ADAPTER_POLICY_PACKS": "[]",
    }
    log = tmp / "embedded.log"
    command = [
        sys.executable,
        "-m",
        "adapter.cli",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server("embedded", f"http://127.0.0.1:{port}/fhir", process, log)


def start_sekmet(tmp: Path) -> Server:
    sekmet = shutil.which("sekmet") or str(Path(sys.executable).parent / "sekmet")
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    config = tmp / "sekmet.yaml"
    config.write_text(
        f"base_url: {base}\ndata_dir: {tmp / 'sekmet-data'}\n"
        "simulator: {enabled: false}\nlog_inbound: false\n"
    )
    log = tmp / "sekmet.log"
    env = {**os.environ, "SEKMET_CONFIG": str(config)}
    command = [sekmet, "serve", "--host", "127.0.0.1", "--port", str(port), "--config", str(config)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server("sekmet", base, process, log)


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[dict[str, Server]]:
    tmp = tmp_path_factory.mktemp("contract")
    started = {s.name: s for s in (start_embedded(tmp), start_sekmet(tmp))}  # both boot at once
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(params=["embedded", "sekmet"])
def repo(request, servers) -> Iterator[RemoteFhirRepository]:
    remote = RemoteFhirRepository(servers[request.param].base, timeout=httpx.Timeout(10.0))
    remote.server_name = request.param  # type: ignore[attr-defined]
    yield remote
    remote.close()


def patient(nhs: str | None = None, **extra: object) -> dict:
    resource: dict = {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": nhs or nhs_number(0)}],
        "name": [{"family": "Testperson", "given": ["Contract"]}],
        "gender": "unknown",
    }
    return {**resource, **extra}


def marked_patient() -> tuple[dict, str]:
    """A patient with a unique business identifier of ours, for searching."""
    value = uuid.uuid4().hex
    resource = patient()
    resource["identifier"] = [*resource["identifier"], {"system": SYSTEM, "value": value}]
    return resource, f"{SYSTEM}|{value}"


def by_identifier(repo: RemoteFhirRepository, token: str) -> list[str]:
    query = SearchQuery(params=(SearchParam("identifier", (token,)),), count=50)
    return [s.id for s in repo.search("Patient", query).resources]


# --- the contract ---------------------------------------------------------------------------------


def test_create_assigns_an_id_and_version_1_and_read_returns_it(repo):
    resource, _ = marked_patient()
    created = repo.create(resource)
    assert created.id
    assert created.version_id == 1
    read = repo.read("Patient", created.id)
    assert read.version_id == 1
    assert read.resource["identifier"] == resource["identifier"]


def test_create_with_our_id_is_an_idempotent_put(repo):
    id = f"contract-{uuid.uuid4().hex[:12]}"
    first = repo.create(patient(), id=id)
    again = repo.create(patient(), id=id)  # a re-delivery
    assert (first.id, again.id) == (id, id)
    # ours keeps an identical update as the same version; sekmet adds one: never a second resource
    assert first.version_id == 1
    assert again.version_id in (1, 2)
    assert repo.read("Patient", id).version_id == again.version_id


def test_reading_what_does_not_exist_is_404(repo):
    with pytest.raises(NotFound) as caught:
        repo.read("Patient", f"absent-{uuid.uuid4().hex[:12]}")
    assert caught.value.status == 404


def test_search_by_identifier_finds_exactly_the_match(repo):
    resource, token = marked_patient()
    created = repo.create(resource)
    repo.create(patient())  # another patient, other identifiers
    assert by_identifier(repo, token) == [created.id]


def test_conditional_create_makes_one_resource_however_often_it_is_sent(repo):
    resource, token = marked_patient()
    first, first_created = repo.create_if_none_exist(resource, f"identifier={token}")
    second, second_created = repo.create_if_none_exist(resource, f"identifier={token}")
    assert (first_created, second_created) == (True, False)
    assert second.id == first.id
    assert by_identifier(repo, token) == [first.id]


def test_if_match_current_updates_and_stale_is_412_and_writes_nothing(repo):
    created = repo.create(patient())
    body = {**created.resource, "gender": "female"}
    updated, _ = repo.update(body, if_match=1)
    assert updated.version_id == 2
    with pytest.raises(PreconditionFailed) as caught:
        repo.update({**created.resource, "gender": "male"}, if_match=1)
    assert caught.value.status == 412
    assert caught.value.issues[0].code == "conflict"
    current = repo.read("Patient", created.id)
    assert (current.version_id, current.resource["gender"]) == (2, "female")


def test_a_transaction_is_written_whole(repo):
    patient_urn = f"urn:uuid:{uuid.uuid4()}"
    resource, token = marked_patient()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_urn,
                "resource": resource,
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": patient_urn},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    answer = repo.transaction(bundle)
    assert answer["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert [s.split()[0] for s in statuses] == ["201", "201"]
    [patient_id] = by_identifier(repo, token)
    observation_id = answer["entry"][1]["response"]["location"].split("/_history")[0].split("/")[-1]
    observation = repo.read("Observation", observation_id)
    assert observation.resource["subject"]["reference"] == f"Patient/{patient_id}"


def test_a_transaction_with_a_stale_if_match_is_412_and_writes_nothing(repo):
    existing = repo.create(patient())
    new_id = f"contract-{uuid.uuid4().hex[:12]}"

    def send_as_one_transaction() -> None:
        with repo.unit_of_work() as unit:
            unit.create(patient(), id=new_id)
            unit.update({**existing.resource, "gender": "female"}, if_match=7)

    with pytest.raises(PreconditionFailed):
        send_as_one_transaction()
    with pytest.raises(NotFound):
        repo.read("Patient", new_id)
    assert repo.read("Patient", existing.id).version_id == 1


def test_structurally_invalid_content_is_400_with_the_path(repo):
    with pytest.raises(InputError) as caught:
        repo.create({"resourceType": "Observation", "status": "final"})  # code is required
    assert caught.value.status == 400
    assert any("Observation.code" in (i.expression or "") for i in caught.value.issues)


def _unprocessable_embedded(repo: RemoteFhirRepository) -> None:
    repo.create(patient(gender="bogus"))  # required binding: 422 code-invalid


def _unprocessable_sekmet(repo: RemoteFhirRepository) -> None:
    created = repo.create(patient())
    failing_patch = [{"op": "test", "path": "/gender", "value": "female"}]
    data = base64.b64encode(json.dumps(failing_patch).encode()).decode()
    repo.transaction(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Binary",
                        "contentType": "application/json-patch+json",
                        "data": data,
                    },
                    "request": {"method": "PATCH", "url": f"Patient/{created.id}"},
                }
            ],
        }
    )


UNPROCESSABLE: dict[str, Callable[[RemoteFhirRepository], None]] = {
    "embedded": _unprocessable_embedded,
    "sekmet": _unprocessable_sekmet,
}


def test_unprocessable_content_is_422_with_the_servers_issues(repo):
    with pytest.raises(ConformanceError) as caught:
        UNPROCESSABLE[repo.server_name](repo)
    assert caught.value.status == 422
    assert caught.value.issues
    assert all(i.text.startswith("Backing server: ") for i in caught.value.issues)


def test_the_source_event_stamp_in_meta_survives_the_round_trip(repo):
    """HAZ-035's ordering reads the stored version's `meta.extension` stamp back: a backend that
    dropped it would silently disable the check for resources read from it."""
    from datetime import UTC, datetime

    from adapter.fhir.source_event import SourceEvent, event_of, stamp

    event = SourceEvent("RIO|RT5", datetime(2026, 12, 4, 10, 55, tzinfo=UTC), "ADT0002")
    resource, _ = marked_patient()
    stamp(resource, event)
    created = repo.create(resource)
    assert event_of(created.resource) == event
    assert event_of(repo.read("Patient", created.id).resource) == event
