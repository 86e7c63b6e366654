"""The circuit breaker in front of the backing FHIR server, shared by the delivery worker and the facade.

Closed until `threshold` consecutive failures, then open (no deliveries; with `refuse_when_down`
the facade answers 503 with its Retry-After), then half-open after `reset_seconds` (one trial
batch), and closed again on success.
"""

from __future__ import annotations

import threading
import time


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
