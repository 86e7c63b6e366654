"""`adapter mllp` as a real process on a free loopback port: a framed message in, an ACK out."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "mappings"
VT, FS_CR = b"\x0b", b"\x1c\r"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _exchange(port: int, message: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(VT + message.replace(b"\n", b"\r") + FS_CR)
        data = b""
        while FS_CR not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.split(FS_CR, 1)[0].lstrip(VT).decode("utf-8")


def _start_listener(env_extra: dict[str, str], database_url: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    env = {
        **os.environ,
        "ADAPTER_DATABASE_URL": database_url,
        "ADAPTER_AUTO_MIGRATE": "true",
        **env_extra,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapter.cli", "mllp", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return proc, port


def _wait_until_listening(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode() if proc.stderr else "exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("listener did not start")


@pytest.fixture
def listener(tmp_path):
    proc, port = _start_listener({}, f"sqlite:///{tmp_path / 'mllp.sqlite3'}")
    try:
        _wait_until_listening(proc, port)
    except AssertionError:
        proc.kill()
        raise
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def test_mllp_listener_answers_aa_then_ae_naming_the_field(listener):
    good = (FIXTURES / "hl7v2-ref-i12-referral" / "routine-gp-referral" / "input.hl7").read_bytes()
    ack = _exchange(listener, good)
    assert ack.startswith("MSH|")
    assert ack.split("\r")[1].startswith("MSA|AA|REF0001")
    bad = (FIXTURES / "hl7v2-ref-i12-referral" / "bad-nhs-number" / "input.hl7").read_bytes()
    ack = _exchange(listener, bad)
    segments = ack.split("\r")
    assert segments[1].startswith("MSA|AE|REF0001")
    assert any(s.startswith("ERR||PID^1^3^^1|") for s in segments)
