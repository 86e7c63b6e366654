"""Accepted-while-down answers and their status location (backend=remote, accept mode).

While the backing FHIR server is down (the outbox's circuit breaker is open or half-open) and
`ADAPTER_OUTBOX_WHEN_DOWN=accept`, a successful write is answered `202 Accepted` instead of 200/201:
the write is committed in the embedded store with its outbox message, and `Content-Location` names
its status location, `GET /fhir/_outbox/{message-id}` (R4's asynchronous request pattern). The body
and `Location`/`ETag` stay those of the local write, so the caller can read its write back at once.

The status location answers a `Task` (the R4 resource for tracking work): `requested` (queued, not
tried yet) or `in-progress` (retrying) with HTTP 202, `completed` (delivered) or `failed`
(dead-lettered; `adapter outbox replay ID`) with HTTP 200. It is kept until `adapter outbox purge`.
In refuse mode the outbox answers 503 with Retry-After and nothing of this applies.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from fastapi import APIRouter, Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapter.api.deps import RepoDep, base_url
from adapter.api.responses import FhirResponse
from adapter.api.security import GrantDep, audited, require
from adapter.errors import NotFound
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.store.outbox import MessageStatus, OutboxRepository, collecting_accepted

router = APIRouter(tags=["outbox"])

STATUS_PATH: Final = "/_outbox"
_TASK_STATUS: Final = {"delivered": "completed", "dead": "failed"}
_BUSINESS_STATUS: Final = {"pending": "queued", "delivered": "delivered", "dead": "dead-lettered"}
_WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def status_location(base: str, message_id: int) -> str:
    return f"{base}{STATUS_PATH}/{message_id}"


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reason(message: MessageStatus) -> str | None:
    """Attempts and the last status only: a backend's error text may quote patient data."""
    if not message.errors:
        return None
    last = message.errors[-1]
    text = f"{message.attempts} attempt(s); last: HTTP {last.get('status')} ({last.get('error')})"
    if message.dead_letter_id is not None:
        text += f"; dead letter {message.dead_letter_id} (adapter outbox replay)"
    return text


def task_for(message: MessageStatus) -> JsonObject:
    if message.status == "pending":
        status = "in-progress" if message.attempts else "requested"
    else:
        status = _TASK_STATUS[message.status]
    last_modified = message.delivered_at or message.created_at
    task: JsonObject = {
        "resourceType": "Task",
        "id": f"outbox-{message.id}",
        "status": status,
        "businessStatus": {"text": _BUSINESS_STATUS[message.status]},
        "intent": "order",
        "code": {"text": "Deliver an accepted write to the backing FHIR server"},
        "authoredOn": _instant(message.created_at),
        "lastModified": _instant(last_modified),
        "input": [
            {"type": {"text": "resource"}, "valueReference": {"reference": key}}
            for key in message.writes
        ],
    }
    reason = _reason(message)
    if reason:
        task["statusReason"] = {"text": reason}
    return task


@router.get(STATUS_PATH + "/{message_id}")
def outbox_status(
    message_id: str, request: Request, repo: RepoDep, grant: GrantDep
) -> FhirResponse:
    with audited(request, grant, "read", "Task", f"outbox-{message_id}"):
        message = None
        if isinstance(repo, OutboxRepository) and message_id.isdigit():
            message = repo.outbox.message_status(int(message_id))
        if message is None:
            raise NotFound([Issue("error", "not-found", f"No outbox message {message_id}")])
        for resource_type in sorted({key.split("/")[0] for key in message.writes}):
            require(grant, "read", resource_type)
        headers = {"X-Progress": _BUSINESS_STATUS[message.status]}
        if message.status == "pending":
            headers["Retry-After"] = "1"
        status_code = 202 if message.status == "pending" else 200
        return FhirResponse(task_for(message), status_code=status_code, headers=headers)


class AcceptedWhileDown:
    """Pure ASGI: collects the outbox messages a write enqueued and, while the backing server is
    down, turns its 200/201 into 202 with the status location."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = getattr(scope.get("app"), "state", None)
        repo = getattr(getattr(services, "services", None), "repo", None)
        if (
            scope["type"] != "http"
            or scope["method"] not in _WRITE_METHODS
            or not isinstance(repo, OutboxRepository)
            or repo.refuse_when_down
        ):
            await self.app(scope, receive, send)
            return
        accepted: list[int] = []
        outbox_repo = repo

        async def send_accepted(message: Message) -> None:
            if (
                message["type"] == "http.response.start"
                and accepted
                and 200 <= message["status"] < 300
                and not outbox_repo.breaker.is_closed
            ):
                base = base_url(Request(scope))
                headers = MutableHeaders(raw=list(message["headers"]))
                headers["Content-Location"] = status_location(base, accepted[0])
                for message_id in accepted:
                    headers.append("Link", f'<{status_location(base, message_id)}>; rel="status"')
                message = {**message, "status": 202, "headers": headers.raw}
            await send(message)

        with collecting_accepted(accepted):
            await self.app(scope, receive, send_accepted)
