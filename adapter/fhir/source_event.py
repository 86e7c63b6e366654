"""The source event a stored version reflects, and the rule that an older event never overwrites it.

HL7 v2 feeds re-send and reorder. An interface engine replays its queue after an outage; a sender
retries a message whose ACK was lost after a later message was accepted. Deterministic ids make a
replay of the *same* message a no-op (HAZ-003), but a replay of an *older* one (the A01 of a visit
arriving after its A03) would write the admission back over the discharge. So every resource
written from a v2 message carries in `meta.extension` the event it came from:

- `sender`: the sending application and facility (MSH-3|MSH-4);
- `instant`: when the event happened (EVN-2, else the message time MSH-7; a local time without
  an offset is Europe/London, as everywhere in the v2 mappings);
- `message`: the message control id (MSH-10), for tracing only.

A write stamped with an event *older* than the stored version's event *from the same sender* is
superseded: the pipeline leaves it unwritten and answers with the stored version
(`pipeline/execute.py`). Events from different senders are not compared (their clocks are not
comparable), and an unstamped write (REST, CSV extracts, BaRS messages) is judged as before. Equal
instants are not superseded: the later arrival wins, as without stamps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from adapter.fhir.types import JsonObject
from adapter.issue import Issue

SOURCE_EVENT_URL: Final = "https://fhir.cmh-adapter.example/StructureDefinition/source-event"


@dataclass(frozen=True, slots=True)
class SourceEvent:
    sender: str
    #: timezone-aware
    instant: datetime
    message: str = ""

    def extension(self) -> JsonObject:
        subs: list[JsonObject] = [
            {"url": "sender", "valueString": self.sender},
            {"url": "instant", "valueInstant": self.instant.isoformat()},
        ]
        if self.message:
            subs.append({"url": "message", "valueString": self.message})
        return {"url": SOURCE_EVENT_URL, "extension": subs}


def stamp(resource: JsonObject, event: SourceEvent) -> None:
    """Sets (or replaces) the resource's source-event extension in `meta`, in place."""
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        meta = {}
    kept = [
        x
        for x in meta.get("extension") or []
        if not (isinstance(x, dict) and x.get("url") == SOURCE_EVENT_URL)
    ]
    resource["meta"] = {**meta, "extension": [*kept, event.extension()]}


def event_of(resource: Any) -> SourceEvent | None:
    """The source event stamped on a resource; None when there is none or it cannot be read
    (then nothing is compared, and the write is judged as an unstamped one)."""
    meta = resource.get("meta") if isinstance(resource, dict) else None
    extensions = meta.get("extension") if isinstance(meta, dict) else None
    if not isinstance(extensions, list):
        return None
    for extension in extensions:
        if isinstance(extension, dict) and extension.get("url") == SOURCE_EVENT_URL:
            return _read(extension)
    return None


def _read(extension: JsonObject) -> SourceEvent | None:
    values: dict[str, Any] = {}
    for sub in extension.get("extension") or []:
        if isinstance(sub, dict):
            for key, value in sub.items():
                if key.startswith("value"):
                    values[str(sub.get("url"))] = value
    sender, instant = values.get("sender"), values.get("instant")
    if not isinstance(sender, str) or not isinstance(instant, str):
        return None
    try:
        moment = datetime.fromisoformat(instant)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    message = values.get("message")
    return SourceEvent(sender, moment, message if isinstance(message, str) else "")


def superseding(stored: Any, incoming: Any) -> SourceEvent | None:
    """The stored version's event when it is later than the incoming write's, from the same
    sender: the write is then superseded and must not overwrite it. None otherwise."""
    new = event_of(incoming)
    if new is None:
        return None
    held = event_of(stored)
    if held is None or held.sender != new.sender or held.instant <= new.instant:
        return None
    return held


def superseded_issue(
    ref: str, held: SourceEvent, sent: SourceEvent | None, expression: str
) -> Issue:
    """The warning for a stamped write left unwritten because the stored version `ref` reflects a
    later event of the same sender. No patient data: times and message ids only."""
    older = f" ({sent.instant.isoformat()})" if sent is not None else ""
    by = f" of message {held.message}" if held.message else ""
    return Issue(
        "warning",
        "business-rule",
        f"Not written: {ref} already reflects a later event{by} ({held.instant.isoformat()}) from "
        f"the same sender; this older event{older} is superseded",
        expression=expression,
    )
