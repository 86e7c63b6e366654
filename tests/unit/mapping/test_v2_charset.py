"""HL7 v2 bytes are decoded strictly in the character set MSH-18 names (or the configured default),
and a message that cannot be decoded is refused naming MSH-18, never stored altered.

Store tests run on SQLite and PostgreSQL (the `settings` fixture); `services` and `inbound` are
test_inbound.py's fixtures. All data synthetic; NHS numbers from the 999 range.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pydantic
import pytest

from adapter.errors import SourceParseError
from adapter.mapping.inbound import Inbound
from adapter.settings import Settings
from adapter.sources.hl7v2 import parse_message, read_messages, split_messages
from adapter.sources.record import ERROR_KEY
from adapter.sources.v2_ack import build_ack
from adapter.sources.v2_charset import TABLE_0211_CODECS, decode_message, msh_18
from adapter.store.repository import SearchQuery
from tests.unit.mapping import test_inbound as _shared
from tests.unit.mapping.golden import FIXTURES, registry

services = _shared.services  # fixtures, reused: the store on SQLite and PostgreSQL, and an Inbound
inbound = _shared.inbound

REFERRAL = (FIXTURES / "hl7v2-ref-i12-referral" / "routine-gp-referral" / "input.hl7").read_text()
ZOE = "Zoë"


def referral(
    msh_18_value: str, *, given: str = ZOE, nhs: str = "9990000018", control: str = "REF0001"
) -> str:
    """The fixture referral as text, MSH-18 set (MSH-13..17 empty), PID-5.2 `given`."""
    msh, rest = REFERRAL.strip("\r\n").replace("\n", "\r").split("\r", 1)
    assert msh.count("|") == 11  # ends at MSH-12
    if msh_18_value:
        msh += "|" * 6 + msh_18_value
    text = f"{msh}\r{rest}".replace("Testperson^Alex", f"Testperson^{given}")
    text = text.replace("9990000018", nhs).replace("UBRN000070002", f"UBRN{control}")
    return text.replace("REF0001", control) + "\r"


def _patient_given_names(services) -> list[str]:
    page = services.repo.search("Patient", SearchQuery(count=50))
    return sorted(r.resource["name"][0]["given"][0] for r in page.resources)


def _segments(ack: str) -> list[str]:
    return ack.split("\r")


def _assert_refused_naming_msh_18(ack: str) -> None:
    segments = _segments(ack)
    assert segments[1].startswith("MSA|AR"), ack
    errs = [s for s in segments if s.startswith("ERR|")]
    assert errs, ack
    assert errs[0].split("|")[2] == "MSH^1^18"
    assert "Testperson" not in ack  # no patient data
    assert "Zo" not in ack
    assert "\ufffd" not in ack


# -- through Inbound.handle_v2, on the real store ------------------------------------------------


def test_a_latin1_message_labelled_8859_1_is_stored_with_the_name_exactly(services, inbound):
    data = referral("8859/1").encode("latin-1")
    assert b"Zo\xeb" in data

    outcome, ack = inbound.handle_v2(data)

    assert _segments(ack)[1].startswith("MSA|AA|REF0001"), ack
    assert outcome is not None
    assert outcome.status == "stored"
    assert _patient_given_names(services) == [ZOE]


def test_latin1_bytes_with_empty_msh_18_and_the_utf8_default_get_ar_and_nothing_is_stored(
    services, inbound
):
    data = referral("").encode("latin-1")

    offset = data.index(b"\xeb")

    outcome, ack = inbound.handle_v2(data)

    assert outcome is None
    _assert_refused_naming_msh_18(ack)
    assert f"Byte offset {offset} " in ack
    assert services.repo.count() == 0
    msh, msa = _segments(ack)[:2]
    assert msa.startswith("MSA|AR|REF0001|"), "the AR names the message it answers (MSH-10)"
    assert msh.split("|")[2:6] == ["CMH-ADAPTER", "CMHT", "EMIS", "Y12345"], "back to its sender"


def test_with_a_latin1_default_the_same_message_is_accepted(services):
    default = Settings(v2_default_charset="latin-1").v2_default_charset
    inbound = Inbound(services.pipeline, registry(), v2_default_charset=default)

    outcome, ack = inbound.handle_v2(referral("").encode("latin-1"))

    assert _segments(ack)[1].startswith("MSA|AA|REF0001"), ack
    assert outcome is not None
    assert outcome.status == "stored"
    assert _patient_given_names(services) == [ZOE]


@pytest.mark.parametrize(
    "value",
    ["8859/99", "latin1", "unicode utf-8", "UNICODE", "UNICODE UTF-16", "BIG-5", "ISO IR87"],
)
def test_an_msh_18_value_we_do_not_decode_gets_ar_naming_msh_18(services, inbound, value):
    outcome, ack = inbound.handle_v2(referral(value).encode("utf-8"))

    assert outcome is None
    _assert_refused_naming_msh_18(ack)
    assert services.repo.count() == 0


def test_a_utf8_message_labelled_unicode_utf_8_is_accepted(services, inbound):
    outcome, ack = inbound.handle_v2(referral("UNICODE UTF-8").encode("utf-8"))

    assert _segments(ack)[1].startswith("MSA|AA|REF0001"), ack
    assert outcome is not None
    assert outcome.status == "stored"
    assert _patient_given_names(services) == [ZOE]


def test_windows_1252_text_labelled_8859_1_is_refused_not_stored_with_a_control_character(
    services, inbound
):
    """0x92 is a right single quote in Windows-1252 but a C1 control in ISO 8859-1: `O'Brien`
    would lose its apostrophe silently, so the message is refused."""
    data = referral("8859/1", given="O\u2019Brien").encode("cp1252")
    offset = data.index(b"O\x92Brien") + 1

    outcome, ack = inbound.handle_v2(data)

    assert outcome is None
    _assert_refused_naming_msh_18(ack)
    assert f"Byte offset {offset} " in ack
    assert services.repo.count() == 0
    msh, msa = _segments(ack)[:2]
    assert msa.startswith("MSA|AR|REF0001|"), "the AR names the message it answers (MSH-10)"
    assert msh.split("|")[2:6] == ["CMH-ADAPTER", "CMHT", "EMIS", "Y12345"], "back to its sender"


# -- decoding, without a store -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoding", "given"),
    [
        ("8859/1", "latin-1", ZOE),
        ("ISO IR100", "latin-1", ZOE),
        ("8859/15", "iso8859-15", "Zoë€"),
        ("8859/2", "iso8859-2", "Zoë Łucja"),
        ("UNICODE UTF-8", "utf-8", "Zoë 李"),
        ("ISO IR192", "utf-8", ZOE),
        ("8859/1~ISO IR87", "latin-1", ZOE),  # the first repetition is the message's default set
    ],
)
def test_msh_18_names_the_set_the_message_is_decoded_in(value, encoding, given):
    data = referral(value, given=given).encode(encoding)
    assert parse_message(data).values["PID-5.2"] == given


def test_table_0211_covers_the_sets_the_brief_names():
    for value in ["ASCII", "ISO IR6", "8859/15", "UNICODE UTF-8", "ISO IR100", "ISO IR192"]:
        assert value in TABLE_0211_CODECS
    assert [f"8859/{n}" in TABLE_0211_CODECS for n in range(1, 10)] == [True] * 9
    assert "UNICODE" not in TABLE_0211_CODECS  # ambiguous: refused, not guessed


@pytest.mark.parametrize(
    ("value", "data", "offset"),
    [
        ("ASCII", "Zoë".encode("latin-1"), 2),  # ASCII is 7-bit
        ("8859/3", b"Zo\xa5", 2),  # unassigned in ISO 8859-3
        ("UNICODE UTF-8", b"Zo\xeb", 2),  # a Latin-1 byte is not UTF-8
    ],
)
def test_bytes_invalid_in_the_named_set_are_refused_with_their_offset(value, data, offset):
    message = f"MSH|^~\\&|A|B|C|D|20261120||ADT^A01|X1|P|2.5.1||||||{value}\rPID|1||||".encode()
    with pytest.raises(SourceParseError) as caught:
        decode_message(message + data)
    [issue] = caught.value.issues
    assert issue.expression == "MSH-18"
    assert f"Byte offset {len(message) + offset} " in issue.text
    assert "Zo" not in issue.text


def test_iso_2022_code_switching_to_an_alternate_set_is_refused():
    message = b"MSH|^~\\&|A|B|C|D|20261120||ADT^A01|X1|P|2.5.1||||||ASCII~ISO IR87\rPID|1\x1b$B"
    with pytest.raises(SourceParseError) as caught:
        decode_message(message)
    assert caught.value.issues[0].expression == "MSH-18"
    assert "ISO 2022" in caught.value.issues[0].text


def test_msh_18_is_read_from_bytes_with_the_message_own_delimiters():
    message = b"\x0b\r\nMSH#$%\\&#A#B#C#D#20261120##ADT$A01#X1#P#2.5.1######8859/1%ISO IR87\rPID#1"
    assert msh_18(message) == ("8859/1", True)
    assert msh_18(b"MSH|^~\\&|A|B\rPID|1") == ("", False)
    assert msh_18(b"PID|1") is None


def test_text_is_taken_as_already_decoded():
    assert parse_message(referral("8859/1")).values["PID-5.2"] == ZOE


def test_the_ack_is_pure_ascii_and_keeps_what_it_echoes():
    ack = build_ack(
        {"sending_application": "ZOË-APP", "control_id": "C1"},
        "AA",
        [],
        now=datetime(2026, 11, 20, tzinfo=UTC),
        control_id="A1",
    )
    assert ack.isascii()
    assert "ZO\\XC38B\\-APP" in ack


# -- files: split as bytes, each message decoded by its own MSH-18 -------------------------------


def _mixed_file() -> bytes:
    latin1 = referral("8859/1", nhs="9990000018", control="REF0001").encode("latin-1")
    utf8 = referral("UNICODE UTF-8", given="Zoë", nhs="9990000026", control="REF0002")
    unlabelled = referral("", nhs="9990000034", control="REF0003").encode("latin-1")
    return b"\r\n".join(
        m.replace(b"\r", b"\r\n").rstrip() for m in (latin1, utf8.encode("utf-8"), unlabelled)
    )


def test_a_file_mixing_sets_reads_each_message_in_its_own_and_refuses_the_undecodable_one_alone(
    services, inbound
):
    records = read_messages(_mixed_file(), "mixed.hl7")

    assert [r.header.get("control_id") for r in records[:2]] == ["REF0001", "REF0002"]
    assert [r.values["PID-5.2"] for r in records[:2]] == [ZOE, ZOE]
    bad = records[2]
    assert bad.locator == "mixed.hl7 message 3"
    assert bad.header[ERROR_KEY].startswith("MSH-18: Byte offset ")
    assert "Zo" not in bad.header[ERROR_KEY]
    assert "Testperson^Zo\\xeb" in bad.raw  # the dead-letter text keeps the byte
    assert "REF0003" in bad.raw

    spec = registry().get("hl7v2-ref-i12-referral")
    outcomes = inbound.ingest_batch(spec, records)
    assert [o.status for o in outcomes] == ["stored", "stored", "rejected"]
    assert _patient_given_names(services) == [ZOE, ZOE]


def test_with_a_latin1_default_every_message_of_the_file_is_read():
    records = read_messages(_mixed_file(), "mixed.hl7", default_charset="iso8859-1")
    assert [ERROR_KEY in r.header for r in records] == [False, False, False]
    assert [r.values["PID-5.2"] for r in records] == [ZOE] * 3


def test_split_messages_refuses_at_the_first_undecodable_message():
    with pytest.raises(SourceParseError) as caught:
        list(split_messages(_mixed_file()))
    assert caught.value.issues[0].expression == "MSH-18"


def test_a_file_of_mllp_frames_splits_into_its_messages():
    frames = b"".join(
        b"\x0b" + referral(value, control=c).encode(enc) + b"\x1c\r"
        for value, enc, c in (("8859/1", "latin-1", "REF0001"), ("", "utf-8", "REF0002"))
    )
    records = read_messages(frames, "framed.hl7")
    assert [r.header.get("control_id") for r in records] == ["REF0001", "REF0002"]
    assert [r.values["PID-5.2"] for r in records] == [ZOE, ZOE]


# -- the setting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["no-such-codec", "utf-16", "cp500", "rot13"])
def test_a_default_charset_that_is_unknown_or_not_ascii_compatible_stops_start_up(value):
    with pytest.raises(pydantic.ValidationError) as caught:
        Settings(v2_default_charset=value)
    assert "v2_default_charset" in str(caught.value)


def test_the_default_charset_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("ADAPTER_V2_DEFAULT_CHARSET", "latin-1")
    assert Settings().v2_default_charset == "iso8859-1"
    assert Settings(_env_file=None).v2_default_charset == "iso8859-1"
    monkeypatch.delenv("ADAPTER_V2_DEFAULT_CHARSET")
    assert Settings().v2_default_charset == "utf-8"


def test_the_envelope_of_an_unreadable_message_is_read_from_ascii_fields_only():
    from adapter.sources.v2_ack import envelope

    data = referral("").encode("latin-1").replace(b"|REF0001|", b"|R\xe9F1|")
    header = envelope(b"\x0b" + data)
    assert header["control_id"] == "", "a non-ASCII field is left empty, not guessed"
    assert (header["sending_application"], header["trigger"]) == ("EMIS", "I12")
    assert envelope(b"not a message") == {}
    assert envelope("MSH|^~\\&|A|B|C|D|20261120||ADT^A01|X9|P|2.5.1")["control_id"] == "X9"
