"""MLLP over TLS on a real loopback socket, with certificates made here: a throwaway CA, a server
certificate for 127.0.0.1 (IP SAN) and client certificates from that CA and from a stranger's.

In process (`adapter.mllp.serve(..., ssl=...)`, the store on SQLite and PostgreSQL): a TLS sender is
ACKed AA and stored; with a client CA, a sender without a certificate or with one from another CA
is refused at the handshake, nothing is stored, one log line says why, and the listener keeps
serving; plain TCP and TLS 1.1 get no ACK. As the `adapter mllp` process: `--tls-cert/--tls-key`
answers a TLS client, and a certificate without its key is a usage error naming `--tls-key`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import os
import ssl
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapter import mllp
from adapter.mllp import END, START, serve, server_tls_context
from adapter.settings import Settings
from adapter.store.repository import SearchQuery
from adapter.wiring import build_services
from tests.integration.test_mllp import FIXTURES, ROOT, _free_port, _wait_until_listening
from tests.integration.test_mllp_charset import _ack_text
from tests.unit.mapping import test_inbound as _shared

pytestmark = pytest.mark.integration

services = _shared.services  # fixtures, reused: the store on SQLite and PostgreSQL, and an Inbound
inbound = _shared.inbound

REFERRAL = (FIXTURES / "hl7v2-ref-i12-referral" / "routine-gp-referral" / "input.hl7").read_bytes()
REFERRAL = REFERRAL.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
REFERRAL_TYPES = ["Patient", "Practitioner", "ServiceRequest"]


# --- certificates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_ca: Path
    stranger_cert: Path  # a client certificate from another CA
    stranger_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    usage: x509.ObjectIdentifier,
    *,
    ip: str | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = issuer
    key = _key()
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    """A throwaway trust CA with a server and a client certificate, and a stranger CA's client."""
    d = tmp_path_factory.mktemp("pki")
    ca = _ca("Test MLLP CA")
    stranger_ca = _ca("Some Other CA")
    server = _leaf("mllp.test", ca, ExtendedKeyUsageOID.SERVER_AUTH, ip="127.0.0.1")
    client = _leaf("gp-system.test", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger = _leaf("gp-system.test", stranger_ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    return Pki(
        ca=_write_cert(ca[0], d / "ca.pem"),
        server_cert=_write_cert(server[0], d / "server.pem"),
        server_key=_write_key(server[1], d / "server.key"),
        client_cert=_write_cert(client[0], d / "client.pem"),
        client_key=_write_key(client[1], d / "client.key"),
        stranger_ca=_write_cert(stranger_ca[0], d / "stranger-ca.pem"),
        stranger_cert=_write_cert(stranger[0], d / "stranger.pem"),
        stranger_key=_write_key(stranger[1], d / "stranger.key"),
    )


def _client_context(pki: Pki, *, cert: Path | None = None, key: Path | None = None):
    """A sender that trusts our CA for the server (and checks 127.0.0.1 against the IP SAN)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


# --- an in-process listener and its clients -----------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """What one client saw: the raw ACK, or why it got none (the client side's own exception)."""

    ack: bytes | None
    failure: str | None = None


async def _tls_exchange(port: int, context: ssl.SSLContext | None, payload: bytes) -> Attempt:
    """Connects (TLS when `context`), sends one framed message and waits for one framed ACK.
    A refused TLS 1.3 client may finish its own handshake and only learn of the refusal from the
    alert that answers its first read, so failures count from connect to ACK alike."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context), timeout=30
        )
    except (OSError, TimeoutError) as exc:
        return Attempt(None, f"connect: {type(exc).__name__}")
    try:
        writer.write(START + payload + END)
        await writer.drain()
        return Attempt(await asyncio.wait_for(reader.readuntil(END), timeout=30))
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        return Attempt(None, type(exc).__name__)
    finally:
        writer.close()
        with contextlib.suppress(OSError):  # the server already tore a refused connection down
            await writer.wait_closed()


def _with_listener(inbound, tls: ssl.SSLContext | None, clients) -> list[Attempt]:
    """Serves on a free loopback port with `tls` and runs each client (port -> Attempt) in turn."""

    async def run() -> list[Attempt]:
        server = await serve(inbound, "127.0.0.1", 0, ssl=tls)
        port = server.sockets[0].getsockname()[1]
        try:
            return [await client(port) for client in clients]
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(run())


def _sends(context: ssl.SSLContext | None, payload: bytes = REFERRAL):
    return lambda port: _tls_exchange(port, context, payload)


def _stored_types(services) -> list[str]:
    """The resource types stored, one entry per resource (the referral makes three)."""
    types = ("Patient", "Practitioner", "ServiceRequest")
    return sorted(
        t for t in types for _ in services.repo.search(t, SearchQuery(count=50)).resources
    )


def _refusals(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("mllp tls handshake refused")]


def _assert_no_traceback_logged(caplog) -> None:
    """Nothing from asyncio or the listener carries a traceback (no 'Task exception was never
    retrieved', no 'Fatal error on SSL transport')."""
    noisy = [r for r in caplog.records if r.exc_info or r.name == "asyncio"]
    assert noisy == [], [r.getMessage() for r in noisy]


# --- 1. a TLS sender is ACKed and stored --------------------------------------------------------


def test_a_referral_over_tls_is_acked_aa_and_stored(services, inbound, pki, caplog):
    caplog.set_level(logging.INFO)
    tls = server_tls_context(pki.server_cert, pki.server_key)

    [attempt] = _with_listener(inbound, tls, [_sends(_client_context(pki))])

    assert attempt.failure is None
    ack = _ack_text(attempt.ack)
    assert ack.split("\r")[1].startswith("MSA|AA|REF0001"), ack
    assert sorted(_stored_types(services)) == REFERRAL_TYPES
    assert _refusals(caplog) == []
    _assert_no_traceback_logged(caplog)


def test_the_server_context_is_tls_1_2_or_later_and_trusts_only_the_given_client_ca(pki):
    plain = server_tls_context(pki.server_cert, pki.server_key)
    mutual = server_tls_context(pki.server_cert, pki.server_key, pki.ca)

    assert plain.minimum_version == mutual.minimum_version == ssl.TLSVersion.TLSv1_2
    assert plain.verify_mode == ssl.CERT_NONE
    assert mutual.verify_mode == ssl.CERT_REQUIRED
    # the system's public roots are not loaded: a public CA's client certificate is not enough
    assert [dict(c["subject"][0])["commonName"] for c in mutual.get_ca_certs()] == ["Test MLLP CA"]


# --- 2. mutual TLS: only our CA's clients get in --------------------------------------------------


def test_mutual_tls_refuses_a_client_without_a_certificate_or_from_another_ca_then_serves_ours(
    services, inbound, pki, caplog
):
    caplog.set_level(logging.INFO)
    tls = server_tls_context(pki.server_cert, pki.server_key, pki.ca)

    no_cert, stranger, good = _with_listener(
        inbound,
        tls,
        [
            _sends(_client_context(pki)),
            _sends(_client_context(pki, cert=pki.stranger_cert, key=pki.stranger_key)),
            _sends(_client_context(pki, cert=pki.client_cert, key=pki.client_key)),
        ],
    )

    assert no_cert.ack is None, no_cert
    assert no_cert.failure is not None
    assert stranger.ack is None, stranger
    assert stranger.failure is not None
    assert good.failure is None, good
    assert _ack_text(good.ack).split("\r")[1].startswith("MSA|AA|REF0001")
    assert sorted(_stored_types(services)) == REFERRAL_TYPES  # the good one only
    refusals = _refusals(caplog)
    assert [(r.peer_kind, r.reason) for r in refusals] == [
        ("ipv4-loopback", "client-certificate-missing"),
        ("ipv4-loopback", "client-certificate-untrusted"),
    ]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in refusals)
    _assert_no_traceback_logged(caplog)


def test_refused_handshakes_leave_no_trace_of_the_message_in_the_store_or_log(
    services, inbound, pki, caplog
):
    caplog.set_level(logging.DEBUG)
    tls = server_tls_context(pki.server_cert, pki.server_key, pki.ca)

    [attempt] = _with_listener(inbound, tls, [_sends(_client_context(pki))])

    assert attempt.ack is None
    assert services.repo.count() == 0
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for identifier in ("9990000018", "Testperson", "REF0001"):
        assert identifier not in logged


def test_mutual_tls_does_not_trust_the_system_roots_for_client_certificates(
    services, inbound, pki, caplog, monkeypatch
):
    """OpenSSL's default roots come from SSL_CERT_FILE: pointed at the other CA, they stand in
    for the public roots a careless `load_default_certs()` would add to the client CA."""
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.stranger_ca))
    tls = server_tls_context(pki.server_cert, pki.server_key, pki.ca)

    [stranger] = _with_listener(
        inbound, tls, [_sends(_client_context(pki, cert=pki.stranger_cert, key=pki.stranger_key))]
    )

    assert stranger.ack is None, stranger
    assert services.repo.count() == 0
    assert [r.reason for r in _refusals(caplog)] == ["client-certificate-untrusted"]


# --- 3. plain TCP to the TLS port ------------------------------------------------------------------


def test_a_plain_tcp_sender_to_the_tls_port_gets_no_ack_and_the_listener_carries_on(
    services, inbound, pki, caplog
):
    caplog.set_level(logging.INFO)
    tls = server_tls_context(pki.server_cert, pki.server_key)

    plain, good = _with_listener(inbound, tls, [_sends(None), _sends(_client_context(pki))])

    assert plain.ack is None, plain
    assert good.failure is None, good
    assert _ack_text(good.ack).split("\r")[1].startswith("MSA|AA|REF0001")
    assert sorted(_stored_types(services)) == REFERRAL_TYPES
    assert [(r.peer_kind, r.reason) for r in _refusals(caplog)] == [("ipv4-loopback", "not-tls")]
    _assert_no_traceback_logged(caplog)


def test_a_peer_that_never_starts_the_handshake_is_dropped_after_the_timeout(
    services, inbound, pki, caplog, monkeypatch
):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(mllp, "TLS_HANDSHAKE_TIMEOUT_SECONDS", 0.5)
    tls = server_tls_context(pki.server_cert, pki.server_key)

    async def silent(port: int) -> Attempt:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return Attempt(await asyncio.wait_for(reader.read(), timeout=10))  # b"" when dropped
        finally:
            writer.close()

    silent_attempt, good = _with_listener(inbound, tls, [silent, _sends(_client_context(pki))])

    assert silent_attempt.ack == b""
    assert [r.reason for r in _refusals(caplog)] == ["handshake-timeout"]
    assert good.failure is None, good
    _assert_no_traceback_logged(caplog)


# --- 4. TLS 1.1 and lower ------------------------------------------------------------------------


def _legacy_client_context(pki: Pki) -> ssl.SSLContext:
    """A client offering TLS 1.0-1.1 only; skips when this Python/OpenSSL cannot make one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1/TLSv1_1 are
        context = _client_context(pki)
        try:
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
            context.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 disables them at level 1
        except (ValueError, ssl.SSLError) as exc:
            pytest.skip(f"this OpenSSL cannot make a TLS 1.1 client: {exc}")
    return context


def test_a_tls_1_1_client_is_refused_for_its_protocol_version(services, inbound, pki, caplog):
    caplog.set_level(logging.INFO)
    if not ssl.HAS_TLSv1_1:
        pytest.skip(f"{ssl.OPENSSL_VERSION} was built without TLS 1.1; no such client can be made")
    tls = server_tls_context(pki.server_cert, pki.server_key)

    legacy, good = _with_listener(
        inbound, tls, [_sends(_legacy_client_context(pki)), _sends(_client_context(pki))]
    )

    if legacy.failure and not _refusals(caplog):
        # the client gave up before a ClientHello left it: its OpenSSL refuses TLS 1.1 itself
        pytest.skip(f"{ssl.OPENSSL_VERSION} would not send a TLS 1.1 ClientHello: {legacy}")
    assert legacy.ack is None, legacy
    assert [(r.peer_kind, r.reason) for r in _refusals(caplog)] == [
        ("ipv4-loopback", "protocol-version")
    ]
    assert good.failure is None, good  # a TLS 1.2+ sender afterwards is served
    assert sorted(_stored_types(services)) == REFERRAL_TYPES
    _assert_no_traceback_logged(caplog)


# --- 5. `adapter mllp` as a process ----------------------------------------------------------------


def _mllp_process(
    args: list[str], database_url: str, env_extra: dict[str, str] | None = None
) -> subprocess.Popen:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ADAPTER_MLLP_")},
        "ADAPTER_DATABASE_URL": database_url,
        "ADAPTER_AUTO_MIGRATE": "true",
        **(env_extra or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "adapter.cli", "mllp", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("given_by", ["options", "environment"])
def test_the_mllp_process_with_a_certificate_and_key_answers_a_tls_client(tmp_path, pki, given_by):
    url = f"sqlite:///{tmp_path / 'mllp.sqlite3'}"
    port = _free_port()
    if given_by == "options":
        tls_args = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
        env = {}
    else:
        tls_args = []
        env = {
            "ADAPTER_MLLP_TLS_CERT": str(pki.server_cert),
            "ADAPTER_MLLP_TLS_KEY": str(pki.server_key),
        }
    proc = _mllp_process(["--port", str(port), *tls_args], url, env)
    try:
        _wait_until_listening(proc, port)  # a plain connect and close: itself a refused handshake
        attempt = asyncio.run(_tls_exchange(port, _client_context(pki), REFERRAL))
        plain = asyncio.run(_tls_exchange(port, None, REFERRAL))
        after = asyncio.run(_tls_exchange(port, _client_context(pki), REFERRAL))
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert attempt.failure is None, (attempt, stderr.decode())
    assert _ack_text(attempt.ack).split("\r")[1].startswith("MSA|AA|REF0001")
    assert plain.ack is None
    assert after.failure is None, after
    text = stderr.decode()
    assert "TLS 1.2+ on, mutual TLS off" in text
    assert "mllp tls handshake refused: peer=ipv4-loopback reason=not-tls" in text
    assert "Traceback" not in text
    stored = build_services(Settings(database_url=url))
    try:
        assert stored.repo.count() > 0
    finally:
        stored.close()


@pytest.mark.parametrize(
    ("option", "missing"), [("--tls-cert", "--tls-key"), ("--tls-key", "--tls-cert")]
)
def test_the_mllp_process_with_only_one_of_certificate_and_key_exits_naming_the_other(
    tmp_path, pki, option, missing
):
    path = pki.server_cert if option == "--tls-cert" else pki.server_key
    proc = _mllp_process(
        ["--port", str(_free_port()), option, str(path)], f"sqlite:///{tmp_path / 'x.sqlite3'}"
    )
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2  # click's usage error
    message = " ".join(stderr.decode().replace("│", " ").split())  # rich boxes and wraps it
    assert f"{missing} is missing" in message
