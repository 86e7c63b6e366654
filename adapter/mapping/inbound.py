"""Inbound flows: a record, a v2 message or an extract row, mapped and submitted as one unit of work.

Shared by `adapter ingest`, `adapter mllp` and the messaging router, so every route maps, judges
and writes the same way (through `unit.submit`, hence through the pipeline).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adapter.errors import SourceParseError
from adapter.fhir.source_event import stamp
from adapter.issue import Issue
from adapter.mapping.engine import MappingResult, apply_mapping
from adapter.mapping.loader import MappingRegistry
from adapter.mapping.source_events import source_event
from adapter.mapping.spec import MappingSpec
from adapter.mapping.unit import UnitOutcome, submit, submit_batch
from adapter.pipeline import Pipeline
from adapter.sources.hl7v2 import parse_message
from adapter.sources.record import ERROR_KEY, SourceRecord
from adapter.sources.v2_ack import build_ack, envelope

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Inbound:
    pipeline: Pipeline
    registry: MappingRegistry
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: Codec of a v2 message whose MSH-18 is empty (Settings.v2_default_charset).
    v2_default_charset: str = "utf-8"
    #: Codec per v2 sender, `MSH-3|MSH-4` -> codec (Settings.v2_sender_charsets).
    v2_sender_charsets: Mapping[str, str] = field(default_factory=dict)

    def map(self, spec: MappingSpec, record: SourceRecord) -> MappingResult:
        """The mapped resources, stamped with their source event when the record has one (a v2
        message; an extract row whose mapping names an `event_time` column), so an older record
        re-delivered later cannot overwrite what a newer one wrote (mapping/source_events.py)."""
        result = apply_mapping(spec, record, self.registry.concept_maps, self.settings)
        found = source_event(spec, record)
        if found is not None and found.event is not None:
            for mapped in result.resources:
                stamp(mapped.resource, found.event)
        elif found is not None and found.problem is not None:
            result.issues.append(Issue("error", "value", found.problem, expression=found.field))
        return result

    def ingest(self, spec: MappingSpec, record: SourceRecord) -> UnitOutcome:
        if ERROR_KEY in record.header:
            result = MappingResult(spec.id, record)
            issue = Issue(
                "error",
                "structure",
                f"Unreadable record: {record.header[ERROR_KEY]}",
                expression=record.locator,
            )
            return UnitOutcome(result, "rejected", [issue], http_status=400)
        return _report_superseded(spec, submit(self.pipeline, self.map(spec, record)))

    def ingest_batch(self, spec: MappingSpec, records: list[SourceRecord]) -> list[UnitOutcome]:
        """Maps every record and stores them in one commit (`unit.submit_batch`); outcomes in order."""
        outcomes: list[UnitOutcome | None] = [None] * len(records)
        results: list[MappingResult] = []
        positions: list[int] = []
        for i, record in enumerate(records):
            if ERROR_KEY in record.header:
                outcomes[i] = self.ingest(spec, record)
                continue
            positions.append(i)
            results.append(self.map(spec, record))
        for i, outcome in zip(positions, submit_batch(self.pipeline, results), strict=True):
            outcomes[i] = _report_superseded(spec, outcome)
        return [o for o in outcomes if o is not None]

    def handle_v2(self, text: str | bytes) -> tuple[UnitOutcome | None, str]:
        """Maps and stores one v2 message; returns the outcome and the ACK to send back.

        AA: stored (or already stored). AE: the content was judged and rejected (mapping,
        conformance or policy errors), with an ERR segment per reason naming the field. AR: the
        message could not be processed at all (unparseable, unsupported message type).
        """
        now = self.pipeline.clock.now()
        control_id = uuid.uuid4().hex[:20]
        try:
            record = parse_message(
                text,
                default_charset=self.v2_default_charset,
                sender_charsets=self.v2_sender_charsets,
            )
        except SourceParseError as exc:  # still answer the message by its MSH-10 where readable
            return None, build_ack(envelope(text), "AR", exc.issues, now=now, control_id=control_id)
        header = record.header
        spec = self.registry.for_message(header["message_type"], header["trigger"])
        if spec is None:
            issue = Issue(
                "error",
                "not-supported",
                f"Message type {header['message_type']}^{header['trigger']} is not supported here",
                expression="MSH-9",
            )
            return None, build_ack(header, "AR", [issue], now=now, control_id=control_id)
        try:
            outcome = self.ingest(spec, record)
        except Exception as exc:  # an MLLP sender must always get an answer
            # AR, not AE: nothing was judged or stored, and the sender should send it again.
            log.error(
                "v2 message not processed",
                extra={"error": type(exc).__name__, "message_type": header["message_type"]},
            )
            issue = Issue(
                "error",
                "transient",
                "The message could not be processed now and nothing of it was stored; send it again",
                expression="MSH-10",
            )
            return None, build_ack(header, "AR", [issue], now=now, control_id=control_id)
        code = "AE" if outcome.status == "rejected" else "AA"
        return outcome, build_ack(header, code, outcome.issues, now=now, control_id=control_id)


def _report_superseded(spec: MappingSpec, outcome: UnitOutcome) -> UnitOutcome:
    """A warning per resource a record did not overwrite because a later event of the same
    sender is stored: a v2 ACK stays AA (the message was processed) with an ERR saying so."""
    if not outcome.superseded:
        return outcome
    found = source_event(spec, outcome.result.record)
    where = found.field if found is not None else None
    outcome.issues += [
        Issue(
            "warning",
            "business-rule",
            f"{ref} not updated: it already reflects a later event from the same sender, so this "
            "older record is superseded",
            expression=where,
        )
        for ref in outcome.superseded
    ]
    return outcome
