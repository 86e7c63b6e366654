"""The remote backing store: writes delivered per second, and the facade's latency overhead.

Starts a backing FHIR server (sekmet-fhir by default, or `tests.support.loopback_fhir`) and
`adapter serve` with ADAPTER_BACKEND=remote in front of it (in-process delivery worker). Posts N
Patients straight to the backing server, then N through the facade (validated, committed locally
with an outbox message, answered, delivered in the background), and waits until the outbox is
empty. Prints both latency reports, the p50/p95 ratio facade/direct, and delivered writes/s.

.venv/bin/python bench/bench_store_remote.py --n 500 [--concurrency 4] [--backend loopback]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from adapter.store.migrate import upgrade
from adapter.store.outbox import DeliveryWorker, Outbox, OutboxRepository
from adapter.store.remote import AsyncFhirClient
from adapter.store.sql import SqlRepository, build_engine
from bench._common import ROOT, free_port, percentile, report, served_adapter
from tests.support.referrals import NHS, nhs_number

FHIR_JSON = {"Content-Type": "application/fhir+json"}


@contextlib.contextmanager
def backing_server(kind: str, tmp: Path) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    if kind == "sekmet":
        config = tmp / "sekmet.yaml"
        config.write_text(
            f"base_url: {base}\ndata_dir: {tmp / 'sekmet'}\n"
            "simulator: {enabled: false}\nlog_inbound: false\n"
        )
        sekmet = str(Path(sys.executable).parent / "sekmet")
        command = [sekmet, "serve", "--host", "127.0.0.1", "--port", str(port), "-c", str(config)]
    else:
        command = [
            sys.executable,
            "-m",
            "tests.support.loopback_fhir",
            "--port",
            str(port),
            "--database-url",
            f"sqlite:///{tmp / 'backing.sqlite3'}",
        ]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not start")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def patient(i: int) -> str:
    return json.dumps(
        {
            "resourceType": "Patient",
            "identifier": [{"system": NHS, "value": nhs_number(i)}],
            "name": [{"family": "Testperson", "given": [f"Bench{i}"]}],
            "gender": "unknown",
        }
    )


def post_all(url: str, bodies: list[str], concurrency: int) -> tuple[float, list[float], int]:
    """(seconds, latencies in ms, failures) for POSTing every body to url."""
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    indexes = iter(range(len(bodies)))

    def worker() -> None:
        nonlocal failures
        with httpx.Client(timeout=30, headers=FHIR_JSON) as client:
            for i in indexes:
                t0 = time.perf_counter()
                response = client.post(url, content=bodies[i])
                elapsed_ms = (time.perf_counter() - t0) * 1000
                with lock:
                    latencies.append(elapsed_ms)
                    failures += response.status_code not in (200, 201, 202)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies, failures


def drain_queue(backing: str, tmp: Path, n: int) -> tuple[float, int]:
    """Queues n Patients (no facade, no validation) and times one worker emptying the outbox."""
    url = f"sqlite:///{tmp / 'drain.sqlite3'}"
    upgrade(url)
    sql = SqlRepository(build_engine(url))
    repo = OutboxRepository(sql, Outbox(sql.engine))
    for i in range(n):
        repo.create(json.loads(patient(10 * n + i)), id=f"drain-{i}")
    worker = DeliveryWorker(repo.outbox, AsyncFhirClient(backing))

    async def drain() -> float:
        t0 = time.perf_counter()
        while repo.outbox.status()["pending"]:
            await worker.run_once()
        await worker.client.aclose()
        return time.perf_counter() - t0

    seconds = asyncio.run(drain())
    delivered = repo.outbox.status()["delivered"]
    sql.close()
    return seconds, delivered


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--backend", choices=["sekmet", "loopback"], default="sekmet")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    front_url = f"sqlite:///{tmp / 'front.sqlite3'}"
    with backing_server(args.backend, tmp) as backing:
        direct_seconds, direct_ms, direct_failures = post_all(
            f"{backing}/Patient", [patient(i) for i in range(args.n)], args.concurrency
        )
        env = {
            "ADAPTER_BACKEND": "remote",
            "FHIR_BASE_URL": backing,
            "ADAPTER_OUTBOX_POLL_SECONDS": "0.02",
            "ADAPTER_AUTH_REQUIRED": "false",
        }
        with served_adapter(front_url, env) as facade:
            outbox = Outbox(build_engine(front_url))
            start = time.perf_counter()
            facade_seconds, facade_ms, facade_failures = post_all(
                f"{facade}/Patient", [patient(args.n + i) for i in range(args.n)], args.concurrency
            )
            while (status := outbox.status())["pending"]:
                time.sleep(0.02)
            drained_seconds = time.perf_counter() - start
        drain_seconds, drained = drain_queue(backing, tmp, args.n)
    report(
        f"POST Patient straight to {args.backend} (concurrency {args.concurrency})",
        args.n,
        direct_seconds,
        direct_ms,
        unit="writes",
    )
    print(f"failures:  {direct_failures}")
    report(
        f"POST Patient through the facade, backend=remote -> {args.backend}",
        args.n,
        facade_seconds,
        facade_ms,
        unit="writes",
    )
    print(f"failures:  {facade_failures}")
    print(f"== delivered to {args.backend} through the outbox")
    print(f"delivered: {status['delivered']}  dead: {status['dead']}")
    print(f"seconds:   {drained_seconds:.3f} (first facade POST to empty outbox)")
    print(f"writes/s:  {status['delivered'] / drained_seconds:.1f} delivered")
    print(f"== the outbox alone: {args.n} queued writes, one DeliveryWorker (defaults)")
    print(f"delivered: {drained}")
    print(f"seconds:   {drain_seconds:.3f}")
    print(f"writes/s:  {drained / drain_seconds:.1f} delivered")
    for p in (50, 95):
        ratio = percentile(facade_ms, p) / percentile(direct_ms, p)
        print(
            f"overhead p{p}: {ratio:.2f}x (facade {percentile(facade_ms, p):.1f} ms / "
            f"direct {percentile(direct_ms, p):.1f} ms)"
        )


if __name__ == "__main__":
    main()
