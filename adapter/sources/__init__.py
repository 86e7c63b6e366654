"""Sources: bytes from HL7 v2, CSV/JSON extracts and FHIR JSON -> `SourceRecord`s with positions."""

from __future__ import annotations

from adapter.sources.csv_extract import read_extract
from adapter.sources.fhir_json import record_from_resource
from adapter.sources.hl7v2 import parse_message, split_messages
from adapter.sources.record import GroupInstance, SourceRecord
from adapter.sources.v2_ack import build_ack

__all__ = [
    "GroupInstance",
    "SourceRecord",
    "build_ack",
    "parse_message",
    "read_extract",
    "record_from_resource",
    "split_messages",
]
