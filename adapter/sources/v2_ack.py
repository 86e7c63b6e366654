"""The ACK that answers an HL7 v2 message (MSH, MSA, one ERR per issue), and the envelope fields an
ACK echoes when the message itself could not be parsed or decoded.

ERR-2 names the field (`PID^1^3`) from the issue's expression, parsed with the same key shape as the
record's keys (`hl7v2._KEY`). The ACK is 7-bit ASCII (`ascii_safe`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Final

from adapter.issue import Issue
from adapter.sources.hl7v2 import _KEY


def envelope(data: str | bytes) -> dict[str, str]:
    """The MSH fields an ACK echoes (the header keys of `parse_message`), read best-effort from a
    message that could not be parsed or decoded, so even its AR names the message it answers
    (MSA-2 = MSH-10) and goes back to its sender. A field that is not plain ASCII is left empty:
    envelope fields are, and nothing else of the message is read."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8", errors="replace")
    start = raw.find(b"MSH")
    if start < 0:
        return {}
    end = min(
        (i for i in (raw.find(b"\r", start), raw.find(b"\n", start)) if i >= 0), default=len(raw)
    )
    msh = raw[start:end]
    if len(msh) < 8:
        return {}
    fields = msh.split(msh[3:4])
    component = msh[4:5]

    def first(number: int, index: int = 0) -> str:
        # MSH-1 is the separator itself, so MSH-n is fields[n - 1]
        if len(fields) < number:
            return ""
        parts = fields[number - 1].split(component)
        if len(parts) <= index:
            return ""
        try:
            return parts[index].decode("ascii").strip()
        except UnicodeDecodeError:
            return ""

    return {
        "message_type": first(9),
        "trigger": first(9, 1),
        "control_id": first(10),
        "version": first(12),
        "sending_application": first(3),
        "sending_facility": first(4),
        "receiving_application": first(5),
        "receiving_facility": first(6),
    }


# -- acknowledgements -----------------------------------------------------------------------------
AckCode = str  # "AA" | "AE" | "AR"

_ERR_SEVERITY: Final = {"fatal": "E", "error": "E", "warning": "W", "information": "I"}


def _escape(text: str) -> str:
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
        .replace("\r", " ")
        .replace("\n", " ")
    )


def ascii_safe(text: str) -> str:
    """`text` in 7-bit ASCII: each other character as an HL7 hexadecimal escape of its UTF-8 bytes
    (`ë` -> `\\XC3AB\\`). An ACK leaves MSH-18 empty, which table 0211 reads as ASCII, so this keeps
    it true: a sender in any ASCII-compatible set (Latin-1, UTF-8) reads the same bytes, and nothing
    echoed from its message is lost. ACK fields are short, so the per-character path is cheap."""
    if text.isascii():
        return text
    return "".join(
        char if char.isascii() else f"\\X{char.encode('utf-8').hex().upper()}\\" for char in text
    )


def _location(expression: str | None) -> str:
    """`PID-3.1` -> ERR-2 `PID^1^3^^1` (segment, sequence, field, repetition, component)."""
    if not expression:
        return ""
    m = _KEY.match(expression)
    if m is None:
        return ""
    comp = m["rest"].lstrip(".").split(".")[0] if m["rest"].startswith(".") else ""
    return f"{m['seg']}^{m['occ'] or 1}^{m['field']}^^{comp}".rstrip("^")


def build_ack(
    header: dict[str, str],
    code: AckCode,
    issues: Iterable[Issue],
    *,
    now: datetime,
    control_id: str,
) -> str:
    """An ACK (MSH, MSA, one ERR per issue that is not information) as `\\r`-separated ASCII
    text (`ascii_safe`).

    ERR-2 names the field (`PID^1^3`), ERR-3 carries HL7 table 0357 code 207 (application error) or
    101 (required field missing), ERR-4 the severity, ERR-8 the user message.
    """
    stamp = now.strftime("%Y%m%d%H%M%S%z")
    trigger = header.get("trigger", "")
    msh = "|".join(
        [
            "MSH",
            "^~\\&",
            header.get("receiving_application") or "CMH-ADAPTER",
            header.get("receiving_facility", ""),
            header.get("sending_application", ""),
            header.get("sending_facility", ""),
            stamp,
            "",
            f"ACK^{trigger}^ACK" if trigger else "ACK",
            control_id,
            "P",
            header.get("version") or "2.5.1",
        ]
    )
    first_text = ""
    errs: list[str] = []
    for issue in issues:
        if issue.severity == "information":
            continue
        first_text = first_text or issue.text
        hl7_code = (
            "101^Required field missing^HL70357"
            if issue.code == "required"
            else "207^Application internal error^HL70357"
        )
        errs.append(
            "|".join(
                [
                    "ERR",
                    "",
                    _location(issue.expression),
                    hl7_code,
                    _ERR_SEVERITY[issue.severity],
                    "",
                    "",
                    "",
                    _escape(f"{issue.expression or ''}: {issue.text}".lstrip(": ")),
                ]
            )
        )
    msa = "|".join(["MSA", code, header.get("control_id", ""), _escape(first_text)[:80]]).rstrip(
        "|"
    )
    return ascii_safe("\r".join([msh, msa, *errs]))
