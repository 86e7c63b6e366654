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

import asyncio
import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from adapter.errors import (
    AdapterError,
    Conflict,
    PreconditionFailed,
    TooManyRequests,
    UpstreamUnavailable,
)
from adapter.fhir import jsonio
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.store.models import UtcDateTime
from adapter.store.remote import (
    AsyncFhirClient,
    answered_by_server,
    delete_entry,
    put_entry,
    transaction_bundle,
)
from adapter.store.repository import HistoryPage, SearchPage, SearchQuery, StoredResource
from adapter.store.sql import SqlRepository, translate_db_errors, write_engine

log = logging.getLogger(__name__)

Status = Literal["pending", "delivered", "dead"]
_REFERENCE_RE: Final = re.compile(r"^([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})$")
#: Errors worth another attempt: the server is down, slow, busy, or lost a race.
RETRYABLE: Final = (UpstreamUnavailable, TooManyRequests, PreconditionFailed, Conflict)
#: Of those, the ones about the server rather than one message: a whole Bundle waits for them.
SERVER_UNAVAILABLE: Final = (UpstreamUnavailable, TooManyRequests)

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
        body = {k: v for k, v in stored.resource.items() if k != "meta"}
        meta = {
            k: v
            for k, v in (stored.resource.get("meta") or {}).items()
            if k not in ("versionId", "lastUpdated")
        }
        if meta:
            body["meta"] = meta
        self.entries.append(put_entry(body))
        self.writes.add(f"{stored.resource_type}/{stored.id}")
        self.references |= references_of(body)

    def delete(self, resource_type: str, id: str) -> None:
        self.entries.append(delete_entry(resource_type, id))
        self.writes.add(f"{resource_type}/{id}")


# --- the tables -------------------------------------------------------------------------------


class Outbox:
    """Queue operations on the outbox tables. One per process, shared between threads."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._write_engine = write_engine(engine)
        self.is_postgres = engine.dialect.name == "postgresql"

    def enqueue(self, conn: Connection, pending: PendingWrites) -> int:
        """Inserts the message on the caller's connection: it commits with the writes or not at all."""
        return self.enqueue_many(conn, [pending])[0]

    def enqueue_many(self, conn: Connection, pendings: Sequence[PendingWrites]) -> list[int]:
        """One message per unit of work, inserted in two statements (bulk imports, tests). Order
        is kept: ids ascend in the order given, which is the order of delivery."""
        if not pendings:
            return []
        now = _now()
        rows = [
            {
                "created_at": now,
                "available_at": now,
                "status": "pending",
                "attempts": 0,
                "payload": jsonio.dumps({"entries": pending.entries}),
                "errors": "[]",
            }
            for pending in pendings
        ]
        statement = sa.insert(MESSAGES).returning(MESSAGES.c.id, sort_by_parameter_order=True)
        message_ids = [int(i) for i in conn.execute(statement, rows).scalars()]
        keys: list[dict[str, Any]] = []
        for message_id, pending in zip(message_ids, pendings, strict=True):
            keys += [
                {"message_id": message_id, "resource_key": k, "is_write": True}
                for k in sorted(pending.writes)
            ]
            keys += [
                {"message_id": message_id, "resource_key": k, "is_write": False}
                for k in sorted(pending.references - pending.writes)
            ]
        if keys:
            conn.execute(sa.insert(KEYS), keys)
        return message_ids

    def _claimable(self, now: datetime, limit: int) -> sa.Select[Any]:
        m, earlier = MESSAGES.alias("m"), MESSAGES.alias("earlier")
        mine, theirs = KEYS.alias("mine"), KEYS.alias("theirs")
        blocked = (
            sa.select(sa.literal(1))
            .select_from(
                mine.join(theirs, mine.c.resource_key == theirs.c.resource_key).join(
                    earlier, earlier.c.id == theirs.c.message_id
                )
            )
            .where(
                mine.c.message_id == m.c.id,
                theirs.c.is_write.is_(True),
                earlier.c.id < m.c.id,
                earlier.c.status == "pending",
            )
        )
        statement = (
            sa.select(m.c.id, m.c.attempts, m.c.payload, m.c.errors)
            .where(
                m.c.status == "pending",
                m.c.available_at <= now,
                sa.or_(m.c.claimed_until.is_(None), m.c.claimed_until < now),
                ~sa.exists(blocked),
            )
            .order_by(m.c.id)
            .limit(limit)
        )
        if self.is_postgres:
            statement = statement.with_for_update(of=m, skip_locked=True)
        return statement

    def claim(self, worker_id: str, limit: int, lease_seconds: float) -> list[Message]:
        """Takes up to `limit` deliverable messages under a lease. Two workers never claim the same
        row: PostgreSQL skips rows another claim has locked; SQLite serialises claims."""
        now = _now()
        with translate_db_errors(may_retry=False), self._write_engine.begin() as conn:
            rows = conn.execute(self._claimable(now, limit)).all()
            if not rows:
                return []
            conn.execute(
                sa.update(MESSAGES)
                .where(MESSAGES.c.id.in_([r.id for r in rows]))
                .values(claimed_by=worker_id, claimed_until=now + timedelta(seconds=lease_seconds))
            )
        return [
            Message(r.id, r.attempts, json.loads(r.payload)["entries"], json.loads(r.errors))
            for r in rows
        ]

    def delivered(self, message: Message, worker_id: str) -> None:
        self.delivered_many([message], worker_id)

    def delivered_many(self, messages: Sequence[Message], worker_id: str) -> None:
        """Settles a round's delivered messages in one transaction (one commit, not one each)."""
        with translate_db_errors(may_retry=False), self._write_engine.begin() as conn:
            conn.execute(
                sa.update(MESSAGES)
                .where(
                    MESSAGES.c.id.in_([m.id for m in messages]),
                    MESSAGES.c.claimed_by == worker_id,
                )
                .values(
                    status="delivered",
                    delivered_at=_now(),
                    attempts=MESSAGES.c.attempts + 1,
                    claimed_by=None,
                    claimed_until=None,
                )
            )

    def failed(
        self,
        message: Message,
        worker_id: str,
        error: JsonObject,
        retry_at: datetime | None,
        *,
        attempts: int | None = None,
    ) -> None:
        """Records the error; reschedules at `retry_at`, or dead-letters when it is None.
        `attempts` is the new count (default: one more)."""
        errors = [*message.errors, error]
        values: dict[str, Any] = {
            "attempts": message.attempts + 1 if attempts is None else attempts,
            "errors": jsonio.dumps(errors),
            "claimed_by": None,
            "claimed_until": None,
        }
        with translate_db_errors(may_retry=False), self._write_engine.begin() as conn:
            if retry_at is None:
                values["status"] = "dead"
                conn.execute(
                    sa.insert(DEAD_LETTERS).values(
                        message_id=message.id,
                        created_at=_now(),
                        payload=jsonio.dumps({"entries": message.entries}),
                        errors=jsonio.dumps(errors),
                    )
                )
            else:
                values["available_at"] = retry_at
            conn.execute(
                sa.update(MESSAGES)
                .where(MESSAGES.c.id == message.id, MESSAGES.c.claimed_by == worker_id)
                .values(**values)
            )

    def message_status(self, message_id: int) -> MessageStatus | None:
        """One message as the facade's status location reports it; None once purged."""
        with translate_db_errors(may_retry=False), self.engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    MESSAGES.c.status,
                    MESSAGES.c.attempts,
                    MESSAGES.c.errors,
                    MESSAGES.c.created_at,
                    MESSAGES.c.delivered_at,
                    MESSAGES.c.available_at,
                ).where(MESSAGES.c.id == message_id)
            ).first()
            if row is None:
                return None
            writes = conn.execute(
                sa.select(KEYS.c.resource_key)
                .where(KEYS.c.message_id == message_id, KEYS.c.is_write.is_(True))
                .order_by(KEYS.c.resource_key)
            ).scalars()
            dead_letter_id = conn.execute(
                sa.select(sa.func.max(DEAD_LETTERS.c.id)).where(
                    DEAD_LETTERS.c.message_id == message_id
                )
            ).scalar_one()
        return MessageStatus(
            id=message_id,
            status=row.status,
            attempts=int(row.attempts),
            errors=json.loads(row.errors),
            created_at=row.created_at,
            delivered_at=row.delivered_at,
            next_attempt_at=row.available_at,
            writes=list(writes),
            dead_letter_id=dead_letter_id,
        )

    # -- operations (adapter outbox ...) --

    def status(self) -> dict[str, Any]:
        with translate_db_errors(may_retry=False), self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(MESSAGES.c.status, sa.func.count()).group_by(MESSAGES.c.status)
            ).all()
            counts: dict[str, int] = {str(r[0]): int(r[1]) for r in rows}
            oldest = conn.execute(
                sa.select(sa.func.min(MESSAGES.c.created_at)).where(MESSAGES.c.status == "pending")
            ).scalar_one()
            dead = conn.execute(
                sa.select(sa.func.count())
                .select_from(DEAD_LETTERS)
                .where(DEAD_LETTERS.c.replayed_at.is_(None))
            ).scalar_one()
        return {
            "pending": int(counts.get("pending", 0)),
            "delivered": int(counts.get("delivered", 0)),
            "dead": int(counts.get("dead", 0)),
            "dead_letters_open": int(dead),
            "oldest_pending": oldest.isoformat() if oldest else None,
        }

    def retry(self, message_ids: Sequence[int] | None = None) -> int:
        """Dead messages back to pending (attempts reset, errors kept), and pending ones due now."""
        where = [MESSAGES.c.status.in_(("dead", "pending"))]
        if message_ids:
            where.append(MESSAGES.c.id.in_(list(message_ids)))
        with translate_db_errors(may_retry=False), self._write_engine.begin() as conn:
            result = conn.execute(
                sa.update(MESSAGES)
                .where(*where)
                .values(
                    status="pending",
                    attempts=0,
                    available_at=_now(),
                    claimed_by=None,
                    claimed_until=None,
                )
            )
            done = sa.select(DEAD_LETTERS.c.id).where(DEAD_LETTERS.c.replayed_at.is_(None))
            if message_ids:
                done = done.where(DEAD_LETTERS.c.message_id.in_(list(message_ids)))
            conn.execute(
                sa.update(DEAD_LETTERS)
                .where(DEAD_LETTERS.c.id.in_(done))
                .values(replayed_at=_now())
            )
        return int(result.rowcount)

    def dead_letter(self, dead_letter_id: int) -> tuple[list[JsonObject], list[JsonObject]]:
        """(entries, errors) of a dead letter, exactly as first accepted."""
        with translate_db_errors(may_retry=False), self.engine.connect() as conn:
            row = conn.execute(
                sa.select(DEAD_LETTERS).where(DEAD_LETTERS.c.id == dead_letter_id)
            ).first()
        if row is None:
            from adapter.errors import NotFound

            raise NotFound(f"No dead letter {dead_letter_id}")
        return json.loads(row.payload)["entries"], json.loads(row.errors)

    def mark_replayed(self, dead_letter_id: int) -> None:
        with translate_db_errors(may_retry=False), self._write_engine.begin() as conn:
            conn.execute(
                sa.update(DEAD_LETTERS)
                .where(DEAD_LETTERS.c.id == dead_letter_id)
                .values(replayed_at=_now())
            )

    def purge(self, older_than: timedelta, *, include_replayed_dead_letters: bool = True) -> int:
        """Deletes delivered messages (and replayed dead letters) older than `older_than`. Open dead
        letters and pending messages are never purged: that would lose an accepted write."""
        cutoff = _now() - older_than
        with translate_db_errors(may_retry=False), self._write_engine.begin() as conn:
            old = sa.select(MESSAGES.c.id).where(
                MESSAGES.c.status == "delivered", MESSAGES.c.delivered_at < cutoff
            )
            conn.execute(sa.delete(KEYS).where(KEYS.c.message_id.in_(old)))
            purged = conn.execute(sa.delete(MESSAGES).where(MESSAGES.c.id.in_(old))).rowcount
            if include_replayed_dead_letters:
                purged += conn.execute(
                    sa.delete(DEAD_LETTERS).where(
                        DEAD_LETTERS.c.replayed_at.is_not(None), DEAD_LETTERS.c.replayed_at < cutoff
                    )
                ).rowcount
        return int(purged)


# --- the repository the pipeline writes to ----------------------------------------------------


class CircuitBreaker:
    """Closed -> open after `threshold` consecutive failures -> half-open after `reset_seconds`
    (one trial batch) -> closed on success. Thread-safe; shared by the worker and the facade."""

    def __init__(self, threshold: int = 5, reset_seconds: float = 10.0):
        self.threshold = threshold
        self.reset_seconds = reset_seconds
        self._failures = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        with self._lock:
            return (
                self._opened_at is not None
                and time.monotonic() - self._opened_at < self.reset_seconds
            )

    @property
    def is_closed(self) -> bool:
        """False while open or half-open: the backing server is believed to be down."""
        with self._lock:
            return self._opened_at is None

    @property
    def is_half_open(self) -> bool:
        with self._lock:
            return (
                self._opened_at is not None
                and time.monotonic() - self._opened_at >= self.reset_seconds
            )

    def retry_after_seconds(self) -> int:
        with self._lock:
            if self._opened_at is None:
                return 1
            return max(1, int(self.reset_seconds - (time.monotonic() - self._opened_at)) + 1)

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self.threshold or self._opened_at is not None:
                self._opened_at = time.monotonic()


class OutboxRepository:
    """`Repository` for backend=remote: local SQL store + outbox message, one transaction."""

    def __init__(
        self,
        sql: SqlRepository,
        outbox: Outbox,
        *,
        breaker: CircuitBreaker | None = None,
        refuse_when_down: bool = False,
        _pending: PendingWrites | None = None,
    ):
        self.sql = sql
        self.outbox = outbox
        self.breaker = breaker or CircuitBreaker()
        self.refuse_when_down = refuse_when_down
        self._pending = _pending

    def close(self) -> None:
        self.sql.close()

    def unit_of_work(self) -> AbstractContextManager[OutboxRepository]:
        return self._unit_of_work()

    @contextmanager
    def _unit_of_work(self) -> Iterator[OutboxRepository]:
        if self._pending is not None:
            yield self
            return
        if self.refuse_when_down and self.breaker.is_open:
            raise UpstreamUnavailable(
                [
                    Issue(
                        "error",
                        "transient",
                        "The backing FHIR server is unavailable; nothing was stored",
                    )
                ],
                headers={"Retry-After": str(self.breaker.retry_after_seconds())},
            )
        with self.sql.unit_of_work() as inner:
            unit = OutboxRepository(
                inner,
                self.outbox,
                breaker=self.breaker,
                refuse_when_down=self.refuse_when_down,
                _pending=PendingWrites(),
            )
            yield unit
            assert unit._pending is not None
            if unit._pending.entries:
                connection = inner.connection  # the unit's own connection: same DB transaction
                assert connection is not None
                with translate_db_errors(may_retry=False):
                    message_id = self.outbox.enqueue(connection, unit._pending)
                note_accepted(message_id)

    def create(self, resource: JsonObject, *, id: str | None = None) -> StoredResource:
        with self.unit_of_work() as unit:
            stored = unit.sql.create(resource, id=id)
            assert unit._pending is not None
            unit._pending.put(stored)
            return stored

    def update(
        self, resource: JsonObject, *, if_match: int | None = None
    ) -> tuple[StoredResource, bool]:
        with self.unit_of_work() as unit:
            stored, created = unit.sql.update(resource, if_match=if_match)
            assert unit._pending is not None
            unit._pending.put(stored)
            return stored, created

    def delete(
        self, resource_type: str, id: str, *, if_match: int | None = None
    ) -> StoredResource | None:
        with self.unit_of_work() as unit:
            stored = unit.sql.delete(resource_type, id, if_match=if_match)
            if stored is not None:
                assert unit._pending is not None
                unit._pending.delete(resource_type, id)
            return stored

    def read(self, resource_type: str, id: str) -> StoredResource:
        return self.sql.read(resource_type, id)

    def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource:
        return self.sql.vread(resource_type, id, version_id)

    def search(self, resource_type: str, query: SearchQuery) -> SearchPage:
        return self.sql.search(resource_type, query)

    def history(
        self, resource_type: str | None, id: str | None, *, count: int, offset: int
    ) -> HistoryPage:
        return self.sql.history(resource_type, id, count=count, offset=offset)

    def count(self, resource_type: str | None = None) -> int:
        return self.sql.count(resource_type)

    def supported_search_params(self, resource_type: str) -> Sequence[str]:
        return self.sql.supported_search_params(resource_type)


#: Message ids accepted during the current request, for the facade's 202 answer. A ContextVar, so
#: it follows the request into the threadpool that runs sync endpoints.
_accepted: ContextVar[list[int] | None] = ContextVar("outbox_accepted", default=None)


@contextmanager
def collecting_accepted(into: list[int]) -> Iterator[None]:
    """Collects the ids of messages enqueued while the block (and what it calls) runs."""
    token = _accepted.set(into)
    try:
        yield
    finally:
        _accepted.reset(token)


def note_accepted(message_id: int) -> None:
    ids = _accepted.get()
    if ids is not None:
        ids.append(message_id)


# --- delivery ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 12
    base_seconds: float = 0.5
    max_seconds: float = 300.0

    def delay_seconds(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential backoff with full jitter (never below the server's Retry-After)."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempt - 1))
        delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography
        return max(delay, retry_after or 0.0)


def _retry_after(error: AdapterError) -> float | None:
    """The backing server's own Retry-After. Ours (timeouts, refused connections: a hint for our
    callers) is not a floor for the worker's backoff, or every refused connection would wait 5 s."""
    if not answered_by_server(error):
        return None
    value = error.headers.get("Retry-After")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _error_record(error: AdapterError, attempt: int) -> JsonObject:
    return {
        "at": _now().isoformat(),
        "attempt": attempt,
        "status": error.status,
        "error": type(error).__name__,
        "issues": [f"{i.code}: {i.text}" for i in error.issues],
        "answered": answered_by_server(error),
    }


def _unanswered_in_a_row(errors: Sequence[JsonObject]) -> int:
    count = 0
    for error in reversed(errors):
        if error.get("answered", True):
            break
        count += 1
    return count


class DeliveryWorker:
    """Claims, delivers and settles messages. Several may run at once, in threads or processes.

    Up to `messages_per_bundle` claimed messages travel in one transaction Bundle: claimed messages
    never depend on each other (a message is not claimable while an earlier one writes what it
    touches), so joining them is safe, and it saves a round trip and a server commit per message.
    When the server is unavailable (5xx, 429, timeouts) every message of the Bundle is rescheduled;
    any other failure (a rejection, a version conflict) belongs to one message, so each is then sent
    alone: only a poison one is dead-lettered, and a conflicting one does not hold up the others."""

    def __init__(
        self,
        outbox: Outbox,
        client: AsyncFhirClient,
        *,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        batch_size: int = 50,
        messages_per_bundle: int = 10,
        lease_seconds: float = 120.0,
        worker_id: str | None = None,
    ):
        self.outbox = outbox
        self.client = client
        self.policy = policy or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.batch_size = batch_size
        self.messages_per_bundle = max(1, messages_per_bundle)
        self.lease_seconds = lease_seconds
        self.worker_id = worker_id or f"w-{uuid.uuid4().hex[:12]}"
        self.delivered_count = 0
        self.dead_count = 0

    async def run_once(self) -> int:
        """One claim-and-deliver round; returns how many messages were settled."""
        if self.breaker.is_open:
            return 0
        limit = 1 if self.breaker.is_half_open else self.batch_size
        messages = await asyncio.to_thread(
            self.outbox.claim, self.worker_id, limit, self.lease_seconds
        )
        if not messages:
            return 0
        size = self.messages_per_bundle
        groups = [messages[i : i + size] for i in range(0, len(messages), size)]
        outcomes = await asyncio.gather(*(self._deliver_group(g) for g in groups))
        delivered = [m for group in outcomes for m in group]
        if delivered:
            await asyncio.to_thread(self.outbox.delivered_many, delivered, self.worker_id)
        return len(messages)

    async def _deliver_group(self, group: list[Message]) -> list[Message]:
        """The messages the server took; failed ones are settled here (retry or dead letter)."""
        if len(group) == 1:
            return group if await self._deliver(group[0]) else []
        entries = [entry for message in group for entry in message.entries]
        try:
            await self.client.transaction(transaction_bundle(entries))
        except AdapterError as error:
            if isinstance(error, SERVER_UNAVAILABLE):
                self.breaker.failure()
                for message in group:
                    await self._failed(message, error, count_failure=False)
                return []
            # a conflict or a rejection belongs to one message: send each alone to find it
            outcomes = await asyncio.gather(*(self._deliver(m) for m in group))
            return [m for m, is_delivered in zip(group, outcomes, strict=True) if is_delivered]
        self.breaker.success()
        self.delivered_count += len(group)
        return group

    async def _deliver(self, message: Message) -> bool:
        """True when the server took it; a failure is settled here (retry or dead letter)."""
        try:
            await self.client.transaction(transaction_bundle(message.entries))
        except AdapterError as error:
            await self._failed(message, error)
            return False
        self.breaker.success()
        self.delivered_count += 1
        return True

    async def _failed(
        self, message: Message, error: AdapterError, *, count_failure: bool = True
    ) -> None:
        """Reschedules or dead-letters. Only attempts the server *answered* count towards the
        limit: an unreachable server (refused, reset, timed out) is an outage, not the message's
        fault, and the breaker, not the limit, stops the storm. Otherwise a long outage would
        dead-letter the messages the half-open breaker probes with."""
        answered = answered_by_server(error)
        attempts = message.attempts + 1 if answered else message.attempts
        record = _error_record(error, message.attempts + 1)
        retryable = isinstance(error, RETRYABLE)
        if retryable and count_failure:
            self.breaker.failure()
        if retryable and attempts < self.policy.max_attempts:
            exponent = attempts if answered else _unanswered_in_a_row([*message.errors, record])
            delay = self.policy.delay_seconds(max(1, exponent), _retry_after(error))
            retry_at: datetime | None = _now() + timedelta(seconds=delay)
        else:
            retry_at = None
            self.dead_count += 1
            log.warning(
                "outbox message dead-lettered",
                extra={"message_id": message.id, "attempts": attempts},
            )
        await asyncio.to_thread(
            self.outbox.failed, message, self.worker_id, record, retry_at, attempts=attempts
        )

    async def run(
        self, stop: asyncio.Event | threading.Event, *, poll_seconds: float = 0.5
    ) -> None:
        """Delivers until `stop` is set; sleeps `poll_seconds` when there is nothing to do."""
        while not stop.is_set():
            try:
                settled = await self.run_once()
            except AdapterError as error:  # the local database itself is unavailable
                log.warning("outbox round failed: %s", type(error).__name__)
                settled = 0
            if settled == 0:
                await asyncio.sleep(poll_seconds)


class BackgroundDelivery:
    """A DeliveryWorker on its own thread and event loop, for the app process (wiring.py)."""

    def __init__(self, worker: DeliveryWorker, *, poll_seconds: float = 0.5):
        self.worker = worker
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="outbox-delivery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _main(self) -> None:
        async def main() -> None:
            try:
                await self.worker.run(self._stop, poll_seconds=self.poll_seconds)
            finally:
                await self.worker.client.aclose()

        asyncio.run(main())

    def stop(self, timeout_seconds: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_seconds)
