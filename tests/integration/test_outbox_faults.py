"""No-loss delivery under faults: 2,000 referrals through the outbox to a real backing server.

The backing server is `tests.support.loopback_fhir` (a small Starlette server over its own SQL
store, without our validation: the backing server's judging is not under test here) as a killable
process. In front of it sits `FaultProxy`, a small real HTTP proxy on loopback that, on command, is
slow (the client times out), answers 500/503/429 with Retry-After, or drops the connection before
or after forwarding (after: the write commits but the answer is lost). Faults injected on purpose
are the one place fakes are allowed. Each fault lasts a number of *requests*, not seconds, so each
is injected whatever the machine's speed. Referrals are written through the store path
(OutboxRepository), which is what the pipeline calls after judging; the facade tests cover the
judging. SQLite files live on tmpfs where there is one: fsync is not under test here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from adapter.api.app import create_app
from adapter.settings import Settings
from adapter.store.migrate import upgrade
from adapter.store.outbox import (
    CircuitBreaker,
    DeliveryWorker,
    Outbox,
    OutboxRepository,
    PendingWrites,
    RetryPolicy,
)
from adapter.store.remote import AsyncFhirClient
from adapter.store.repository import StoredResource
from adapter.store.sql import SqlRepository, build_engine, write_engine
from tests.support.referrals import nhs_number

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
REFERRALS = 2000
PATIENTS = 40
REFERRAL_SYSTEM = "https://fhir.cmh-adapter.example/Id/referral"
PG_URL = os.environ.get(
    "ADAPTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
#: The delivery client's timeout, and how long a "slow" backing server takes to answer.
TIMEOUT_SECONDS = 0.4
SLOW_SECONDS = 0.6
FAST_DISK = Path("/dev/shm") if Path("/dev/shm").is_dir() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fast_tmp(tmp_path):
    """A temporary directory on tmpfs if there is one (else tmp_path)."""
    if FAST_DISK is None:
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=FAST_DISK) as path:
        yield Path(path)


# --- the backing server and the fault proxy ----------------------------------------------------


class Backend:
    """`tests.support.loopback_fhir` on a fixed port and SQLite file, so it can be killed and
    started again."""

    def __init__(self, tmp: Path, port: int | None = None):
        self.port = port or free_port()
        self.db = f"sqlite:///{tmp / 'backend.sqlite3'}"
        self.log = tmp / "backend.log"
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "tests.support.loopback_fhir",
            "--port",
            str(self.port),
            "--database-url",
            self.db,
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"backend exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/metadata", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        pytest.fail("backend did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class FaultProxy:
    """One request per connection: read it, then forward it, or inject the current fault."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.port = free_port()
        self.mode = "pass"
        self.injected: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(5)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            lines = head.decode("latin-1").split("\r\n")
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            mode = self.mode
            self.injected[mode] = self.injected.get(mode, 0) + 1
            if mode in ("500", "503", "429"):
                text = b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient"}]}'
                writer.write(
                    f"HTTP/1.1 {mode} Fault\r\nContent-Type: application/fhir+json\r\n"
                    f"Retry-After: 0\r\nContent-Length: {len(text)}\r\nConnection: close\r\n\r\n".encode()
                    + text
                )
                await writer.drain()
                return
            if mode == "drop-before":
                return
            if mode == "slow":
                await asyncio.sleep(SLOW_SECONDS)
            head = b"\r\n".join(
                [
                    line.encode("latin-1")
                    for line in lines[:-2]
                    if not line.lower().startswith("connection:")
                ]
                + [b"Connection: close", b"", b""]
            )
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            up_writer.write(head + body)
            await up_writer.drain()
            answer = await up_reader.read()
            up_writer.close()
            if mode == "drop-after":  # committed upstream, answer lost: must not duplicate
                return
            writer.write(answer)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


# --- the load -----------------------------------------------------------------------------------


def patient(i: int) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs_number(i)}],
        "name": [{"family": "Testperson", "given": [f"Sam{i}"]}],
        "gender": "unknown",
    }


def referral(i: int) -> dict:
    return {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": REFERRAL_SYSTEM, "value": f"ref-{i:05d}"}],
        "status": "active",
        "intent": "order",
        "priority": "routine",
        "subject": {"reference": f"Patient/pat-{i % PATIENTS}"},
        "category": [
            {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "3457005",
                        "display": "Patient referral",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {
                    "system": "http://snomed.info/sct",
                    "code": "183524004",
                    "display": "Referral to psychiatry service",
                }
            ]
        },
        "authoredOn": "2026-11-20T10:00:00+00:00",
    }


def accept_referrals(repo: OutboxRepository, *, threads: int = 1) -> None:
    """Patients and referrals are separate messages: a referral must wait for its patient."""
    for i in range(PATIENTS):
        repo.create(patient(i), id=f"pat-{i}")

    def accept(first: int) -> None:
        for i in range(first, REFERRALS, threads):
            repo.create(referral(i), id=str(uuid.uuid4()))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(accept, range(threads)))


def queue_referrals(outbox: Outbox) -> None:
    """The same outbox messages `accept_referrals` makes (one per patient, one per referral), in
    one database transaction and without the local copies: the multi-worker case is about claiming,
    and accepting 2,040 writes one by one cost most of its time."""
    now = datetime.now(UTC)

    def message(resource: dict, id: str) -> PendingWrites:
        pending = PendingWrites()
        pending.put(StoredResource(resource["resourceType"], id, 1, now, {**resource, "id": id}))
        return pending

    patients = [message(patient(i), f"pat-{i}") for i in range(PATIENTS)]
    referrals = [message(referral(i), str(uuid.uuid4())) for i in range(REFERRALS)]
    with write_engine(outbox.engine).begin() as conn:
        outbox.enqueue_many(conn, patients + referrals)


def backend_counts(base: str) -> dict[str, int]:
    identifiers: list[str] = []
    versions_above_one = 0
    url: str | None = f"{base}/ServiceRequest?_count=1000"
    with httpx.Client(timeout=30) as client:
        while url:
            page = client.get(url).json()
            for entry in page.get("entry", []):
                resource = entry["resource"]
                identifiers += [
                    i["value"] for i in resource["identifier"] if i["system"] == REFERRAL_SYSTEM
                ]
                versions_above_one += resource["meta"]["versionId"] != "1"
            url = next(
                (link["url"] for link in page.get("link", []) if link["relation"] == "next"), None
            )
    distinct = set(identifiers)
    expected = {f"ref-{i:05d}" for i in range(REFERRALS)}
    return {
        "stored": len(distinct),
        "duplicates": len(identifiers) - len(distinct),
        "lost": len(expected - distinct),
        "redelivered_versions": versions_above_one,
    }


def report(title: str, counts: Mapping[str, object]) -> None:
    line = ", ".join(f"{k}={v}" for k, v in counts.items())
    sys.stdout.write(f"\n[{title}] {line}\n")


def make_worker(outbox: Outbox, base: str) -> DeliveryWorker:
    client = AsyncFhirClient(
        base,
        timeout=httpx.Timeout(TIMEOUT_SECONDS),
        limits=httpx.Limits(max_connections=16),
    )
    return DeliveryWorker(
        outbox,
        client,
        policy=RetryPolicy(max_attempts=60, base_seconds=0.02, max_seconds=0.2),
        breaker=CircuitBreaker(threshold=5, reset_seconds=0.2),
        batch_size=32,
        messages_per_bundle=8,
    )


@pytest.fixture
def backend(fast_tmp):
    server = Backend(fast_tmp)
    server.start()
    yield server
    server.stop()


#: (fault, requests it lasts). Every fault kind, then a kill of the backing server under load.
FAULTS = (
    ("pass", 10),
    ("slow", 2),
    ("pass", 5),
    ("503", 3),
    ("500", 3),
    ("429", 3),
    ("pass", 5),
    ("drop-before", 3),
    ("drop-after", 3),
    ("pass", 10),
)


def test_2000_referrals_survive_slow_errors_drops_and_a_killed_server(backend, fast_tmp, capsys):
    proxy = FaultProxy(backend.port)
    proxy.start()
    engine_url = f"sqlite:///{fast_tmp / 'front.sqlite3'}"
    upgrade(engine_url)
    sql = SqlRepository(build_engine(engine_url))
    outbox = Outbox(sql.engine)
    repo = OutboxRepository(sql, outbox)
    worker = make_worker(outbox, proxy.base)
    pending_at_kill: list[int] = []

    async def faults() -> None:
        for mode, requests in FAULTS:
            start = proxy.injected.get(mode, 0)
            proxy.mode = mode
            while proxy.injected.get(mode, 0) < start + requests:  # noqa: ASYNC110 - counts requests
                await asyncio.sleep(0.005)
        proxy.mode = "pass"
        pending_at_kill.append((await asyncio.to_thread(outbox.status))["pending"])
        phases["faults injected"] = round(time.monotonic() - started, 1)
        await asyncio.to_thread(backend.kill)  # killed in the middle of the load
        await asyncio.sleep(0.5)
        await asyncio.to_thread(backend.start)

    async def main() -> None:
        stop = asyncio.Event()
        delivery = asyncio.create_task(worker.run(stop, poll_seconds=0.02))
        sending = asyncio.create_task(asyncio.to_thread(accept_referrals, repo))
        await faults()
        await sending
        phases["accepted and faults over"] = round(time.monotonic() - started, 1)
        deadline = time.monotonic() + 60
        while outbox.status()["pending"] and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the DB
            await asyncio.sleep(0.1)
        stop.set()
        await delivery
        await worker.client.aclose()

    phases: dict[str, float] = {}
    started = time.monotonic()
    try:
        asyncio.run(main())
    finally:
        proxy.stop()
    status = outbox.status()
    counts = {"sent": REFERRALS, **backend_counts(backend.base), "dead_letters": status["dead"]}
    with capsys.disabled():
        report(f"outbox faults, SQLite, 1 worker, {time.monotonic() - started:.1f} s", counts)
        report("faults injected (requests)", proxy.injected)
        report("pending when the backing server was killed", {"messages": pending_at_kill[0]})
        report("seconds", phases)
    assert pending_at_kill[0] > 0
    assert status["pending"] == 0
    assert counts["stored"] == REFERRALS
    assert counts["duplicates"] == 0
    assert counts["lost"] == 0
    assert counts["dead_letters"] == 0  # every referral was valid
    assert all(proxy.injected.get(m, 0) >= n for m, n in FAULTS), proxy.injected


@pytest.mark.postgres
def test_2000_referrals_three_postgres_worker_processes_deliver_each_once(
    backend, postgres_url, fresh_postgres_schema, capsys
):
    schema = fresh_postgres_schema
    upgrade(postgres_url, schema=schema)
    sql = SqlRepository(build_engine(postgres_url, schema))
    outbox = Outbox(sql.engine)
    env = {
        **os.environ,
        "ADAPTER_DATABASE_URL": postgres_url,
        "ADAPTER_DATABASE_SCHEMA": schema,
        "ADAPTER_AUTO_MIGRATE": "false",
        "FHIR_BASE_URL": backend.base,
        "ADAPTER_OUTBOX_BATCH_SIZE": "48",
        "ADAPTER_OUTBOX_MESSAGES_PER_BUNDLE": "16",
        "ADAPTER_OUTBOX_POLL_SECONDS": "0.02",
        "ADAPTER_OUTBOX_BACKOFF_BASE_SECONDS": "0.02",
    }
    command = [
        sys.executable,
        "-m",
        "adapter.cli",
        "outbox",
        "work",
        "--stop-when-idle-seconds",
        "2",
    ]
    started = time.monotonic()
    try:
        queue_referrals(outbox)  # all queued first: the three workers race for them
        workers = [
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(3)
        ]
        outputs = [w.communicate(timeout=120)[0] for w in workers]
        per_worker = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
        status = outbox.status()
    finally:
        sql.close()
    counts = {
        "sent": REFERRALS,
        **backend_counts(backend.base),
        "dead_letters": status["dead"],
        **{f"worker{i}_delivered": w["delivered"] for i, w in enumerate(per_worker)},
    }
    with capsys.disabled():
        title = f"outbox, PostgreSQL, 3 worker processes, SKIP LOCKED, {time.monotonic() - started:.1f} s"
        report(title, counts)
    assert status["pending"] == 0
    assert counts["stored"] == REFERRALS
    assert counts["duplicates"] == 0
    assert counts["lost"] == 0
    assert counts["dead_letters"] == 0
    # nothing delivered twice: every ServiceRequest is still at version 1 on the backing server
    assert counts["redelivered_versions"] == 0
    assert sum(w["delivered"] for w in per_worker) == REFERRALS + PATIENTS
    assert sum(1 for w in per_worker if w["delivered"] > 0) >= 2


# --- accept mode: down, accepted, back up, delivered ---------------------------------------------


def test_writes_accepted_while_the_server_is_down_are_delivered_when_it_returns(fast_tmp):
    """The real facade with its in-process delivery worker; the backing port has no server yet.
    SQLite only: what is under test is the facade and the worker, not the database."""
    backing = Backend(fast_tmp)
    remote = Settings(database_url=f"sqlite:///{fast_tmp / 'front.sqlite3'}").model_copy(
        update={
            "backend": "remote",
            "fhir_base_url": backing.base,
            "outbox_when_down": "accept",
            "outbox_breaker_threshold": 2,
            "outbox_breaker_reset_seconds": 0.3,
            "outbox_backoff_base_seconds": 0.05,
            "outbox_backoff_max_seconds": 0.3,
            "outbox_poll_seconds": 0.02,
            "fhir_timeout_seconds": 1.0,
        }
    )
    headers = {"Content-Type": "application/fhir+json"}
    try:
        app = create_app(remote)
        with TestClient(app, base_url="http://testserver") as client:
            breaker = app.state.services.repo.breaker
            first = client.post("/fhir/Patient", content=json.dumps(patient(100)), headers=headers)
            assert first.status_code == 201  # not yet known to be down
            deadline = time.monotonic() + 10
            while breaker.is_closed and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not breaker.is_closed, "the breaker never opened"
            accepted = [
                client.post("/fhir/Patient", content=json.dumps(patient(101 + i)), headers=headers)
                for i in range(10)
            ]
            assert [r.status_code for r in accepted] == [202] * 10
            locations = [r.headers["content-location"] for r in accepted]
            assert {client.get(u).json()["businessStatus"]["text"] for u in locations} == {"queued"}
            backing.start()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                states = [client.get(u).json()["status"] for u in locations]
                if set(states) == {"completed"}:
                    break
                time.sleep(0.1)
            assert set(states) == {"completed"}
            ids = [first.json()["id"]] + [r.json()["id"] for r in accepted]
        for id in ids:  # each one on the backing server, once
            assert httpx.get(f"{backing.base}/Patient/{id}").status_code == 200
        found = httpx.get(f"{backing.base}/Patient", params={"_count": "100"}).json()
        assert sorted(e["resource"]["id"] for e in found["entry"]) == sorted(ids)
    finally:
        backing.stop()
