"""Mapping end to end into the embedded store (SQLite, one process, one core): CSV rows and v2 messages.

    python -m bench.bench_mapping [--rows 2000] [--messages 1000] [--batch 100]

Each row/message is mapped, judged by the pipeline and written as one transaction. The machine may be
shared: CPU time (time.process_time) is printed next to wall time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from adapter.fhir.identifiers import nhs_number_with_check_digit
from adapter.mapping.inbound import Inbound
from adapter.mapping.loader import load_registry
from adapter.runtime import settle_heap
from adapter.settings import Settings
from adapter.sources import read_extract
from adapter.wiring import build_services
from bench._common import ROOT, report


def valid_test_numbers(count: int, start: int = 0) -> list[str]:
    """Distinct valid 999-range NHS numbers (Modulus 11), skipping prefixes with no check digit."""
    out: list[str] = []
    k = start
    while len(out) < count:
        candidate = nhs_number_with_check_digit(f"999{k:06d}")
        if candidate:
            out.append(candidate)
        k += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100, help="rows per commit in the batched run")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    services = build_services(Settings(database_url=f"sqlite:///{tmp}/bench.sqlite3"))
    inbound = Inbound(services.pipeline, load_registry(ROOT / "mappings"))
    settle_heap()  # as `adapter ingest`, `adapter mllp` and `adapter serve` do after start-up

    csv_fixture = (
        (ROOT / "fixtures/mappings/csv-dialog/complete/input.csv").read_text().splitlines()
    )
    header, row = csv_fixture[0], csv_fixture[1]
    numbers = valid_test_numbers(args.rows + args.messages, start=100)
    lines = [header] + [
        row.replace("DLG-2026-0001", f"DLG-B-{i}").replace("9990000018", numbers[i])
        for i in range(args.rows)
    ]
    spec = inbound.registry.get("csv-dialog")
    records = list(read_extract("\n".join(lines).encode(), "bench.csv"))
    latencies: list[float] = []
    cpu0 = time.process_time()
    start = time.perf_counter()
    for record in records:
        t0 = time.perf_counter()
        outcome = inbound.ingest(spec, record)
        latencies.append((time.perf_counter() - t0) * 1000)
        assert outcome.status == "stored", outcome.issues
    report(
        "CSV rows (csv-dialog) -> SQLite",
        len(records),
        time.perf_counter() - start,
        latencies,
        "rows",
    )
    cpu = time.process_time() - cpu0
    print(f"cpu s:     {cpu:.3f}  ({len(records) / cpu:.1f} rows per CPU-second)")

    # the same rows again under new ids, as `adapter ingest` sends them: --batch rows per commit
    batch_lines = [header] + [
        row.replace("DLG-2026-0001", f"DLG-BB-{i}").replace("9990000018", numbers[i])
        for i in range(args.rows)
    ]
    batch_records = list(read_extract("\n".join(batch_lines).encode(), "bench-batch.csv"))
    cpu0 = time.process_time()
    start = time.perf_counter()
    latencies = []
    for first in range(0, len(batch_records), args.batch):
        chunk = batch_records[first : first + args.batch]
        t0 = time.perf_counter()
        outcomes = inbound.ingest_batch(spec, chunk)
        latencies += [(time.perf_counter() - t0) * 1000 / len(chunk)] * len(chunk)
        assert all(o.status == "stored" for o in outcomes), [
            o.issues for o in outcomes if o.status != "stored"
        ]
    report(
        f"CSV rows (csv-dialog) -> SQLite, {args.batch} rows per commit (adapter ingest)",
        len(batch_records),
        time.perf_counter() - start,
        latencies,
        "rows",
    )
    cpu = time.process_time() - cpu0
    print(f"cpu s:     {cpu:.3f}  ({len(batch_records) / cpu:.1f} rows per CPU-second)")

    oru = Path(ROOT / "fixtures/mappings/hl7v2-oru-r01-dialog/complete/input.hl7").read_text()
    messages = [
        oru.replace("DLG-2026-0001", f"DLG-V-{i}").replace("9990000018", numbers[args.rows + i])
        for i in range(args.messages)
    ]
    latencies = []
    cpu0 = time.process_time()
    start = time.perf_counter()
    for message in messages:
        t0 = time.perf_counter()
        _, ack = inbound.handle_v2(message)
        latencies.append((time.perf_counter() - t0) * 1000)
        assert "MSA|AA" in ack, ack
    report(
        "HL7 v2 ORU^R01 (DIALOG) -> SQLite",
        len(messages),
        time.perf_counter() - start,
        latencies,
        "messages",
    )
    cpu = time.process_time() - cpu0
    print(f"cpu s:     {cpu:.3f}  ({len(messages) / cpu:.1f} messages per CPU-second)")
    services.close()


if __name__ == "__main__":
    main()
