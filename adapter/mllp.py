"""MLLP listener: HL7 v2 framed as <VT> message <FS><CR> over TCP, answered with an ACK per message.

Each message is one unit of work through `Inbound.handle_v2` (hence the pipeline); the mapping and
writing run in a worker thread so the event loop keeps accepting. No patient data is logged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from adapter.mapping.inbound import Inbound

log = logging.getLogger(__name__)
START: Final = b"\x0b"
END: Final = b"\x1c\r"
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024


def frame(message: str) -> bytes:
    return START + message.encode("utf-8") + END


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
