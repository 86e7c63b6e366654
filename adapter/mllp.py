"""MLLP listener: HL7 v2 framed as <VT> message <FS><CR> over TCP, answered with an ACK per message.

Each message is one unit of work through `Inbound.handle_v2` (hence the pipeline); the mapping and
writing run in a worker thread so the event loop keeps accepting. No patient data is logged.

Payloads stay bytes until `parse_message` decodes them by their own MSH-18 (`sources/v2_charset.py`);
the ACK goes back as pure ASCII (`frame`), which every sender's character set reads alike.

TLS (`server_tls_context`) is optional: TLS 1.2 or later, and with a client CA, mutual TLS where only
certificates signed by that CA are accepted (IHE ATNA secure node; the DSPT asks for encryption in
transit). The handshake runs inside the connection's own task, not inside asyncio's accept path, so
that a refused handshake is ours to log (one line: the peer's address kind and a reason class) and
never touches the listener or any other connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from pathlib import Path
from typing import Final, Literal

from adapter.mapping.inbound import Inbound
from adapter.sources.v2_ack import ascii_safe

log = logging.getLogger(__name__)
START: Final = b"\x0b"
END: Final = b"\x1c\r"
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
#: A peer that opens a connection and never finishes the handshake is dropped after this long.
TLS_HANDSHAKE_TIMEOUT_SECONDS: Final = 30.0

RefusalReason = Literal[
    "not-tls",
    "protocol-version",
    "client-certificate-missing",
    "client-certificate-untrusted",
    "no-shared-cipher",
    "peer-closed",
    "handshake-timeout",
    "tls-error",
]
_NOT_TLS: Final = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST"})
_PROTOCOL_VERSION: Final = frozenset(
    {"UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "NO_PROTOCOLS_AVAILABLE"}
)
_CERTIFICATE_MISSING: Final = frozenset(
    {"PEER_DID_NOT_RETURN_A_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED"}
)


class TlsConfigurationError(ValueError):
    """A certificate, key or client CA file that cannot be loaded; stops start-up, naming the file."""


def server_tls_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """The standard library's server defaults (`create_default_context(CLIENT_AUTH)`), TLS 1.2 at
    least. With `client_ca`, a client certificate is required and verified against that CA *only*
    (a server context never loads the system's public roots; never add them, or a certificate any
    public CA issued would get in). Without it the server does not ask for one."""
    try:
        context = ssl.create_default_context(
            ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca) if client_ca is not None else None
        )
    except (OSError, ValueError) as exc:
        raise TlsConfigurationError(f"cannot load the client CA {client_ca}: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ValueError) as exc:
        raise TlsConfigurationError(
            f"cannot load the certificate {cert} with the key {key}: {exc}"
        ) from exc
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def refusal_reason(exc: OSError) -> RefusalReason:
    """The class of a failed handshake, from OpenSSL's reason code (never from the bytes sent)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "client-certificate-untrusted"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason in _NOT_TLS:
            return "not-tls"
        if reason in _PROTOCOL_VERSION:
            return "protocol-version"
        if reason in _CERTIFICATE_MISSING:
            return "client-certificate-missing"
        if reason == "NO_SHARED_CIPHER":
            return "no-shared-cipher"
        if isinstance(exc, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
            return "peer-closed"
        return "tls-error"
    if isinstance(exc, ConnectionAbortedError | TimeoutError):
        return "handshake-timeout"  # asyncio aborts a handshake that outlives its timeout
    return "peer-closed"


def _peer_kind(writer: asyncio.StreamWriter) -> str:
    """`ipv4-loopback`, `ipv6-private`, `ipv4-global`...: enough to tell a probe from a sender."""
    peer = writer.get_extra_info("peername")
    try:
        address = ipaddress.ip_address(peer[0])
    except (TypeError, IndexError, ValueError):
        return "unknown"
    if address.is_loopback:
        scope = "loopback"
    elif address.is_private:
        scope = "private"
    else:
        scope = "global"
    return f"ipv{address.version}-{scope}"


async def _start_tls(writer: asyncio.StreamWriter, tls: ssl.SSLContext) -> bool:
    """Upgrades the fresh connection before a byte is read; False (logged once) when refused.

    This runs as the connection task's first step, which asyncio schedules before the socket's
    first read, and `start_tls` pauses reading before it yields: no TLS byte reaches the reader."""
    try:
        await writer.start_tls(tls, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_SECONDS)
    except OSError as exc:  # ssl.SSLError, resets and asyncio's handshake timeout are all OSError
        peer_kind, reason = _peer_kind(writer), refusal_reason(exc)
        ssl_reason = getattr(exc, "reason", None) or type(exc).__name__  # OpenSSL's code, no data
        log.warning(
            "mllp tls handshake refused: peer=%s reason=%s (%s)",
            peer_kind,
            reason,
            ssl_reason,
            extra={"peer_kind": peer_kind, "reason": reason, "ssl_reason": ssl_reason},
        )
        return False
    return True


def frame(message: str) -> bytes:
    """An ACK framed for MLLP, in 7-bit ASCII: any other character becomes an HL7 `\\X..\\` escape.

    Why not the sender's own set: the ACK's MSH-18 is empty, which table 0211 reads as ASCII, and
    an ACK must be readable even when the message's MSH-18 was the reason it was refused (unknown,
    or bytes invalid in it). ASCII is the one set every sender we accept (ASCII, ISO 8859, UTF-8)
    decodes identically, so nothing needs choosing and nothing in the ACK can be misread."""
    return START + ascii_safe(message).encode("ascii") + END


async def _handle(
    inbound: Inbound,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    tls: ssl.SSLContext | None = None,
) -> None:
    buffer = b""
    try:
        if tls is not None and not await _start_tls(writer, tls):
            return
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            buffer += chunk
            if len(buffer) > MAX_MESSAGE_BYTES:
                log.warning("mllp frame too large; closing connection")
                return
            while END in buffer:
                raw, buffer = buffer.split(END, 1)
                start = raw.find(START)
                payload = raw[start + 1 :] if start >= 0 else raw
                outcome, ack = await asyncio.to_thread(inbound.handle_v2, payload)
                log.info(
                    "mllp message", extra={"status": outcome.status if outcome else "not-processed"}
                )
                writer.write(frame(ack))
                await writer.drain()
    finally:
        writer.close()


async def serve(
    inbound: Inbound, host: str, port: int, ssl: ssl.SSLContext | None = None
) -> asyncio.Server:
    """Plain TCP unless `ssl` is given (see `server_tls_context`). The TLS handshake is not handed
    to `start_server(ssl=...)`, whose failures asyncio swallows without a word outside debug
    mode; each connection's task runs it instead (`_start_tls`), so a refusal is logged."""
    return await asyncio.start_server(lambda r, w: _handle(inbound, r, w, ssl), host, port)


def run(
    inbound: Inbound, host: str, port: int, ssl: ssl.SSLContext | None = None
) -> None:  # pragma: no cover - console entry
    async def main() -> None:
        server = await serve(inbound, host, port, ssl)
        async with server:
            await server.serve_forever()

    asyncio.run(main())
