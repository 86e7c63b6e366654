"""The character set of an HL7 v2 message, read from MSH-18 in its bytes, and its strict decoding.

A v2 message names its character set in MSH-18 (HL7 v2.5.1 §2.15.9.18); the first repetition is the
default character set of the whole message, later ones are alternates reached by ISO 2022 escape
sequences. The delimiters are ASCII, so MSH-18 is read from the bytes before anything is decoded:
MSH-1 is the byte after `MSH`, the repetition separator the third byte of MSH-2.

Decoding is strict. Bytes invalid in the named set, a C1 control byte (0x80-0x9F) in an ISO 8859 set
(table 0211 admits only its *printable* characters: such a byte almost always means Windows-1252
text labelled 8859/1), an MSH-18 value we do not know, and ISO 2022 code switching all raise
SourceParseError with expression `MSH-18` and the byte offset, never the text around it. Nothing is
replaced: a wrong name or risk note is worse than a message refused with a reason.

HL7 table 0211 (Alternate Character Sets), as published for v2.7.1-v2.9 at
https://www.hl7.eu/HL7v2x/v29/hl7v29tab0211.htm and as CodeSystem
http://terminology.hl7.org/CodeSystem/v2-0211 (https://build.fhir.org/ig/HL7/UTG/CodeSystem-v2-0211.html):

    ASCII, ISO IR6         -> ascii         (ASCII is the default when MSH-18 is omitted)
    8859/1 ... 8859/9      -> iso8859-1 ... iso8859-9
    8859/15                -> iso8859-15
    UNICODE UTF-8          -> utf-8
    ISO IR100, ISO IR192   -> iso8859-1, utf-8: not in table 0211 but DICOM's defined terms
                              (`ISO_IR 100`, `ISO_IR 192`), which imaging-side senders put in MSH-18
    refused: UNICODE (names no encoding form: HAPI's HL7Charsets maps it to UTF-8, other toolkits
             to UTF-16), UNICODE UTF-16/UTF-32 (not ASCII-compatible, so this MSH could not have
             been read), ISO IR14/IR87/IR159 (ISO 2022 code switching), GB 18030-2000, KS X 1001,
             CNS 11643-1992, BIG-5 (multi-byte sets whose trail bytes can equal a delimiter)

Table values are case-sensitive (the table says so). When MSH-18 is empty the configured default
(`Settings.v2_default_charset`, a Python codec; UTF-8 unless set) is used, strictly as well.

A sender may have a configured set instead (`Settings.v2_sender_charsets`, keyed `MSH-3|MSH-4`,
first components as `v2_ack.envelope` reads them), as an interface engine channel does: RiO-style
feeds send Windows-1252 labelled `8859/1`. It replaces an empty MSH-18 and every single-byte label
(ASCII, 8859/n, ISO IR6, ISO IR100), strictly as well. It never replaces a UTF-8 label (UNICODE
UTF-8, ISO IR192): UTF-8 checks itself, so bytes that decode as UTF-8 are UTF-8 (a sender fixed
to send it is read right), while the same bytes read as Windows-1252 would be stored garbled
without an error. Nor does it rescue a label refused above (not ASCII-compatible, ambiguous,
ISO 2022, multi-byte, unknown): such a label says the sender sends something other than what its
channel was configured for. The sender is read from the bytes already split for MSH-18, and only
when overrides are configured.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Final, TypeAlias

from adapter.errors import SourceParseError
from adapter.issue import Issue, IssueCode

TABLE_0211_CODECS: Final[dict[str, str]] = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    **{f"8859/{n}": f"iso8859-{n}" for n in range(1, 10)},
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "ISO IR100": "iso8859-1",
    "ISO IR192": "utf-8",
}
_REFUSED: Final[dict[str, str]] = {
    "UNICODE": "names no encoding form (UTF-8 or UTF-16?); send UNICODE UTF-8",
    "UNICODE UTF-16": "is not ASCII-compatible, yet this message's MSH was ASCII",
    "UNICODE UTF-32": "is not ASCII-compatible, yet this message's MSH was ASCII",
    **dict.fromkeys(
        ("ISO IR14", "ISO IR87", "ISO IR159"), "needs ISO 2022 code switching, not supported here"
    ),
    **dict.fromkeys(
        ("GB 18030-2000", "KS X 1001", "CNS 11643-1992", "BIG-5"),
        "is a multi-byte set whose bytes can look like delimiters, not supported here",
    ),
}
_FRAMING: Final = b"\x0b\x1c\r\n "
_C1_CONTROL: Final = re.compile(rb"[\x80-\x9f]")
_ESCAPE: Final = b"\x1b"
#: Codecs whose MSH-18 label a sender override does not replace (see the module docstring).
_SELF_CHECKING_CODECS: Final = frozenset({"utf-8"})


def no_msh() -> SourceParseError:
    """The error for data that does not start with an MSH segment (bytes here, text in hl7v2)."""
    return SourceParseError(
        [
            Issue(
                "fatal",
                "structure",
                "An HL7 v2 message starts with an MSH segment",
                expression="MSH",
            )
        ]
    )


def _refuse(code: IssueCode, text: str) -> SourceParseError:
    return SourceParseError([Issue("fatal", code, text, expression="MSH-18")])


#: The MSH segment at the start of a message, as bytes: its fields split at MSH-1 (MSH-n is
#: `fields[n - 1]`; none when the segment is too short to hold MSH-2), and MSH-2's component and
#: repetition separators. A plain tuple: it is built for every message.
_Msh: TypeAlias = tuple[list[bytes], bytes, bytes]


def _read_msh(data: bytes) -> _Msh | None:
    """The MSH segment `data` starts with (after MLLP framing and blank lines), or None."""
    start = 0 if data.startswith(b"MSH") else len(data) - len(data.lstrip(_FRAMING))
    if not data.startswith(b"MSH", start):
        return None
    end = data.find(b"\r", start)
    end = len(data) if end < 0 else end
    newline = data.find(b"\n", start, end)
    msh = data[start : end if newline < 0 else newline]
    if len(msh) < 8:  # truncated: parse_message says so once the text is decoded
        return [], b"", b""
    return msh.split(msh[3:4]), msh[4:5], msh[5:6]


def _charset_field(msh: _Msh) -> tuple[str, bool]:
    fields, _, repetition = msh
    if len(fields) < 18 or not fields[17]:
        return "", False
    first, *alternates = fields[17].split(repetition)
    value = first.strip(b" ").decode("ascii", errors="backslashreplace")
    return value, any(a.strip(b" ") for a in alternates)


def _sender(msh: _Msh) -> str:
    """`MSH-3|MSH-4`, first components, read as `v2_ack.envelope` reads them: ASCII, whitespace
    stripped, a field that is not ASCII empty."""
    fields, component, _ = msh

    def first(number: int) -> str:
        if len(fields) < number:
            return ""
        try:
            return fields[number - 1].split(component)[0].decode("ascii").strip()
        except UnicodeDecodeError:
            return ""

    return f"{first(3)}|{first(4)}"


def msh_18(data: bytes) -> tuple[str, bool] | None:
    """(MSH-18's first repetition, whether alternate sets follow it), or None if `data` does not
    start with an MSH segment (after MLLP framing and blank lines). A value that is not ASCII comes
    back with its bytes as `\\xNN`, so it is reported as unknown, never matched by accident."""
    msh = _read_msh(data)
    return None if msh is None else _charset_field(msh)


def sender_key(data: bytes) -> str | None:
    """The key of `Settings.v2_sender_charsets` for this message (`EMIS|Y12345`), or None if
    `data` does not start with an MSH segment."""
    msh = _read_msh(data)
    return None if msh is None else _sender(msh)


def codec_for(value: str) -> str:
    """The Python codec of a table 0211 value (MSH-18); SourceParseError for one we refuse."""
    codec = TABLE_0211_CODECS.get(value)
    if codec is not None:
        return codec
    reason = _REFUSED.get(value)
    if reason is not None:
        raise _refuse("not-supported", f"Character set {value} in MSH-18 {reason}")
    raise _refuse(
        "not-supported",
        f"Character set {value[:40]!r} in MSH-18 is not an HL7 table 0211 value this adapter "
        "decodes; nothing of the message was read",
    )


def _choose(
    value: str, msh: _Msh, default_charset: str, sender_charsets: Mapping[str, str] | None
) -> tuple[str, str | None]:
    """(The codec to decode in, the sender whose override chose it or None): MSH-18's (`value`,
    refused as `codec_for` says, override or not), unless the sender has an override and MSH-18
    is empty or a single-byte label; else the default. Without overrides, no sender is read."""
    codec = codec_for(value) if value else None
    if sender_charsets and codec not in _SELF_CHECKING_CODECS:
        key = _sender(msh)
        override = sender_charsets.get(key)
        if override is not None:
            return override, key
    return (default_charset if codec is None else codec), None


def _label(codec: str, value: str, sender: str | None) -> str:
    """How an error names the set it decoded in: where the set came from, never the content."""
    if sender is not None:
        return f"{codec} (configured for sender {sender}; MSH-18 {value or 'empty'})"
    if value:
        return f"{value} (MSH-18)"
    return f"{codec} (the configured default; MSH-18 is empty)"


def decode_message(
    data: bytes,
    *,
    default_charset: str = "utf-8",
    sender_charsets: Mapping[str, str] | None = None,
) -> str:
    """The message as text, decoded strictly in the set MSH-18 names, or `default_charset` (a Python
    codec, validated by Settings) when MSH-18 is empty; `sender_charsets` (`MSH-3|MSH-4` -> codec,
    validated by Settings) override both as the module docstring says. Offsets in errors count
    bytes of `data`."""
    msh = _read_msh(data)
    if msh is None:
        raise no_msh()
    value, has_alternates = _charset_field(msh)
    codec, sender = _choose(value, msh, default_charset, sender_charsets)
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        raise _refuse(
            "structure",
            f"Byte offset {exc.start} is not valid {_label(codec, value, sender)}; nothing of the "
            "message was read",
        ) from exc
    if codec.startswith("iso8859"):
        control = _C1_CONTROL.search(data)
        if control is not None:
            raise _refuse(
                "structure",
                f"Byte offset {control.start()} is a C1 control byte (0x80-0x9F), not a printable "
                f"character of {_label(codec, value, sender)}: Windows-1252 text labelled as "
                "ISO 8859?",
            )
    if has_alternates and (escape := data.find(_ESCAPE)) >= 0:
        raise _refuse(
            "not-supported",
            f"Byte offset {escape} starts an ISO 2022 escape sequence: switching to an alternate "
            "character set (MSH-18 repetitions) is not supported here",
        )
    return text


def readable_text(
    data: bytes,
    *,
    default_charset: str = "utf-8",
    sender_charsets: Mapping[str, str] | None = None,
) -> str:
    """The message for a dead-letter file: decoded in the set `decode_message` would use where that
    is known, otherwise in the default, every undecodable byte kept as `\\xNN`, so nothing of it
    is lost."""
    msh = _read_msh(data)
    codec = default_charset
    if msh is not None:
        with contextlib.suppress(SourceParseError):  # an MSH-18 we refuse: shown in the default
            codec = _choose(_charset_field(msh)[0], msh, default_charset, sender_charsets)[0]
    return data.decode(codec, errors="backslashreplace")
