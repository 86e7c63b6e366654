"""Full validation throughput on one core over the official R4 examples of the types we handle.

Full validation = parse (JSON bytes with Decimal) + the native structural check
(`adapter.fhir.parse.structural_issues`, i.e. adapter/conformance/shape.py) + the conformance
stage (formats, bindings, invariants, references, profiles, questionnaire). Bundles and
resources over 20 KB are left out, so the figure is for "typical" single clinical resources; their
mean size is printed. Run: .venv/bin/python bench/bench_conformance.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapter.conformance import ConformanceValidator  # noqa: E402
from adapter.context import ValidationContext  # noqa: E402
from adapter.fhir import jsonio  # noqa: E402
from adapter.fhir.parse import structural_issues  # noqa: E402
from tests.support.corpus import EXAMPLE_TYPES, example_files  # noqa: E402

MAX_BYTES = 20_000


def load(tgz: Path) -> list[bytes]:
    return [raw for _, raw in example_files(tgz, EXAMPLE_TYPES) if len(raw) <= MAX_BYTES]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--corpus",
        type=Path,
        default=ROOT.parent / "shared" / "corpora" / "hl7.fhir.r4.examples-4.0.1.tgz",
    )
    args = ap.parse_args()
    items = load(args.corpus)
    validator = ConformanceValidator()
    ctx = ValidationContext(mode="validate")

    def full(raw: bytes) -> None:
        resource = jsonio.loads(raw)
        if not structural_issues(resource):
            validator.validate(resource, ctx)

    for raw in items:  # warm-up: lazy tables, compiled invariants, model classes
        full(raw)
    per_item: list[float] = []
    t0 = time.perf_counter()
    c0 = time.process_time()
    cpu_per_repeat: list[float] = []
    for _ in range(args.repeat):
        r0 = time.process_time()
        for raw in items:
            s = time.perf_counter()
            full(raw)
            per_item.append(time.perf_counter() - s)
        cpu_per_repeat.append(time.process_time() - r0)
    total = time.perf_counter() - t0
    cpu = time.process_time() - c0
    n = len(per_item)
    q = statistics.quantiles(per_item, n=100)
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(
        json.dumps(
            {
                "bench": "conformance (parse + structural + bindings + invariants + refs + profiles)",
                "items": n,
                "distinct_resources": len(items),
                "mean_bytes": round(sum(map(len, items)) / len(items)),
                "seconds": round(total, 3),
                "resources_per_second": round(n / total),
                "cpu_seconds": round(cpu, 3),
                "resources_per_cpu_second": round(n / cpu),
                # the least disturbed pass over the corpus (as timeit's min): on a shared machine
                # the mean CPU time also counts cache and frequency effects of other jobs
                "resources_per_cpu_second_best_repeat": round(len(items) / min(cpu_per_repeat)),
                "cpu_us_per_item_best_repeat": round(1e6 * min(cpu_per_repeat) / len(items)),
                "load_average_1m": round(os.getloadavg()[0], 2),
                "ms_per_item": round(1000 * total / n, 3),
                "p50_ms": round(1000 * q[49], 3),
                "p95_ms": round(1000 * q[94], 3),
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()} {platform.processor() or platform.platform()} "
                f"python {platform.python_version()}",
                "git_sha": sha,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
