"""Every error leaves the facade as an OperationOutcome. Three handlers, in one place."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from adapter.api.responses import FhirResponse
from adapter.errors import AdapterError
from adapter.issue import Issue
from adapter.outcome import operation_outcome

log = logging.getLogger("adapter.api")

_HTTP_CODES = {
    404: "not-found",
    405: "not-supported",
    401: "login",
    403: "forbidden",
    406: "not-supported",
    415: "not-supported",
    413: "too-long",
}


async def adapter_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AdapterError)
    log.info(
        "request rejected",
        extra={"status": exc.status, "path": request.url.path, "issues": len(exc.issues)},
    )
    return FhirResponse(operation_outcome(exc.issues), status_code=exc.status, headers=exc.headers)


async def request_validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    issues = [
        Issue(
            "error",
            "structure",
            str(e.get("msg", "invalid request")),
            expression=".".join(str(p) for p in e.get("loc", ())),
        )
        for e in exc.errors()
    ]
    return FhirResponse(operation_outcome(issues), status_code=400)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "processing")
    text = str(exc.detail) if exc.detail else "Request failed"
    return FhirResponse(
        operation_outcome([Issue("error", code, text)]),  # type: ignore[arg-type]
        status_code=exc.status_code,
        headers=dict(exc.headers or {}),
    )


async def last_resort_handler(request: Request, exc: Exception) -> Response:
    """A bug, not a code path: log a correlation id (no payload) and still answer an OperationOutcome."""
    correlation = str(uuid.uuid4())
    log.exception(
        "unhandled error", extra={"correlation_id": correlation, "path": request.url.path}
    )
    return FhirResponse(
        operation_outcome(
            [Issue("fatal", "exception", f"Internal error; quote correlation id {correlation}")]
        ),
        status_code=500,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(AdapterError, adapter_error_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(StarletteHTTPException, http_exception_handler)
    app.add_exception_handler(Exception, last_resort_handler)
