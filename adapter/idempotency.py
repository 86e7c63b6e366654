"""Stored responses for the `Idempotency-Key` request header (no web framework here).

The first request with a key claims it by *inserting* a row (the primary key is the hash of the
caller and the key), before it runs; a concurrent duplicate fails that insert and is told the key
is in flight, so two requests with one key never both execute. When the first request finishes,
its answer (status, the headers that matter, body) is stored in the row and replayed for the same
key, from the same caller, for `window` (24 h by default). A key reused with a different request
(method, path, query or body bytes) is refused. Follows draft-ietf-httpapi-idempotency-key-header:
422 for a reused key, 409 while the first request is still in flight.

The claim and the stored answer are written in their own transactions, but the write marks the
row *committed* inside its own unit of work (`mark_committed`, called from the pipeline's write
hook). A process that dies between the write's commit and storing the answer therefore leaves a
committed row, not an in-flight one: a retry after `in_flight_timeout` is not run again (a plain
POST would create twice) but answered from the mark: the write's status, its Location, and an
OperationOutcome saying the original answer was lost. An in-flight row that never committed is
taken over and run again, as before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from adapter.store.models import UtcDateTime
from adapter.store.sql import translate_db_errors, write_engine

#: Headers worth replaying; the rest (Date, Server, Content-Length) are the transport's business.
REPLAYED_HEADERS: Final = frozenset(
    {"content-type", "location", "content-location", "etag", "last-modified", "link"}
)
#: Status codes that are not stored: the caller may retry and get a different, real answer.
#: 401/403: authentication failed before anything ran; 408, 429, 5xx: transient.
NOT_STORED: Final = frozenset({401, 403, 408, 429})
#: Status code of a claimed row whose request has not finished.
_IN_FLIGHT: Final = 0
#: Status code of a claimed row whose write committed but whose answer was not (yet) stored.
_COMMITTED: Final = -1
MAX_KEY_LENGTH: Final = 255

metadata = sa.MetaData()
RECORDS: Final = sa.Table(
    "idempotency_record",
    metadata,
    sa.Column("key_hash", sa.String(64), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("headers", sa.Text, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)


def _now() -> datetime:
    return datetime.now(UTC)


def _sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def key_is_valid(key: str) -> bool:
    """1-255 visible ASCII characters (a UUID is the usual choice)."""
    return 0 < len(key) <= MAX_KEY_LENGTH and all(33 <= ord(c) <= 126 for c in key)


def key_hash(caller: str, key: str) -> str:
    """Keys are per caller: another client's identical key is another key."""
    return _sha256(caller.encode(), key.encode())


def request_hash(method: str, path: str, query: str, body: bytes) -> str:
    """The request as sent: the same key with other bytes is a different request."""
    return _sha256(method.upper().encode(), path.encode(), query.encode(), body)


def is_storable(status_code: int) -> bool:
    return status_code < 500 and status_code not in NOT_STORED


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of `begin`: run the request ("claimed"), or answer without running it."""

    state: Literal["claimed", "replay", "in_flight", "mismatch"]
    response: StoredResponse | None = None


class IdempotencyStore:
    """The `idempotency_record` table (migration 0003). One per process, shared between threads."""

    def __init__(
        self,
        engine: Engine,
        *,
        window: timedelta = timedelta(hours=24),
        in_flight_timeout: timedelta = timedelta(minutes=5),
    ):
        self.engine = engine
        self._write_engine = write_engine(engine)
        self.window = window
        self.in_flight_timeout = in_flight_timeout

    def begin(self, key: str, request: str, *, now: datetime | None = None) -> Claim:
        """Claims `key` for `request` by inserting its row, or says why the request must not run.

        An expired row (older than the window), or an in-flight row older than the in-flight
        timeout, is deleted and the claim tried again, once."""
        now = now or _now()
        for _ in range(2):
            if self._insert(key, request, now):
                return Claim("claimed")
            row = self._get(key)
            if row is None:  # deleted between our insert and our read: try again
                continue
            created_at: datetime = row.created_at
            is_expired = created_at < now - self.window
            is_abandoned = (
                row.status_code == _IN_FLIGHT and created_at < now - self.in_flight_timeout
            )
            if is_expired or is_abandoned:
                self._delete(key, created_at)
                continue
            if row.request_hash != request:
                return Claim("mismatch")
            if row.status_code == _IN_FLIGHT:
                return Claim("in_flight")
            if row.status_code == _COMMITTED:
                if created_at >= now - self.in_flight_timeout:
                    return Claim("in_flight")  # most likely still sending its answer
                mark = json.loads(row.headers)
                headers = [(str(k), str(v)) for k, v in mark["headers"]]
                return Claim(
                    "replay", StoredResponse(int(mark["status"]), headers, bytes(row.body))
                )
            headers = [(str(k), str(v)) for k, v in json.loads(row.headers)]
            return Claim("replay", StoredResponse(row.status_code, headers, bytes(row.body)))
        return Claim("in_flight")

    def complete(self, key: str, response: StoredResponse) -> None:
        """Stores the first answer. A status that must not be replayed frees the key instead."""
        if not is_storable(response.status_code):
            self.release(key)
            return
        headers = [(k, v) for k, v in response.headers if k.lower() in REPLAYED_HEADERS]
        with translate_db_errors(may_retry=False), self._write_engine.begin() as conn:
            conn.execute(
                sa.update(RECORDS)
                .where(
                    RECORDS.c.key_hash == key,
                    RECORDS.c.status_code.in_((_IN_FLIGHT, _COMMITTED)),
                )
                .values(
                    status_code=response.status_code,
                    headers=json.dumps(headers),
                    body=response.body,
                )
            )

    def mark_committed(
        self, uow: object, key: str, *, status: int, location: str | None, body: bytes
    ) -> bool:
        """Inside a write's unit of work (the pipeline's write hook): the claimed row says the write
        committed, with what to answer if the real answer is never stored. False (nothing marked)
        when the repository exposes no SQL connection of this database."""
        connection = _unit_connection(uow)
        if connection is None:
            return False
        headers = [["content-type", "application/fhir+json"]]
        if location:
            headers.append(["location", location])
        with translate_db_errors(may_retry=False):
            connection.execute(
                sa.update(RECORDS)
                .where(RECORDS.c.key_hash == key, RECORDS.c.status_code == _IN_FLIGHT)
                .values(
                    status_code=_COMMITTED,
                    headers=json.dumps({"status": status, "headers": headers}),
                    body=body,
                )
            )
        return True

    def release(self, key: str) -> None:
        """Frees a claimed key (the request failed in a way the caller should retry). A row whose
        write committed is kept: running the request again could write twice."""
        with translate_db_errors(may_retry=False), self._write_engine.begin() as conn:
            conn.execute(
                sa.delete(RECORDS).where(
                    RECORDS.c.key_hash == key, RECORDS.c.status_code == _IN_FLIGHT
                )
            )

    def purge(self, *, now: datetime | None = None) -> int:
        """Deletes rows older than the window; `adapter outbox purge` calls it."""
        cutoff = (now or _now()) - self.window
        with translate_db_errors(may_retry=False), self._write_engine.begin() as conn:
            result = conn.execute(sa.delete(RECORDS).where(RECORDS.c.created_at < cutoff))
        return int(result.rowcount)

    # -- rows --

    def _insert(self, key: str, request: str, now: datetime) -> bool:
        values = {
            "key_hash": key,
            "request_hash": request,
            "status_code": _IN_FLIGHT,
            "headers": "[]",
            "body": b"",
            "created_at": now,
        }
        with translate_db_errors(may_retry=False):
            try:
                with self._write_engine.begin() as conn:
                    conn.execute(sa.insert(RECORDS).values(**values))
            except sa_exc.IntegrityError:  # the key is taken: the caller reads the row
                return False
        return True

    def _get(self, key: str) -> sa.Row[Any, Any, Any, Any, Any] | None:
        columns = (
            RECORDS.c.request_hash,
            RECORDS.c.status_code,
            RECORDS.c.headers,
            RECORDS.c.body,
            RECORDS.c.created_at,
        )
        with translate_db_errors(may_retry=False), self.engine.connect() as conn:
            return conn.execute(sa.select(*columns).where(RECORDS.c.key_hash == key)).first()

    def _delete(self, key: str, created_at: datetime) -> None:
        with translate_db_errors(may_retry=False), self._write_engine.begin() as conn:
            conn.execute(
                sa.delete(RECORDS).where(
                    RECORDS.c.key_hash == key, RECORDS.c.created_at == created_at
                )
            )


def _unit_connection(uow: object) -> Connection | None:
    """The SQL connection of an open unit of work: the embedded store's own, or the one the outbox
    repository (backend=remote) writes its local copy and messages on."""
    for candidate in (uow, getattr(uow, "sql", None)):
        connection = getattr(candidate, "connection", None)
        if isinstance(connection, Connection):
            return connection
    return None
