"""Clinical calendar: Europe/London local dates, working days, and FHIR date parsing for timescales.

Working days exclude Saturdays, Sundays and the bank holidays of England and Wales from the
`holidays` package. England and Wales share one bank-holiday calendar, but `holidays` names them as
different subdivisions of the UK ("ENG", "WLS"), so the subdivision is a parameter, not a constant.
The Welsh Code of Practice defines a working day the same way (002_b5b903ed5658e1bd.txt:2583-2584).
"""

from __future__ import annotations

from calendar import monthrange
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Final, Literal

import holidays

from adapter.clock import LONDON

Subdivision = Literal["ENG", "WLS"]
DEFAULT_SUBDIVISION: Final[Subdivision] = "ENG"


@lru_cache(maxsize=64)
def _bank_holidays(subdivision: str, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("GB", subdiv=subdivision, years=year))


def is_bank_holiday(day: date, subdivision: Subdivision = DEFAULT_SUBDIVISION) -> bool:
    return day in _bank_holidays(subdivision, day.year)


def is_working_day(day: date, subdivision: Subdivision = DEFAULT_SUBDIVISION) -> bool:
    return day.weekday() < 5 and not is_bank_holiday(day, subdivision)


@lru_cache(maxsize=4096)
def add_working_days(
    start: date, count: int, subdivision: Subdivision = DEFAULT_SUBDIVISION
) -> date:
    """The date `count` working days after `start` (start itself is day 0, whatever it is).
    Cached: a pure function of its arguments, walked day by day, and asked for the same anchor
    dates by several rules (a discharge letter's 5- and 10-working-day deadlines).

    "Within 5 working days" of a Wednesday 23 Dec 2026 is Monday 4 Jan 2027: 25 Dec, 28 Dec
    (Boxing Day substitute) and 1 Jan are bank holidays.
    """
    day = start
    remaining = count
    while remaining > 0:
        day += timedelta(days=1)
        if is_working_day(day, subdivision):
            remaining -= 1
    return day


def parse_fhir_instant(value: object) -> datetime | None:
    """A FHIR date/dateTime/instant as an aware datetime. A bare date or a dateTime without offset
    is read as Europe/London local time (the policy's clock), never as UTC."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    try:
        if len(text) == 4:
            return datetime(int(text), 1, 1, tzinfo=LONDON)
        if len(text) == 7:
            return datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=LONDON)
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0, 0), tzinfo=LONDON)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=LONDON)
    return parsed


def london_date(moment: datetime) -> date:
    return moment.astimezone(LONDON).date()


def end_of_london_day(day: date) -> datetime:
    """The last instant of a local day: a deadline "by day X" is met any time on day X."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=LONDON).astimezone(UTC)


def is_core_hours(moment: datetime, subdivision: Subdivision = DEFAULT_SUBDIVISION) -> bool:
    """Monday to Friday 09:00-17:00 local time, not a bank holiday (000_d2f535f8876d1512.txt:255)."""
    local = moment.astimezone(LONDON)
    return is_working_day(local.date(), subdivision) and time(9, 0) <= local.time() < time(17, 0)


def add_months(day: date, months: int) -> date:
    """Calendar months, clamping to the month's last day (31 Aug + 6 months = 28/29 Feb)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, monthrange(year, month)[1]))
