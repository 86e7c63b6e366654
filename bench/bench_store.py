"""The embedded store alone: creates, updates, reads by id and conditional searches per second.

    PYTHONPATH=. .venv/bin/python -m bench.bench_store [--n 2000] [--batch 100]
        [--backend sqlite|postgres|both] [--postgres-url postgresql+psycopg://postgres@127.0.0.1/test]

Runs `SqlRepository` directly (no mapping, no validation) on SQLite (a temporary file) and on
PostgreSQL (a schema of its own, `bench_store_<random>`, dropped afterwards). Each operation is a
ServiceRequest with four search index rows (identifier, status, subject, patient). Operations run
in units of work of `--batch` operations, as the batched ingest does (`--batch 0`: each operation
commits on its own, so SQLite pays an fsync each time). Phases, in order:

- create: `create(id=...)` of N new resources;
- update, index unchanged: a changed `note` (new version, same index rows);
- update, index changed: `status` flipped (new version, new index rows);
- update, content unchanged: the same body again (the store still writes a version);
- read by id; search by identifier (the conditional-create lookup, `find_one_or_none`).

Prints items, seconds, items/s, ms/item, p50/p95 for each phase, with date, machine and git SHA.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from adapter.fhir.types import JsonObject
from adapter.store.migrate import upgrade
from adapter.store.repository import SearchParam, find_one_or_none
from adapter.store.sql import SqlRepository, build_engine
from bench._common import git_sha, machine, percentile

DEFAULT_POSTGRES_URL = os.environ.get(
    "ADAPTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SYSTEM = "https://example.org/referral-id"


def service_request(i: int, *, status: str = "active", note: str = "first") -> JsonObject:
    return {
        "resourceType": "ServiceRequest",
        "id": f"bench-sr-{i}",
        "identifier": [{"system": SYSTEM, "value": f"REF-{i}"}],
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/bench-pt-{i % 50}"},
        "note": [{"text": note}],
    }


@contextmanager
def sqlite_repository() -> Iterator[SqlRepository]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.sqlite3"
        upgrade(url)
        engine = build_engine(url)
        try:
            yield SqlRepository(engine)
        finally:
            engine.dispose()


@contextmanager
def postgres_repository(server_url: str) -> Iterator[SqlRepository]:
    schema = f"bench_store_{secrets.token_hex(4)}"
    try:
        upgrade(server_url, schema)
        engine = build_engine(server_url, schema)
        try:
            yield SqlRepository(engine)
        finally:
            engine.dispose()
    finally:
        admin = build_engine(server_url)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


def run_phase(
    label: str,
    repo: SqlRepository,
    n: int,
    batch: int,
    operation: Callable[[SqlRepository, int], object],
) -> None:
    latencies_ms: list[float] = []
    start = time.perf_counter()
    i = 0
    while i < n:
        size = batch if batch > 0 else 1
        if batch > 0:
            with repo.unit_of_work() as uow:
                for k in range(i, min(n, i + size)):
                    t0 = time.perf_counter()
                    operation(uow, k)
                    latencies_ms.append((time.perf_counter() - t0) * 1e3)
        else:
            t0 = time.perf_counter()
            operation(repo, i)
            latencies_ms.append((time.perf_counter() - t0) * 1e3)
        i += size
    seconds = time.perf_counter() - start
    print(
        f"  {label:<34} items {n:>6}  seconds {seconds:7.3f}  items/s {n / seconds:8.1f}  "
        f"ms/item {statistics.mean(latencies_ms):6.3f}  p50 {percentile(latencies_ms, 50):6.3f}  "
        f"p95 {percentile(latencies_ms, 95):6.3f}"
    )


def bench(backend: str, repo: SqlRepository, n: int, batch: int) -> None:
    print(f"-- {backend} (batch {batch or 'none: one commit per operation'})")

    def create(r: SqlRepository, i: int) -> object:
        return r.create(service_request(i), id=f"bench-sr-{i}")

    def update_note(r: SqlRepository, i: int) -> object:
        return r.update(service_request(i, note="second"))

    def update_status(r: SqlRepository, i: int) -> object:
        return r.update(service_request(i, status="on-hold", note="second"))

    def update_same(r: SqlRepository, i: int) -> object:
        return r.update(service_request(i, status="on-hold", note="second"))

    def read(r: SqlRepository, i: int) -> object:
        return r.read("ServiceRequest", f"bench-sr-{i}")

    def search(r: SqlRepository, i: int) -> object:
        found = find_one_or_none(
            r, "ServiceRequest", [SearchParam("identifier", (f"{SYSTEM}|REF-{i}",))]
        )
        if found is None or found.id != f"bench-sr-{i}":
            raise RuntimeError(f"search by identifier missed bench-sr-{i}")
        return found

    run_phase("create", repo, n, batch, create)
    run_phase("update, index unchanged", repo, n, batch, update_note)
    run_phase("update, index changed", repo, n, batch, update_status)
    run_phase("update, content unchanged", repo, n, batch, update_same)
    run_phase("read by id", repo, n, batch, read)
    run_phase("search by identifier", repo, n, batch, search)
    if repo.read("ServiceRequest", "bench-sr-0").version_id != 4:
        raise RuntimeError("expected four versions of bench-sr-0")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000, help="resources (operations per phase)")
    parser.add_argument("--batch", type=int, default=100, help="operations per unit of work")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args()
    print("== store (SqlRepository)")
    print(f"date:      {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"machine:   {machine()}")
    print(f"git:       {git_sha()}")
    if args.backend in ("sqlite", "both"):
        with sqlite_repository() as repo:
            bench("sqlite", repo, args.n, args.batch)
    if args.backend in ("postgres", "both"):
        with postgres_repository(args.postgres_url) as repo:
            bench("postgresql", repo, args.n, args.batch)


if __name__ == "__main__":
    main()
