"""Outbox delivery: `DeliveryWorker` sends claimed messages to the backing FHIR server.

Messages travel as transaction Bundles through `AsyncFhirClient`, with exponential backoff and full
jitter (`RetryPolicy`), a bounded number of attempts, and a `CircuitBreaker`. Delivery is
`PUT Type/id` of the ids our store assigned, so a re-delivery (a lost answer, an expired lease)
leaves one resource, never two. `BackgroundDelivery` runs a worker in the app process.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from adapter.errors import (
    AdapterError,
    Conflict,
    PreconditionFailed,
    TooManyRequests,
    UpstreamUnavailable,
)
from adapter.fhir.types import JsonObject
from adapter.store.outbox_breaker import CircuitBreaker
from adapter.store.outbox_messages import Message, _now
from adapter.store.outbox_queue import Outbox
from adapter.store.remote import AsyncFhirClient
from adapter.store.remote_errors import answered_by_server
from adapter.store.remote_requests import transaction_bundle

# The logger keeps the name it had when this code lived in adapter/store/outbox.py.
log = logging.getLogger("adapter.store.outbox")

#: Errors worth another attempt: the server is down, slow, busy, or lost a race.
RETRYABLE: Final = (UpstreamUnavailable, TooManyRequests, PreconditionFailed, Conflict)
#: Of those, the ones about the server rather than one message: a whole Bundle waits for them.
SERVER_UNAVAILABLE: Final = (UpstreamUnavailable, TooManyRequests)


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
