"""The outbox: every accepted write commits to the embedded SQL store *with* its outbox message, in
one database transaction, and only then is delivered to the backing FHIR server.

- `OutboxRepository` is the Repository the pipeline writes to when `backend=remote`: it wraps the
  `SqlRepository`, records each unit of work's writes, and inserts the message on the unit's own
  connection before it commits. Reads are served from the local copy (docs/backing-store.md).
- `Outbox` owns the tables: enqueue, claim (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: the
  `BEGIN IMMEDIATE` write lock), settle, dead-letter, retry, purge, status.
- `DeliveryWorker` delivers claimed messages as transaction Bundles with `AsyncFhirClient`, with
  exponential backoff and full jitter, a bounded number of attempts and a `CircuitBreaker`.

Order: a message is not claimed while an earlier undelivered message writes a resource it writes or
references, so a ServiceRequest never reaches the server before the Patient it points at. Delivery
is `PUT Type/id` of the ids our store assigned, so a re-delivery (a lost answer, an expired lease)
leaves one resource, never two.
"""

from __future__ import annotations

from adapter.store.outbox_breaker import CircuitBreaker
from adapter.store.outbox_delivery import (
    RETRYABLE,
    SERVER_UNAVAILABLE,
    BackgroundDelivery,
    DeliveryWorker,
    RetryPolicy,
)
from adapter.store.outbox_messages import (
    DEAD_LETTERS,
    KEYS,
    MESSAGES,
    Message,
    MessageStatus,
    PendingWrites,
    Status,
    metadata,
    references_of,
)
from adapter.store.outbox_queue import Outbox
from adapter.store.outbox_repository import OutboxRepository, collecting_accepted, note_accepted

# The outbox's names, importable from here as before the split into one module per concept.
__all__ = [
    "DEAD_LETTERS",
    "KEYS",
    "MESSAGES",
    "RETRYABLE",
    "SERVER_UNAVAILABLE",
    "BackgroundDelivery",
    "CircuitBreaker",
    "DeliveryWorker",
    "Message",
    "MessageStatus",
    "Outbox",
    "OutboxRepository",
    "PendingWrites",
    "RetryPolicy",
    "Status",
    "collecting_accepted",
    "metadata",
    "note_accepted",
    "references_of",
]
