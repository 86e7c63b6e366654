"""The `Idempotency-Key` header on FHIR writes: an ASGI middleware over `adapter.idempotency`.

Applies to POST, PUT, PATCH and DELETE under /fhir that carry the header (creates, updates, deletes,
transaction and batch Bundles, `$process-message`), but not to the OAuth endpoints, `_search` or
`$validate`, which write nothing. The caller is identified first (the same `current_grant` the
routes use), because keys belong to a caller; a request that fails authentication passes through
and is answered 401 by the route, with nothing stored.

- first request with a key: runs; its answer is stored (unless 401/403/408/429/5xx) and sent;
- same key, same request, within the window: the stored answer, with `Idempotent-Replayed: true`;
- same key, different request: 422; same key while the first is still running: 409 + Retry-After.
"""

from __future__ import annotations

import logging
from typing import Final

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapter.api.responses import FhirResponse
from adapter.api.security import current_grant
from adapter.errors import AdapterError
from adapter.idempotency import (
    IdempotencyStore,
    StoredResponse,
    key_hash,
    key_is_valid,
    request_hash,
)
from adapter.issue import Issue
from adapter.outcome import operation_outcome

log = logging.getLogger("adapter.api.idempotency")

HEADER: Final = "idempotency-key"
_WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def applies_to(method: str, path: str) -> bool:
    if method not in _WRITE_METHODS or not (path == "/fhir" or path.startswith("/fhir/")):
        return False
    return not (path.startswith("/fhir/auth/") or path.endswith(("/_search", "/$validate")))


async def _answer(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    issue: Issue,
    headers: dict[str, str] | None = None,
) -> None:
    response = FhirResponse(operation_outcome([issue]), status_code=status, headers=headers)
    await response(scope, receive, send)


async def _replay(send: Send, stored: StoredResponse) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in stored.headers]
    raw += [
        (b"content-length", str(len(stored.body)).encode()),
        (b"idempotent-replayed", b"true"),
    ]
    await send({"type": "http.response.start", "status": stored.status_code, "headers": raw})
    await send({"type": "http.response.body", "body": stored.body})


def _caller(request: Request) -> str | None:
    """issuer|client|subject of a verified caller; None when authentication fails."""
    try:
        grant = current_grant(request)
    except AdapterError:
        return None
    return f"{grant.issuer or ''}|{grant.client_id or ''}|{grant.subject or ''}"


class IdempotencyMiddleware:
    """Pure ASGI, so the body can be read once, hashed and handed on unchanged."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not applies_to(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        keys = Headers(scope=scope).getlist(HEADER)
        if not keys:
            await self.app(scope, receive, send)
            return
        if len(keys) > 1 or not key_is_valid(keys[0]):
            text = "Send one Idempotency-Key of 1-255 visible ASCII characters (a UUID)"
            await _answer(scope, receive, send, 400, Issue("error", "value", text))
            return
        store: IdempotencyStore = scope["app"].state.services.idempotency
        body = await _read_body(receive)
        replay_receive = _replaying(body, receive)
        caller = await run_in_threadpool(_caller, Request(scope, replay_receive))
        if caller is None:
            await self.app(scope, replay_receive, send)
            return
        key = key_hash(caller, keys[0])
        fingerprint = request_hash(
            scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1"), body
        )
        claim = await run_in_threadpool(store.begin, key, fingerprint)
        if claim.state == "replay":
            assert claim.response is not None
            await _replay(send, claim.response)
            return
        if claim.state == "mismatch":
            text = "This Idempotency-Key was already used for a different request"
            await _answer(scope, receive, send, 422, Issue("error", "duplicate", text))
            return
        if claim.state == "in_flight":
            text = "A request with this Idempotency-Key is still being processed"
            issue = Issue("error", "conflict", text)
            await _answer(scope, receive, send, 409, issue, {"Retry-After": "1"})
            return
        # the write hook marks the key committed inside the write's own unit of work
        scope.setdefault("state", {})["idempotency_claim"] = (store, key)
        await self._run_and_store(scope, replay_receive, send, store, key)

    async def _run_and_store(
        self, scope: Scope, receive: Receive, send: Send, store: IdempotencyStore, key: str
    ) -> None:
        messages: list[Message] = []

        async def capture(message: Message) -> None:
            messages.append(message)

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            await run_in_threadpool(store.release, key)
            raise
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        if start is None:  # nothing was answered (client gone): let a retry run it again
            await run_in_threadpool(store.release, key)
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]]
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        await run_in_threadpool(store.complete, key, StoredResponse(start["status"], headers, body))
        for message in messages:
            await send(message)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
