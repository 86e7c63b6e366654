"""Named value transforms a mapping rule may ask for (`transform: nhs_number`).

Each takes the source string and returns (value, problem). `problem` is a short patient-data-free
reason; the engine turns it into an Issue pointing at the source field.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from adapter.fhir.identifiers import nhs_number_is_valid

Result = tuple[object, str | None]
Transform = Callable[[str], Result]
LONDON: Final = ZoneInfo("Europe/London")


def _text(value: str) -> Result:
    return value, None


def _nhs_number(value: str) -> Result:
    digits = value.replace(" ", "").replace("-", "")
    if not nhs_number_is_valid(digits):
        return None, "is not a valid NHS number (10 digits, Modulus 11 check)"
    return digits, None


def _integer(value: str) -> Result:
    try:
        return int(value.strip()), None
    except ValueError:
        return None, "is not a whole number"


def _decimal(value: str) -> Result:
    try:
        number = float(value.strip())
    except ValueError:
        return None, "is not a number"
    return (int(number) if number.is_integer() else number), None


def _boolean(value: str) -> Result:
    lowered = value.strip().lower()
    if lowered in ("y", "yes", "true", "1"):
        return True, None
    if lowered in ("n", "no", "false", "0"):
        return False, None
    return None, "is not yes/no"


_DATE_FORMATS: Final = ("%Y-%m-%d", "%d/%m/%Y", "%Y%m%d")


def _date(value: str) -> Result:
    text = (
        value.strip()[:10]
        if "-" in value[:10]
        else value.strip()[:8]
        if value[:8].isdigit()
        else value.strip()
    )
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date().isoformat(), None  # noqa: DTZ007 - a date only
        except ValueError:
            continue
    return None, "is not a date (YYYY-MM-DD, DD/MM/YYYY or YYYYMMDD)"


_TS: Final = re.compile(
    r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(?:(\d{2}))?)?(?:\.\d+)?([+-]\d{4})?$"
)


def _datetime(value: str) -> Result:
    """ISO 8601 or HL7 v2 TS (`20261120103000+0000`). A local time without offset is Europe/London."""
    text = value.strip()
    m = _TS.match(text)
    if m is not None:
        year, month, day, hour, minute, second, offset = m.groups()
        if hour is None:
            return f"{year}-{month}-{day}", None
        try:
            naive = datetime(  # noqa: DTZ001 - naive on purpose; the offset is applied below
                int(year),
                int(month),
                int(day),
                int(hour),
                int(minute),
                int(second or 0),
            )
        except ValueError:
            return None, "is not a valid date/time"
        if offset:
            return naive.isoformat() + f"{offset[:3]}:{offset[3:]}", None
        return naive.replace(tzinfo=LONDON).isoformat(), None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        as_date = _date(text)
        return as_date if as_date[1] is None else (None, "is not a date/time")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=LONDON)
    return parsed.isoformat(), None


def _upper(value: str) -> Result:
    return value.strip().upper(), None


def _lower(value: str) -> Result:
    return value.strip().lower(), None


def _gender(value: str) -> Result:
    codes = {
        "m": "male",
        "male": "male",
        "f": "female",
        "female": "female",
        "o": "other",
        "other": "other",
        "u": "unknown",
        "unknown": "unknown",
    }
    mapped = codes.get(value.strip().lower())
    return (mapped, None) if mapped else (None, "is not a recognised administrative gender")


def _reference_id(value: str) -> Result:
    """`#att1` or `Binary/abc` -> the id part, for following local references."""
    return value.lstrip("#").rsplit("/", 1)[-1], None


def _xhtml(value: str) -> Result:
    """Free text as a FHIR narrative div (escaped; one paragraph per line)."""
    paragraphs = "".join(
        f"<p>{html.escape(line.strip())}</p>" for line in value.splitlines() if line.strip()
    )
    return f'<div xmlns="http://www.w3.org/1999/xhtml">{paragraphs}</div>', None


TRANSFORMS: Final[dict[str, Transform]] = {
    "xhtml": _xhtml,
    "text": _text,
    "nhs_number": _nhs_number,
    "integer": _integer,
    "decimal": _decimal,
    "boolean": _boolean,
    "date": _date,
    "datetime": _datetime,
    "upper": _upper,
    "lower": _lower,
    "gender": _gender,
    "reference_id": _reference_id,
}


def today_iso(now: datetime) -> str:
    return date(now.year, now.month, now.day).isoformat()
