"""Shared bits of the bench scripts: machine description, git SHA, percentiles, a served adapter."""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def git_sha() -> str:
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def report(
    title: str, items: int, seconds: float, latencies_ms: list[float], unit: str = "items"
) -> None:
    print(f"== {title}")
    print(f"date:      {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"machine:   {machine()}")
    print(f"git:       {git_sha()}")
    print(f"{unit}:     {items}")
    print(f"seconds:   {seconds:.3f}")
    print(f"{unit}/s:   {items / seconds:.1f}")
    if latencies_ms:
        print(f"ms/item:   {statistics.mean(latencies_ms):.3f}")
        print(f"p50 ms:    {percentile(latencies_ms, 50):.3f}")
        print(f"p95 ms:    {percentile(latencies_ms, 95):.3f}")
        print(f"p99 ms:    {percentile(latencies_ms, 99):.3f}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served_adapter(database_url: str, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "ADAPTER_DATABASE_URL": database_url, **(extra_env or {})}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapter.cli",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/metadata", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
