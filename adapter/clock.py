"""Time for policy and stores. All policy time is Europe/London; storage is UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Protocol
from zoneinfo import ZoneInfo

LONDON: Final = ZoneInfo("Europe/London")


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """For tests: a clock that only moves when told to."""

    def __init__(self, at: datetime):
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = at.astimezone(UTC)
