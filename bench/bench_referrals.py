"""Posts N GP referral transaction Bundles to `adapter serve` (a real process) and prints throughput.

.venv/bin/python bench/bench_referrals.py --n 500 [--concurrency 4] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import report, served_adapter
from tests.support.referrals import nhs_number, referral_bundle


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    url = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
    bodies = [json.dumps(referral_bundle(nhs_number(i))) for i in range(args.n)]
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    next_index = iter(range(args.n))

    with served_adapter(url) as base:

        def worker() -> None:
            nonlocal failures
            with httpx.Client(timeout=30, headers={"Content-Type": "application/fhir+json"}) as c:
                for i in next_index:
                    t0 = time.perf_counter()
                    r = c.post(base, content=bodies[i])
                    dt = (time.perf_counter() - t0) * 1000
                    with lock:
                        latencies.append(dt)
                        if r.status_code != 200:
                            failures += 1

        threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    report(
        f"referral transaction Bundles via HTTP ({url.split(':')[0]}, concurrency {args.concurrency})",
        args.n,
        elapsed,
        latencies,
        unit="requests",
    )
    print(f"failures:  {failures}")


if __name__ == "__main__":
    main()
