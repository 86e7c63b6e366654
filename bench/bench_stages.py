"""Where a mapped unit's CPU goes, stage by stage: CSV DIALOG rows and ORU^R01 messages.

    python -m bench.bench_stages [--rows 1000] [--messages 500] [--rounds 3]

Each stage is timed alone over the same records (CPU time, best of `--rounds`), then the whole
path end to end into a fresh SQLite store (`Inbound.ingest_batch` with 100 rows per commit for
CSV; `Inbound.handle_v2`, one commit and ACK per message, for v2). "store and the rest" is the end
to end figure less the stages: SQL, the commit, savepoints, responses and bookkeeping.

The judging stages see each resource as the pipeline does (ids set, references resolved, inside
its transaction Bundle), so their figures are the pipeline's own, not a best case.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapter.fhir.parse import structural_issues
from adapter.fhir.prepare import prepared_copy
from adapter.mapping.engine import MappingResult
from adapter.mapping.inbound import Inbound
from adapter.mapping.loader import load_registry
from adapter.mapping.unit import conditional_bundle
from adapter.runtime import settle_heap
from adapter.settings import Settings
from adapter.sources import read_extract
from adapter.sources.hl7v2 import parse_message
from adapter.sources.record import SourceRecord
from adapter.wiring import Services, build_services
from bench._common import ROOT, git_sha, machine
from bench.bench_mapping import valid_test_numbers


def _best(rounds: int, work: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        work()
        best = min(best, time.process_time() - t0)
    return best


def _services() -> Services:
    tmp = tempfile.mkdtemp()
    return build_services(Settings(database_url=f"sqlite:///{tmp}/bench.sqlite3"))


def _judged(inbound: Inbound, results: list[MappingResult]) -> list[tuple[Any, Any]]:
    """(resource, context) pairs as the pipeline judges them."""
    pipeline = inbound.pipeline
    pairs: list[tuple[Any, Any]] = []
    for result in results:
        bundle = conditional_bundle(result.resources)
        entries = [prepared_copy(e["resource"], {})[0] for e in bundle["entry"]]
        final = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r} for r in entries
            ],
        }
        ctx = pipeline.context(bundle=final, mode="update")
        pairs += [(r, ctx) for r in entries]
    return pairs


def _stages(
    title: str,
    unit: str,
    inbound: Inbound,
    records: list[SourceRecord],
    read: Callable[[], Any],
    end_to_end: Callable[[Inbound], None],
    rounds: int,
) -> None:
    n = len(records)
    results = [inbound.map(_spec_of(inbound, r), r) for r in records]
    pairs = _judged(inbound, results)
    pipeline = inbound.pipeline
    figures: dict[str, float] = {
        "read/parse": _best(rounds, read),
        "map": _best(rounds, lambda: [inbound.map(_spec_of(inbound, r), r) for r in records]),
        "bundle + working copy": _best(
            rounds,
            lambda: [
                [prepared_copy(e["resource"], {}) for e in conditional_bundle(x.resources)["entry"]]
                for x in results
            ],
        ),
        "structure": _best(rounds, lambda: [structural_issues(r) for r, _ in pairs]),
        "conformance": _best(
            rounds, lambda: [pipeline.conformance.validate(r, c) for r, c in pairs]
        ),
        "policy": _best(rounds, lambda: [pipeline.policy.evaluate(r, c) for r, c in pairs]),
    }
    whole = float("inf")
    for _ in range(rounds):
        fresh = Inbound(_services().pipeline, inbound.registry)
        t0 = time.process_time()
        end_to_end(fresh)
        whole = min(whole, time.process_time() - t0)
    staged = sum(figures.values())
    figures["store and the rest"] = max(0.0, whole - staged)
    print(f"== {title}: CPU µs per {unit} ({n} {unit}s, {len(pairs) / n:.1f} resources each)")
    print(f"machine:   {machine()}")
    print(f"git:       {git_sha()}")
    for name, seconds in figures.items():
        share = seconds / whole * 100 if whole else 0
        print(f"  {name:<24} {seconds / n * 1e6:8.0f}  ({share:4.1f}%)")
    print(f"  {'end to end':<24} {whole / n * 1e6:8.0f}  -> {n / whole:.0f} {unit}s per CPU-second")


def _spec_of(inbound: Inbound, record: SourceRecord) -> Any:
    if "message_type" in record.header:
        return inbound.registry.for_message(record.header["message_type"], record.header["trigger"])
    return inbound.registry.get("csv-dialog")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    registry = load_registry(ROOT / "mappings")
    inbound = Inbound(_services().pipeline, registry)
    settle_heap()  # as `adapter ingest`, `adapter mllp` and `adapter serve` do after start-up
    numbers = valid_test_numbers(args.rows + args.messages, start=100)

    header, row = (
        (ROOT / "fixtures/mappings/csv-dialog/complete/input.csv").read_text().splitlines()[:2]
    )
    text = "\n".join(
        [header]
        + [
            row.replace("DLG-2026-0001", f"DLG-S-{i}").replace("9990000018", numbers[i])
            for i in range(args.rows)
        ]
    ).encode()
    rows = list(read_extract(text, "bench.csv"))
    spec = registry.get("csv-dialog")

    def csv_end_to_end(fresh: Inbound) -> None:
        records = list(read_extract(text, "bench.csv"))
        for first in range(0, len(records), 100):
            outcomes = fresh.ingest_batch(spec, records[first : first + 100])
            assert all(o.status == "stored" for o in outcomes)

    _stages(
        "CSV DIALOG rows, 100 per commit",
        "row",
        inbound,
        rows,
        lambda: list(read_extract(text, "bench.csv")),
        csv_end_to_end,
        args.rounds,
    )

    oru = Path(ROOT / "fixtures/mappings/hl7v2-oru-r01-dialog/complete/input.hl7").read_text()
    messages = [
        oru.replace("DLG-2026-0001", f"DLG-S-{i}").replace("9990000018", numbers[args.rows + i])
        for i in range(args.messages)
    ]
    parsed = [parse_message(m) for m in messages]

    def v2_end_to_end(fresh: Inbound) -> None:
        for message in messages:
            _, ack = fresh.handle_v2(message)
            assert "MSA|AA" in ack, ack

    _stages(
        "HL7 v2 ORU^R01, one commit and ACK per message",
        "message",
        inbound,
        parsed,
        lambda: [parse_message(m) for m in messages],
        v2_end_to_end,
        args.rounds,
    )


if __name__ == "__main__":
    main()
