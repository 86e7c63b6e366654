"""CORS for browser SMART apps: preflights and response headers on /fhir/*, OAuth endpoints included.

Only origins listed in `AuthSettings.cors_allowed_origins` (ADAPTER_AUTH_CORS_ALLOWED_ORIGINS) get
`Access-Control-Allow-Origin`; the default list is empty, so a browser on another origin can read
nothing but the public discovery documents and JWKS (their routes answer `*` themselves). The
list is read per request from the app's SmartServices, and Starlette's CORSMiddleware does the
protocol. Bearer tokens, not cookies, so credentials are never allowed.
"""

from __future__ import annotations

from typing import Final

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from adapter.api.security import get_smart

ALLOWED_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
ALLOWED_HEADERS: Final = (
    "Accept",
    "Authorization",
    "Content-Type",
    "If-Match",
    "If-Modified-Since",
    "If-None-Exist",
    "If-None-Match",
    "Prefer",
    "Idempotency-Key",
    "X-Request-ID",
)
EXPOSED_HEADERS: Final = (
    "Content-Location",
    "ETag",
    "Last-Modified",
    "Location",
    "WWW-Authenticate",
)
PREFLIGHT_MAX_AGE_SECONDS: Final = 600


class SmartCorsMiddleware:
    """Outermost layer: a preflight is answered here, before authentication or idempotency."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._by_origins: dict[tuple[str, ...], CORSMiddleware] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/fhir"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if "origin" not in request.headers:  # not a cross-origin browser request
            await self.app(scope, receive, send)
            return
        origins = tuple(get_smart(request).auth.cors_allowed_origins)
        await self._cors(origins)(scope, receive, send)

    def _cors(self, origins: tuple[str, ...]) -> CORSMiddleware:
        cors = self._by_origins.get(origins)
        if cors is None:
            cors = CORSMiddleware(
                self.app,
                allow_origins=origins,
                allow_methods=ALLOWED_METHODS,
                allow_headers=ALLOWED_HEADERS,
                expose_headers=EXPOSED_HEADERS,
                allow_credentials=False,
                max_age=PREFLIGHT_MAX_AGE_SECONDS,
            )
            self._by_origins[origins] = cors
        return cors
