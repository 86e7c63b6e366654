"""The front door: who is calling (`current_grant`), and the audit trail of what they did.

`current_grant` verifies the bearer token (embedded or external issuer) and returns a SmartGrant;
with `auth_required` off it returns the all-access development grant instead. Enforcement helpers
live in `adapter.auth.access` and are re-exported here for routers (`require`, `check_resource`,
`check_readable`, `filter_bundle_for_grant`...). `audited(...)` records one AuditEvent per interaction; one that
cannot be stored is counted (`SmartServices.audit_failures`) and logged whole at ERROR with a
correlation id (X-Request-ID when the caller sends one), never dropped in silence.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from adapter.api.deps import base_url, get_services
from adapter.audit import (
    OUTCOME_MINOR_FAILURE,
    OUTCOME_SERIOUS_FAILURE,
    OUTCOME_SUCCESS,
    audit_event,
    correlation_id,
)
from adapter.auth.access import (
    Lookup,
    authorize_bundle,
    check_readable,
    check_resource,
    filter_bundle_for_grant,
    may_access,
    narrow_search,
    require,
)
from adapter.auth.scopes import SmartGrant
from adapter.auth.service import SmartServices, build_smart_services
from adapter.errors import AccessDenied, AdapterError
from adapter.issue import Issue
from adapter.outcome import operation_outcome
from adapter.pipeline import WriteHook
from adapter.store.repository import resource_lookup

log = logging.getLogger("adapter.security")
_BUILD_LOCK = threading.Lock()


def get_smart(request: Request) -> SmartServices:
    """The app's SmartServices, built on first use (tests may set `app.state.smart` first)."""
    smart: SmartServices | None = getattr(request.app.state, "smart", None)
    if smart is None:
        with _BUILD_LOCK:
            smart = getattr(request.app.state, "smart", None)
            if smart is None:
                smart = build_smart_services(get_services(request).settings)
                request.app.state.smart = smart
    return smart


def _unauthorised(text: str) -> AccessDenied:
    return AccessDenied([Issue("error", "login", text)], headers={"WWW-Authenticate": "Bearer"})


def current_grant(request: Request) -> SmartGrant:
    """Raises AccessDenied (401) without a valid token; never returns None."""
    settings = get_services(request).settings
    if not settings.auth_required:
        grant = SmartGrant.development()
        request.state.grant = grant
        return grant
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorised("A bearer token is required")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorised("Use an Authorization: Bearer token")
    grant = get_smart(request).verify(token.strip(), base_url(request))
    request.state.grant = grant
    return grant


GrantDep = Annotated[SmartGrant, Depends(current_grant)]
SmartDep = Annotated[SmartServices, Depends(get_smart)]


@dataclass(slots=True)
class AuditNote:
    """Filled in by the endpoint while it runs (e.g. the id a create assigned).

    `hook` is handed to the pipeline for writes and runs in the write's own unit of work: it
    stores the AuditEvent (when auditing is on), so a committed write always has its event and a
    write whose event cannot be stored is not made (HAZ-022); and it marks the request's
    Idempotency-Key committed (when one was claimed), so a retry after a crash is answered, not
    run again. Reads, searches, batches and failures are audited after the interaction."""

    resource_type: str | None = None
    resource_id: str | None = None
    hook: WriteHook | None = None
    stored_with_write: bool = False


@contextmanager
def audited(
    request: Request,
    grant: SmartGrant,
    interaction: str,
    resource_type: str | None = None,
    resource_id: str | None = None,
    *,
    operation: str | None = None,
) -> Iterator[AuditNote]:
    """Records an AuditEvent for the interaction, whatever its outcome (then re-raises)."""
    note = AuditNote(resource_type, resource_id)
    smart: SmartServices | None = None
    if not grant.is_development or getattr(request.app.state, "smart", None) is not None:
        smart = get_smart(request)
    enabled = smart is not None and smart.audit_enabled
    outcome, status = OUTCOME_SUCCESS, 200
    claim = getattr(request.state, "idempotency_claim", None)
    if (smart is not None and enabled) or claim is not None:

        def hook(uow: Any, resource_type: str, resource_id: str | None, status: int) -> None:
            if smart is not None and enabled:
                event = audit_event(
                    interaction=interaction,
                    outcome=OUTCOME_SUCCESS,
                    client_id=grant.client_id,
                    fhir_user=grant.fhir_user,
                    resource_type=resource_type,
                    resource_id=resource_id,
                    operation=operation,
                    status=status,
                )
                uow.create(event, id=event["id"])
                note.stored_with_write = True  # rolled back with the write if that fails
            if claim is not None:
                _mark_idempotent_commit(request, claim, uow, resource_type, resource_id, status)

        note.hook = hook
    try:
        yield note
    except AdapterError as exc:
        outcome = OUTCOME_MINOR_FAILURE if exc.status < 500 else OUTCOME_SERIOUS_FAILURE
        status = exc.status
        raise
    except Exception:
        outcome, status = OUTCOME_SERIOUS_FAILURE, 500
        raise
    finally:
        stored = note.stored_with_write and outcome == OUTCOME_SUCCESS
        if smart is not None and enabled and not stored:
            _record(smart, request, grant, interaction, note, outcome, status, operation)


def _mark_idempotent_commit(
    request: Request,
    claim: tuple[Any, str],
    uow: Any,
    resource_type: str,
    resource_id: str | None,
    status: int,
) -> None:
    store, key = claim
    location = f"{base_url(request)}/{resource_type}/{resource_id}" if resource_id else None
    where = f" The result is at {resource_type}/{resource_id}." if resource_id else ""
    text = (
        "This request was applied, but its original answer was not kept (the adapter stopped "
        f"before sending it); it is not run again.{where}"
    )
    body = json.dumps(operation_outcome([Issue("information", "informational", text)]))
    store.mark_committed(uow, key, status=status, location=location, body=body.encode("utf-8"))


def _record(
    smart: SmartServices,
    request: Request,
    grant: SmartGrant,
    interaction: str,
    note: AuditNote,
    outcome: str,
    status: int,
    operation: str | None,
) -> None:
    event = audit_event(
        interaction=interaction,
        outcome=outcome,
        client_id=grant.client_id,
        fhir_user=grant.fhir_user,
        resource_type=note.resource_type,
        resource_id=note.resource_id,
        operation=operation,
        status=status,
    )
    try:
        get_services(request).repo.create(event, id=event["id"])
    except Exception as exc:
        # The interaction itself stands (a write is already committed): count it, and log the
        # event whole (it carries no clinical content) under a correlation id, so that it can be
        # recovered from the log. No traceback: driver errors may quote SQL parameters.
        failures = smart.audit_failures.increment()
        supplied = request.headers.get("x-request-id") or request.headers.get("x-correlation-id")
        log.error(
            "audit event could not be stored",
            extra={
                "correlation_id": correlation_id(supplied),
                "error": type(exc).__name__,
                "interaction": interaction,
                "resource_type": note.resource_type,
                "resource_id": note.resource_id,
                "audit_outcome": outcome,
                "audit_failures": failures,
                "audit_event": json.dumps(event, separators=(",", ":")),
            },
        )


def lookup_for(request: Request) -> Lookup:
    return resource_lookup(get_services(request).repo)


__all__ = [
    "AuditNote",
    "GrantDep",
    "SmartDep",
    "audited",
    "authorize_bundle",
    "check_readable",
    "check_resource",
    "current_grant",
    "filter_bundle_for_grant",
    "get_smart",
    "lookup_for",
    "may_access",
    "narrow_search",
    "require",
]
