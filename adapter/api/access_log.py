"""An access log without personal data: method, path, status and time, never the query string.

uvicorn's own access log prints the query, and FHIR searches carry identifiers there
(`?subject:identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018`), so `adapter serve` turns it
off and this middleware logs instead.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("adapter.access")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            log.info(
                "%s %s %d %.1fms",
                scope.get("method", "?"),
                scope.get("path", "?"),
                status,
                (time.perf_counter() - started) * 1000,
            )
