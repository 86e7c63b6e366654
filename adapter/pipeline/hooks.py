"""The write hook: what the caller runs inside a write's unit of work, just before it commits."""

from __future__ import annotations

from collections.abc import Callable

from adapter.store.repository import Repository

#: Called inside a write's unit of work, just before it commits, with the unit, the written
#: resource's type and id (a transaction: "Bundle", None) and the HTTP status: the API stores the
#: interaction's AuditEvent and marks its Idempotency-Key there, so a committed write always has
#: both, and if either cannot be stored the write is not made either. Not called when nothing is
#: written (a no-op update, a conditional create that matched).
WriteHook = Callable[[Repository, str, str | None, int], None]


def call_hook(
    uow: Repository, hook: WriteHook | None, rt: str, id: str | None, status: int
) -> None:
    if hook is not None:
        hook(uow, rt, id, status)
