"""Which source event a record's resources are stamped with (`fhir/source_event.py` holds the stamp
and the rule that an older event never overwrites a newer one).

- A v2 message: EVN-2 (when the event was recorded), else MSH-7 (when the message was made); the
  sender is MSH-3|MSH-4 and the message id MSH-10. A v2 time that cannot be read means no stamp.
- An extract row whose mapping names an `event_time` column (`source.event_time`): that column, the
  sender being the mapping (`csv:csv-care-plan`), so a nightly file re-run after a newer one cannot
  put an older care plan back. An empty cell means no stamp; a value that is not a date/time is an
  error naming the column (the row is refused, not silently left unordered). A date without a time
  is read as midnight, Europe/London.
- Anything else (BaRS messages, REST): no stamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from adapter.fhir.source_event import SourceEvent
from adapter.mapping.spec import MappingSpec
from adapter.mapping.transforms import LONDON, TRANSFORMS
from adapter.sources.record import SourceRecord


@dataclass(frozen=True, slots=True)
class Found:
    #: None when the field holds something that is not a date/time (`problem` says what)
    event: SourceEvent | None
    #: the source field the instant was read from (for issues and ERR-2)
    field: str
    problem: str | None = None


def source_event(spec: MappingSpec, record: SourceRecord) -> Found | None:
    if record.kind == "hl7v2":
        return _v2(record)
    if spec.event_time is not None:
        return _extract(spec, spec.event_time, record)
    return None


def _instant(text: str, *, date_only: bool) -> datetime | None:
    """The instant a source time names; a bare date (`date_only`) as midnight, Europe/London."""
    value, problem = TRANSFORMS["datetime"](text)
    if problem is not None or not isinstance(value, str):
        return None
    if "T" not in value:
        return datetime.fromisoformat(value).replace(tzinfo=LONDON) if date_only else None
    return datetime.fromisoformat(value)


def _v2(record: SourceRecord) -> Found | None:
    values = record.values
    for name in ("EVN-2", "MSH-7"):
        text = values.get(name) or values.get(f"{name}.1")
        moment = _instant(text, date_only=False) if text else None
        if moment is None:
            continue
        header = record.header
        sender = f"{header.get('sending_application', '')}|{header.get('sending_facility', '')}"
        return Found(SourceEvent(sender, moment, header.get("control_id", "")), name)
    return None


def _extract(spec: MappingSpec, column: str, record: SourceRecord) -> Found | None:
    text = record.values.get(column, "").strip()
    if not text:
        return None
    moment = _instant(text, date_only=True)
    if moment is None:
        return Found(None, column, f"{column} is not a date/time, so re-ingests cannot be ordered")
    return Found(SourceEvent(f"{record.kind}:{spec.id}", moment), column)
