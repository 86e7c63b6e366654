"""MLLP listener: HL7 v2 framed as <VT> message <FS><CR> over TCP, answered with an ACK per message.

Each message is one unit of work through `Inbound.handle_v2` (hence the pipeline); the mapping and
writing run in a worker thread so the event loop keeps accepting. No patient data is logged.

Payloads stay bytes until `parse_message` decodes them by their own MSH-18 (`sources/v2_charset.py`);
the ACK goes back as pure ASCII (`frame`), which every sender's character set reads alike.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from adapter.mapping.inbound import Inbound
from adapter.sources.hl7v2 import ascii_safe

log = logging.getLogger(__name__)
START: Final = b"\x0b"
END: Final = b"\x1c\r"
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024


def frame(message: str) -> bytes:
    """An ACK framed for MLLP, in 7-bit ASCII: any other character becomes an HL7 `\\X..\\` escape.

    Why not the sender's own set: the ACK's MSH-18 is empty, which table 0211 reads as ASCII, and
    an ACK must be readable even when the message's MSH-18 was the reason it was refused (unknown,
    or bytes invalid in it). ASCII is the one set every sender we accept (ASCII, ISO 8859, UTF-8)
    decodes identically, so nothing needs choosing and nothing in the ACK can be misread."""
    return START + ascii_safe(message).encode("ascii") + END


async def _handle(
    inbound: Inbound, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    buffer = b""
    try:
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


async def serve(inbound: Inbound, host: str, port: int) -> asyncio.Server:
    return await asyncio.start_server(lambda r, w: _handle(inbound, r, w), host, port)


def run(inbound: Inbound, host: str, port: int) -> None:  # pragma: no cover - console entry
    async def main() -> None:
        server = await serve(inbound, host, port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())
