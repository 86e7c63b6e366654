"""create_app: the FastAPI application. Routers are included here, in order, in one visible table."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from adapter import __version__
from adapter.api import exception_handlers
from adapter.api.access_log import AccessLogMiddleware
from adapter.api.cors import SmartCorsMiddleware
from adapter.api.idempotency import IdempotencyMiddleware
from adapter.api.routers import (
    fhir_rest,
    messaging,
    metadata,
    operations,
    ops,
    outbox_status,
    patch,
)
from adapter.api.routers import smart as smart_routes
from adapter.clock import Clock
from adapter.runtime import settle_heap
from adapter.settings import Settings
from adapter.wiring import Services, build_services

log = logging.getLogger("adapter")

#: (router, prefix): order matters, literal paths before /{resource_type}.
ROUTES = (
    (ops.router, ""),
    (smart_routes.router, "/fhir"),
    (metadata.router, "/fhir"),
    (operations.router, "/fhir"),
    (messaging.router, "/fhir"),
    (outbox_status.router, "/fhir"),
    (patch.router, "/fhir"),
    (fhir_rest.router, "/fhir"),
)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    services: Services | None = None,
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "services", None) is None:
            app.state.services = build_services(settings, clock=clock)
        settle_heap()  # once per process: freeze the start-up heap (adapter/runtime.py)
        if not settings.auth_required:
            log.warning(
                "SMART authorisation is OFF (ADAPTER_AUTH_REQUIRED=false): development only"
            )
        try:
            yield
        finally:
            app.state.services.close()

    app = FastAPI(
        title="CMH FHIR R4 adapter",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = services
    exception_handlers.install(app)
    for router, prefix in ROUTES:
        app.include_router(router, prefix=prefix)
    app.add_middleware(outbox_status.AcceptedWhileDown)  # 202 while the backing server is down
    app.add_middleware(IdempotencyMiddleware)  # outermost: replays the answer, 202s included
    app.add_middleware(SmartCorsMiddleware)  # outside even that: preflights never reach it
    app.add_middleware(AccessLogMiddleware)  # outermost: one line per request, no query string
    return app
