"""HL7 v2 messages -> SourceRecord (keys `PID-3.1`, `OBX[2]-5`); the ACK that answers them is
built in `v2_ack.py`.

Parsing uses the `hl7` package; any error it raises is re-raised as SourceParseError naming the
segment. Key shape: the first occurrence of a segment is `PID`, later ones `OBX[2]`; a field with
components is keyed per component (`PID-5.1`), otherwise whole (`PID-8`, also reachable as
`PID-8.1`); repetitions after the first are `PID-3[2].1`. Repeating segments (`OBX`) and repeating
fields (`PID-3`) are the record's groups.

Bytes are decoded strictly in the character set MSH-18 names (`v2_charset.py`), each message of a
file by its own MSH-18 (or the set configured for its sender), so a Latin-1 `Zoë` is never stored
as `Zo\ufffd`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Final

import hl7

from adapter.errors import SourceParseError
from adapter.issue import Issue
from adapter.sources.record import ERROR_KEY, GroupInstance, SourceRecord
from adapter.sources.v2_charset import decode_message, no_msh, readable_text

_BATCH_SEGMENTS_BYTES: Final = frozenset({b"FHS", b"FTS", b"BHS", b"BTS"})
_SEGMENT_ID: Final = re.compile(r"^[A-Z][A-Z0-9]{2}$")
MLLP_START: Final = b"\x0b"
MLLP_END: Final = b"\x1c\x0d"


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\r").replace("\n", "\r").strip("\x0b\x1c\r ")


def split_message_bytes(data: bytes) -> Iterator[bytes]:
    """Messages in a file, still bytes, one after another, each starting at an MSH segment (batch
    wrappers dropped). Split before decoding, at the ASCII line endings (`\r\n`, `\n`, `\r`) and
    MLLP framing bytes, so each message is decoded by its own MSH-18 and one file can mix sets."""
    text = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r").strip(b"\x0b\x1c\r ")
    current: list[bytes] = []
    for line in text.split(b"\r"):
        segment = line.strip(b"\x0b\x1c")  # a file of MLLP frames: <VT>MSH...<FS><CR><VT>MSH...
        if not segment.strip() or segment[:3] in _BATCH_SEGMENTS_BYTES:
            continue
        if segment.startswith(b"MSH") and current:
            yield b"\r".join(current)
            current = []
        current.append(segment)
    if current:
        yield b"\r".join(current)


def split_messages(
    data: bytes,
    *,
    default_charset: str = "utf-8",
    sender_charsets: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """The messages of a file as text (`split_message_bytes`, then `decode_message`); raises
    SourceParseError naming MSH-18 at the first message that cannot be decoded."""
    for message in split_message_bytes(data):
        yield decode_message(
            message, default_charset=default_charset, sender_charsets=sender_charsets
        )


def read_messages(
    data: bytes,
    name: str,
    *,
    default_charset: str = "utf-8",
    sender_charsets: Mapping[str, str] | None = None,
) -> list[SourceRecord]:
    """Every message of a v2 file as a record. A message that cannot be decoded or parsed becomes a
    record carrying its reasons under ERROR_KEY (and its text, undecodable bytes kept as `\\xNN`),
    so one bad message is dead-lettered on its own instead of stopping the file."""
    records: list[SourceRecord] = []
    for i, message in enumerate(split_message_bytes(data), start=1):
        try:
            records.append(
                parse_message(
                    message, default_charset=default_charset, sender_charsets=sender_charsets
                )
            )
        except SourceParseError as exc:
            reasons = "; ".join(
                f"{x.expression}: {x.text}" if x.expression else x.text for x in exc.issues
            )
            raw = readable_text(
                message, default_charset=default_charset, sender_charsets=sender_charsets
            )
            records.append(
                SourceRecord(
                    "hl7v2", f"{name} message {i}", {}, raw=raw, header={ERROR_KEY: reasons}
                )
            )
    return records


def _delimiters(raw: str) -> tuple[str, str, str, hl7.Message]:
    """(field, component, repetition separators, the MSH segment parsed by python-hl7). The MSH
    parse gives the escape rules of this message's own encoding characters (MSH-1, MSH-2)."""
    msh = raw.split("\r", 1)[0]
    if len(msh) < 8:
        raise SourceParseError(
            [Issue("fatal", "structure", "The MSH segment is truncated", expression="MSH")]
        )
    # The escape rules depend on MSH-1 and MSH-2 only, so python-hl7 parses an MSH made of
    # those, once per distinct encoding (a feed keeps one): about 90 µs a message saved.
    end = msh.find(msh[3], 4)
    encoding = msh if end < 0 else msh[: end + 1]
    try:
        header = _encoding_header(encoding)
    except (hl7.ParseException, ValueError, IndexError) as exc:
        raise SourceParseError(
            [Issue("fatal", "structure", f"Unparseable HL7 v2: {exc}", expression="MSH")]
        ) from exc
    return msh[3], msh[4], msh[5], header


@lru_cache(maxsize=64)
def _encoding_header(encoding: str) -> hl7.Message:
    """python-hl7's parse of `MSH|^~\\&|` (MSH-1 and MSH-2 only): its separators and escapes.
    Cached: the result is only read (`esc`, `unescape`), never changed."""
    return hl7.parse(encoding)


def parse_message(
    text: str | bytes,
    *,
    default_charset: str = "utf-8",
    sender_charsets: Mapping[str, str] | None = None,
) -> SourceRecord:
    """One message. Bytes are decoded strictly by MSH-18, or `default_charset` (a Python codec)
    when MSH-18 is empty, or the codec `sender_charsets` gives its `MSH-3|MSH-4`
    (`v2_charset.decode_message`); text is taken as already decoded."""
    raw = (
        decode_message(text, default_charset=default_charset, sender_charsets=sender_charsets)
        if isinstance(text, bytes)
        else text
    )
    raw = _normalise(raw)
    if not raw.startswith("MSH"):
        raise no_msh()
    # python-hl7 parses the MSH (delimiters, escapes); the body is split with str.split, which
    # keys every field exactly as walking python-hl7's full tree does (tests/support/hl7_reference.py,
    # checked by a differential test) at a tenth of the cost.
    field_sep, comp_sep, rep_sep, header_message = _delimiters(raw)
    unescape = header_message.unescape
    escape_char = header_message.esc
    values: dict[str, str] = {}
    positions: dict[str, str] = {}
    aliases: dict[str, str] = {}
    counts: dict[str, int] = {}
    for seg_no, segment_text in enumerate(raw.split("\r"), start=1):
        if not segment_text:
            continue
        fields = segment_text.split(field_sep)
        seg_id = fields[0]
        if not _SEGMENT_ID.match(seg_id):
            raise SourceParseError(
                [
                    Issue(
                        "fatal",
                        "structure",
                        f"Segment {seg_no} has no valid segment id",
                        expression=f"segment {seg_no}",
                    )
                ]
            )
        counts[seg_id] = counts.get(seg_id, 0) + 1
        k = counts[seg_id]
        prefix = seg_id if k == 1 else f"{seg_id}[{k}]"
        # MSH-1 is the field separator itself, so MSH-n is fields[n - 1]; MSH-1/2 are not data
        is_msh = seg_id == "MSH"
        for j in range(2 if is_msh else 1, len(fields)):
            field = fields[j]
            if not field:
                continue
            n = j + 1 if is_msh else j
            where = f"segment {seg_no} ({seg_id}) field {n}"
            reps = field.split(rep_sep) if rep_sep in field else (field,)
            for r, rep in enumerate(reps, start=1):
                if not rep:
                    continue
                base = f"{prefix}-{n}" if r == 1 else f"{prefix}-{n}[{r}]"
                if comp_sep not in rep:
                    value = str(unescape(rep)) if escape_char in rep else rep
                    if value:
                        values[base] = value
                        positions[base] = where
                        aliases[f"{base}.1"] = base
                    continue
                for c, comp in enumerate(rep.split(comp_sep), start=1):
                    value = str(unescape(comp)) if escape_char in comp else comp
                    if value:
                        key = f"{base}.{c}"
                        values[key] = value
                        positions[key] = f"{where} component {c}"
    if seg_id_missing := [s for s in ("MSH",) if s not in counts]:
        raise SourceParseError(
            [Issue("fatal", "structure", "No MSH segment", expression=seg_id_missing[0])]
        )
    msg_type = values.get("MSH-9.1", values.get("MSH-9", ""))
    header = {
        "message_type": msg_type,
        "trigger": values.get("MSH-9.2", ""),
        "control_id": values.get("MSH-10", ""),
        "version": values.get("MSH-12", values.get("MSH-12.1", "")),
        "sending_application": values.get("MSH-3", values.get("MSH-3.1", "")),
        "sending_facility": values.get("MSH-4", values.get("MSH-4.1", "")),
        "receiving_application": values.get("MSH-5", values.get("MSH-5.1", "")),
        "receiving_facility": values.get("MSH-6", values.get("MSH-6.1", "")),
    }
    record = SourceRecord(
        "hl7v2",
        f"MSH-10={header['control_id'] or '?'}",
        values,
        positions,
        raw=raw,
        header=header,
        group_finder=_groups,
    )
    record.aliases = aliases
    return record


_KEY: Final = re.compile(
    r"^(?P<seg>[A-Z][A-Z0-9]{2})(?:\[(?P<occ>\d+)\])?-(?P<field>\d+)(?P<rest>.*)$"
)


@lru_cache(maxsize=8192)
def _segment_key(key: str) -> tuple[str, int, str] | None:
    """`OBX[3]-5.1` -> ("OBX", 3, "OBX-5.1"): segment, occurrence and the key local to that
    occurrence. Keys repeat from message to message, so each shape is parsed by `_KEY` once."""
    m = _KEY.match(key)
    if m is None:
        return None
    return m["seg"], int(m["occ"] or 1), f"{m['seg']}-{m['field']}{m['rest']}"


def _groups(record: SourceRecord, name: str) -> list[GroupInstance]:
    """`OBX`: every OBX segment, local keys `OBX-5`; `PID-3`: every repetition, local keys `1`, `4`.

    Both patterns only match keys that start with `name`, so `startswith` skips the rest of the
    message before any parsing."""
    instances: dict[int, dict[str, str]] = {}
    if "-" not in name:
        for key in record.values:
            if not key.startswith(name):
                continue
            parts = _segment_key(key)
            if parts is None or parts[0] != name:
                continue
            instances.setdefault(parts[1], {})[parts[2]] = key
        for alias, real in record.aliases.items():
            if not alias.startswith(name):
                continue
            parts = _segment_key(alias)
            if parts is not None and parts[0] == name:
                instances.setdefault(parts[1], {})[parts[2]] = real
        return [GroupInstance(i - 1, keys) for i, keys in sorted(instances.items())]
    rep_pattern = re.compile(re.escape(name) + r"(?:\[(?P<rep>\d+)\])?(?:\.(?P<comp>\d+))?$")
    for key in [*record.values, *record.aliases]:
        if not key.startswith(name):
            continue
        m = rep_pattern.match(key)
        if m is None:
            continue
        real = record.aliases.get(key, key)
        instances.setdefault(int(m["rep"] or 1), {})[m["comp"] or "1"] = real
    return [GroupInstance(i - 1, keys) for i, keys in sorted(instances.items())]
