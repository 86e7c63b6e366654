"""The outbox queue: messages on the outbox tables, from enqueue to delivered or dead-lettered.

`Outbox` owns the queue operations: enqueue (on the caller's connection, so a message commits with
its writes), claim (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: the `BEGIN IMMEDIATE` write
lock), settle, dead-letter, retry, purge, status. A message is not claimed while an earlier
undelivered message writes a resource it writes or references, so a ServiceRequest never reaches
the server before the Patient it points at. The tables and the message values (`Message`,
`MessageStatus`, `PendingWrites`, one unit of work's writes as Bundle entries) are in
`outbox_messages`. The names listed in `__all__` stay importable from here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from adapter.fhir import jsonio
from adapter.fhir.types import JsonObject
from adapter.store.outbox_messages import (
    DEAD_LETTERS,
    KEYS,
    MESSAGES,
    Message,
    MessageStatus,
    PendingWrites,
    Status,
    _now,
    metadata,
    references_of,
)
from adapter.store.sql import translate_db_errors, write_engine

# Names other modules import from here, besides the queue defined below.
__all__ = [
    "DEAD_LETTERS",
    "KEYS",
    "MESSAGES",
    "Message",
    "MessageStatus",
    "Outbox",
    "PendingWrites",
    "Status",
    "metadata",
    "references_of",
]


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
