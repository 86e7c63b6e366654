"""MLLP over a real loopback socket with non-UTF-8 senders: a Latin-1 message labelled 8859/1 is
stored exactly and ACKed AA, one that cannot be decoded is refused AR naming MSH-18, and the ACK is
ASCII bytes every sender can read. In process (`adapter.mllp.serve` on port 0, the store on SQLite
and PostgreSQL), and as the `adapter mllp` process, which takes its default from the environment."""

from __future__ import annotations

import asyncio
import socket

from adapter.mllp import END, START, serve
from adapter.settings import Settings
from adapter.store.repository import SearchQuery
from adapter.wiring import build_services
from tests.integration.test_mllp import _start_listener, _wait_until_listening
from tests.unit.mapping import test_inbound as _shared
from tests.unit.mapping.test_v2_charset import ZOE, referral

services = _shared.services  # fixtures, reused: the store on SQLite and PostgreSQL, and an Inbound
inbound = _shared.inbound


def _exchange_in_process(inbound, payloads: list[bytes]) -> list[bytes]:
    """Starts `serve` on a free loopback port, sends each framed payload, returns the raw ACKs."""

    async def run() -> list[bytes]:
        server = await serve(inbound, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            acks = []
            for payload in payloads:
                writer.write(START + payload + END)
                await writer.drain()
                acks.append(await asyncio.wait_for(reader.readuntil(END), timeout=30))
            writer.close()
            await writer.wait_closed()
            return acks
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(run())


def _ack_text(raw: bytes) -> str:
    assert raw.startswith(START)
    assert raw.endswith(END)
    body = raw[len(START) : -len(END)]
    text = body.decode("ascii")  # raises if the ACK is not pure ASCII
    assert body.decode("latin-1") == text == body.decode("utf-8")  # every sender reads it alike
    return text


def _given_names(services) -> list[str]:
    page = services.repo.search("Patient", SearchQuery(count=50))
    return sorted(r.resource["name"][0]["given"][0] for r in page.resources)


def test_a_latin1_message_over_mllp_is_acked_aa_in_ascii_and_stored_exactly(services, inbound):
    [raw] = _exchange_in_process(inbound, [referral("8859/1").encode("latin-1")])

    ack = _ack_text(raw)
    assert ack.split("\r")[1].startswith("MSA|AA|REF0001"), ack
    assert _given_names(services) == [ZOE]


def test_an_undecodable_message_over_mllp_is_acked_ar_naming_msh_18_and_nothing_stored(
    services, inbound
):
    [raw] = _exchange_in_process(inbound, [referral("").encode("latin-1")])

    segments = _ack_text(raw).split("\r")
    assert segments[1].startswith("MSA|AR")
    assert any(s.startswith("ERR||MSH^1^18|") for s in segments), segments
    assert services.repo.count() == 0


def _exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(START + payload + END)
        data = b""
        while END not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def test_the_mllp_process_decodes_an_unlabelled_message_in_its_configured_default(tmp_path):
    url = f"sqlite:///{tmp_path / 'mllp.sqlite3'}"
    proc, port = _start_listener({"ADAPTER_V2_DEFAULT_CHARSET": "latin-1"}, url)
    try:
        _wait_until_listening(proc, port)
        raw = _exchange(port, referral("").encode("latin-1"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    ack = _ack_text(raw)
    assert ack.split("\r")[1].startswith("MSA|AA|REF0001"), ack
    stored = build_services(Settings(database_url=url))
    try:
        assert _given_names(stored) == [ZOE]
    finally:
        stored.close()


def test_the_mllp_process_will_not_start_with_a_default_charset_that_cannot_read_ascii(tmp_path):
    proc, _ = _start_listener(
        {"ADAPTER_V2_DEFAULT_CHARSET": "utf-16"}, f"sqlite:///{tmp_path / 'x.sqlite3'}"
    )
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert b"v2_default_charset" in stderr
