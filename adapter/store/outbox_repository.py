"""`OutboxRepository`: the Repository the pipeline writes to when `backend=remote`.

It wraps the `SqlRepository`, records each unit of work's writes (`PendingWrites`), and inserts the
outbox message on the unit's own connection before it commits, so an accepted write and its
message are stored together or not at all. Reads are served from the local copy
(docs/backing-store.md). `collecting_accepted` hands the accepted message ids to the facade's 202.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar

from adapter.errors import (
    UpstreamUnavailable,
)
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.store.outbox_breaker import CircuitBreaker
from adapter.store.outbox_messages import PendingWrites
from adapter.store.outbox_queue import Outbox
from adapter.store.repository import HistoryPage, SearchPage, SearchQuery, StoredResource
from adapter.store.sql import SqlRepository, translate_db_errors


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
