"""Median cost of policy evaluation per resource for the referral and care-plan packs (< 1 ms target).

Run: .venv/bin/python bench/bench_policy.py [iterations] [--fhirpathpy-only]

`--fhirpathpy-only` switches the fast evaluator off (every expression through fhirpathpy), to show
what it saves on this machine. The machine may be shared: CPU time (time.process_time) per item is
printed next to wall time, and is the figure to compare between runs.
"""

from __future__ import annotations

import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapter.policy import PolicyEngine, load_packs  # noqa: E402
from adapter.policy.rulepack import RulePack  # noqa: E402
from adapter.policy.scenarios import load_file  # noqa: E402

#: (label, fixture): the first case of each file is its valid base, evaluated in its own context
#: (FixedClock, Bundle). The first two are the budgeted packs (< 1 ms p50); the rest are reported.
CASES = (
    ("referral (england-cmht)", "england-cmht/referral.yaml"),
    ("care plan (wales-measure CTP)", "wales-measure/ctp.yaml"),
    ("care plan (england-cmht CPA)", "england-cmht/careplan.yaml"),
    ("risk assessment (england-cmht)", "england-cmht/risk.yaml"),
    ("DIALOG response (england-cmht)", "england-cmht/dialog.yaml"),
    ("discharge letter (england-cmht)", "england-cmht/discharge.yaml"),
    ("Part 3 request (wales-measure)", "wales-measure/part3.yaml"),
)


def _without_fast_path(pack: RulePack) -> RulePack:
    rules = tuple(
        replace(r, fast=None, guard=replace(r.guard, fast=None) if r.guard else None)
        for r in pack.rules
    )
    return replace(pack, rules=rules)


def main(iterations: int = 2000, *, fhirpathpy_only: bool = False) -> None:
    packs = load_packs(ROOT / "profiles" / "policy", ["england-cmht"])
    if fhirpathpy_only:
        packs = {name: _without_fast_path(p) for name, p in packs.items()}
    engine = PolicyEngine(packs)
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(
        f"date {datetime.now(UTC).isoformat(timespec='seconds')} machine {platform.node()} "
        f"{platform.machine()} python {platform.python_version()} git {sha}"
        + (" (fhirpathpy only)" if fhirpathpy_only else "")
    )
    for label, fixture in CASES:
        scenario = load_file(ROOT / "fixtures" / "policy" / fixture)[0]
        resource, ctx = scenario.resource, scenario.context()
        engine.evaluate(resource, ctx)  # warm the per-selection index
        samples = []
        cpu0 = time.process_time()
        start = time.perf_counter()
        for _ in range(iterations):
            t0 = time.perf_counter()
            engine.evaluate(resource, ctx)
            samples.append(time.perf_counter() - t0)
        total = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        samples.sort()
        p50, p95 = statistics.median(samples) * 1e3, samples[int(len(samples) * 0.95)] * 1e3
        print(
            f"{label}: items {iterations} seconds {total:.3f} ms/item {total / iterations * 1e3:.3f} "
            f"p50 {p50:.3f} ms p95 {p95:.3f} ms cpu ms/item {cpu / iterations * 1e3:.3f}"
        )


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(args[0]) if args else 2000, fhirpathpy_only="--fhirpathpy-only" in sys.argv)
