"""The mapping engine alone: µs of `apply_mapping` per record, for every golden case.

    python -m bench.bench_mapping_engine [--records 1000] [--rounds 5] [--only dialog] [--profile 25]

No parsing, conformance, policy or store: each record is parsed beforehand (a fresh SourceRecord per
call, so the per-record group index is built inside the timed call as it is in production) and only
`apply_mapping` is timed. The machine may be shared: each round is timed with CPU time
(time.process_time) as well as wall time, and the best round is reported next to the median.
`--profile N` runs cProfile over one round of each case instead and prints its N costliest
functions by own time (the figures are then inflated by the profiler; use them for proportions).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from adapter.mapping.engine import apply_mapping
from adapter.mapping.loader import MappingRegistry, load_registry
from adapter.mapping.spec import MappingSpec
from adapter.sources import parse_message, read_extract, record_from_resource
from adapter.sources.record import SourceRecord
from bench._common import ROOT, git_sha, machine, percentile

FIXTURES = ROOT / "fixtures" / "mappings"
#: the two cases the engine's cost is quoted for (README, commit bodies); listed first
HEADLINE = ("csv-dialog/complete", "hl7v2-oru-r01-dialog/complete")


def _reader(source: Path) -> Callable[[], SourceRecord]:
    """A function returning a freshly parsed record of the case's input, the way golden tests read it."""
    data = source.read_bytes()
    if source.suffix == ".hl7":
        return lambda: parse_message(data)
    if source.suffix == ".csv" or (source.suffix == ".json" and data.lstrip().startswith(b"[")):
        return lambda: next(read_extract(data, source.name))
    resource = json.loads(data)
    return lambda: record_from_resource(resource, source.name)


def _cases() -> list[Path]:
    found = sorted(p for p in FIXTURES.glob("*/*") if p.is_dir() and list(p.glob("input.*")))
    named = {f"{p.parent.name}/{p.name}": p for p in found}
    return [named[h] for h in HEADLINE if h in named] + [
        p for n, p in named.items() if n not in HEADLINE
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1000, help="records per case per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument(
        "--profile", type=int, default=0, help="print the N costliest functions per case"
    )
    args = parser.parse_args()
    registry = load_registry(ROOT / "mappings")
    print("== mapping engine only (apply_mapping), µs per record")
    print(f"date:      {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"machine:   {machine()}")
    print(f"git:       {git_sha()}")
    print(f"records:   {args.records} per case per round, {args.rounds} rounds")
    print(
        f"{'case':<52} {'cpu best':>9} {'cpu med':>9} {'wall p50':>9} {'wall p95':>9} {'issues':>7}"
    )
    for case in _cases():
        name = f"{case.parent.name}/{case.name}"
        if args.only not in name:
            continue
        spec = registry.get(case.parent.name)
        fresh = _reader(next(case.glob("input.*")))
        apply_mapping(spec, fresh(), registry.concept_maps)  # warm caches
        if args.profile:
            _profile(name, [fresh() for _ in range(args.records)], spec, registry, args.profile)
            continue
        cpu_per_round: list[float] = []
        latencies_us: list[float] = []
        issues = 0
        for _ in range(args.rounds):
            records = [fresh() for _ in range(args.records)]
            cpu0 = time.process_time()
            for record in records:
                t0 = time.perf_counter()
                result = apply_mapping(spec, record, registry.concept_maps)
                latencies_us.append((time.perf_counter() - t0) * 1e6)
            cpu_per_round.append((time.process_time() - cpu0) * 1e6 / len(records))
            issues = len(result.issues)
        print(
            f"{name:<52} {min(cpu_per_round):>9.1f} {statistics.median(cpu_per_round):>9.1f} "
            f"{percentile(latencies_us, 50):>9.1f} {percentile(latencies_us, 95):>9.1f} "
            f"{issues:>7}"
        )


def _profile(
    name: str, records: list[SourceRecord], spec: MappingSpec, registry: MappingRegistry, top: int
) -> None:
    """cProfile over apply_mapping alone for one round of records, costliest own time first."""
    profiler = cProfile.Profile()
    profiler.enable()
    for record in records:
        apply_mapping(spec, record, registry.concept_maps)
    profiler.disable()
    print(f"-- {name}: cProfile, {len(records)} records")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    main()
