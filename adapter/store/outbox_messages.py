"""The outbox's messages: the tables they are stored in, and the values the queue hands out.

`MESSAGES` (one row per unit of work, its transaction Bundle entries as the payload), `KEYS` (the
`Type/id` each message writes or references, which is what holds a message back behind an earlier
one) and `DEAD_LETTERS`, on their own `metadata`. `PendingWrites` is one unit of work's writes as
Bundle entries (`put_entry`, `delete_entry` from `remote_requests`) with the keys they write and
reference (`references_of`); `Message` is a claimed message, `MessageStatus` one message as the
facade's status location reports it. The queue operations on these tables are `Outbox`
(`outbox_queue`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import sqlalchemy as sa

from adapter.fhir.meta import without_store_meta
from adapter.fhir.types import JsonObject
from adapter.store.models import UtcDateTime
from adapter.store.remote_requests import delete_entry, put_entry
from adapter.store.repository import StoredResource

Status = Literal["pending", "delivered", "dead"]
_REFERENCE_RE: Final = re.compile(r"^([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})$")

metadata = sa.MetaData()
MESSAGES: Final = sa.Table(
    "outbox_message",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("available_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("errors", sa.Text, nullable=False),
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("claimed_until", UtcDateTime),
    sa.Column("delivered_at", UtcDateTime),
)
KEYS: Final = sa.Table(
    "outbox_key",
    metadata,
    sa.Column(
        "message_id",
        sa.Integer,
        sa.ForeignKey("outbox_message.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("resource_key", sa.String(130), primary_key=True),
    sa.Column("is_write", sa.Boolean, nullable=False),
)
DEAD_LETTERS: Final = sa.Table(
    "outbox_dead_letter",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("errors", sa.Text, nullable=False),
    sa.Column("replayed_at", UtcDateTime),
)


def _now() -> datetime:
    return datetime.now(UTC)


def references_of(node: Any, found: set[str] | None = None) -> set[str]:
    """Relative literal references (`Type/id`) anywhere in a resource."""
    found = set() if found is None else found
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and _REFERENCE_RE.match(ref):
            found.add(ref)
        for value in node.values():
            references_of(value, found)
    elif isinstance(node, list):
        for item in node:
            references_of(item, found)
    return found


@dataclass(slots=True)
class Message:
    id: int
    attempts: int
    entries: list[JsonObject]
    errors: list[JsonObject]


@dataclass(frozen=True, slots=True)
class MessageStatus:
    id: int
    status: Status
    attempts: int
    errors: list[JsonObject]
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime
    #: `Type/id` of each resource the message writes or deletes.
    writes: list[str]
    dead_letter_id: int | None


@dataclass(slots=True)
class PendingWrites:
    """The writes of one unit of work, in order, as transaction Bundle entries."""

    entries: list[JsonObject] = field(default_factory=list)
    writes: set[str] = field(default_factory=set)
    references: set[str] = field(default_factory=set)

    def put(self, stored: StoredResource) -> None:
        body = without_store_meta(stored.resource)
        self.entries.append(put_entry(body))
        self.writes.add(f"{stored.resource_type}/{stored.id}")
        self.references |= references_of(body)

    def delete(self, resource_type: str, id: str) -> None:
        self.entries.append(delete_entry(resource_type, id))
        self.writes.add(f"{resource_type}/{id}")
