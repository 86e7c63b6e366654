"""A per-sender character set (`Settings.v2_sender_charsets`, keyed `MSH-3|MSH-4`): Windows-1252
bytes labelled `8859/1` by a sender configured as cp1252 are stored exactly, while every other
sender is still decoded by its own MSH-18 and refused when that is wrong.

Precedence: the override replaces an empty MSH-18 and single-byte labels; a UTF-8 label and an
MSH-18 we refuse still decide. Store tests run on SQLite and PostgreSQL (the `settings` fixture);
`services` and `inbound` are test_inbound.py's fixtures, the CLI helpers test_ingest_cli.py's. All
data synthetic; NHS numbers from the 999 range.
"""

from __future__ import annotations

import logging

import pydantic
import pytest

from adapter.cli import app
from adapter.mapping.inbound import Inbound
from adapter.settings import Settings
from adapter.sources.hl7v2 import parse_message, read_messages, split_messages
from adapter.sources.record import ERROR_KEY
from adapter.sources.v2_ack import envelope
from adapter.sources.v2_charset import sender_key
from adapter.store.repository import SearchQuery
from tests.unit.cli import test_ingest_cli as _cli
from tests.unit.cli.test_ingest_cli_charset import _given_names
from tests.unit.mapping import test_inbound as _shared
from tests.unit.mapping.golden import registry
from tests.unit.mapping.test_v2_charset import (
    ZOE,
    _assert_refused_naming_msh_18,
    _patient_given_names,
    _segments,
    referral,
)

services = _shared.services  # fixtures, reused: the store on SQLite and PostgreSQL, and an Inbound
inbound = _shared.inbound
store = _cli.store  # an empty SQLite store the CLI reaches through the environment
runner, _row, _dead_letters = _cli.runner, _cli._row, _cli._dead_letters

EMIS = "EMIS|Y12345"  # MSH-3|MSH-4 of the REF^I12 fixture
O_BRIEN = (
    "O\u2019Brien"  # RIGHT SINGLE QUOTATION MARK: 0x92 in Windows-1252, a C1 control in 8859-1
)
REASON = "Depressive disorder \u2013 moderate"  # EN DASH: 0x96 in Windows-1252


def cp1252_referral(
    msh_18_value: str = "8859/1",
    *,
    sender: str = "EMIS|Y12345",
    nhs: str = "9990000018",
    control: str = "REF0001",
) -> bytes:
    """The fixture referral in Windows-1252: PID-5.2 O_BRIEN, RF1-10.2 with an en dash."""
    text = referral(msh_18_value, given=O_BRIEN, nhs=nhs, control=control)
    text = text.replace("^Depressive disorder", f"^{REASON}")
    text = text.replace("|EMIS|Y12345|", f"|{sender}|", 1)
    return text.encode("cp1252")


def _with_overrides(services, overrides: dict[str, str], *, default: str = "utf-8") -> Inbound:
    settings = Settings(v2_sender_charsets=overrides, v2_default_charset=default)
    return Inbound(
        services.pipeline,
        registry(),
        v2_default_charset=settings.v2_default_charset,
        v2_sender_charsets=settings.v2_sender_charsets,
    )


def _reason_texts(services) -> list[str]:
    page = services.repo.search("ServiceRequest", SearchQuery(count=50))
    return sorted(r.resource["reasonCode"][0]["text"] for r in page.resources)


# -- through Inbound.handle_v2, on the real store ------------------------------------------------


def test_cp1252_labelled_8859_1_is_refused_without_an_override_and_stored_exactly_with_one(
    services, inbound
):
    data = cp1252_referral("8859/1")
    assert b"O\x92Brien" in data
    assert b"disorder \x96 moderate" in data

    outcome, ack = inbound.handle_v2(data)

    assert outcome is None
    _assert_refused_naming_msh_18(ack)
    assert services.repo.count() == 0

    outcome, ack = _with_overrides(services, {EMIS: "cp1252"}).handle_v2(data)

    assert _segments(ack)[1].startswith("MSA|AA|REF0001"), ack
    assert outcome is not None
    assert outcome.status == "stored"
    assert _patient_given_names(services) == [O_BRIEN]
    assert _reason_texts(services) == [REASON]


@pytest.mark.parametrize("other", ["EMIS|Y99999", "RIO|Y12345", "EMIS-TEST|Y12345"])
def test_an_override_for_one_sender_leaves_another_senders_decoding_alone(services, other):
    overridden = _with_overrides(services, {EMIS: "cp1252"})

    outcome, ack = overridden.handle_v2(cp1252_referral("8859/1", sender=other))

    assert outcome is None
    _assert_refused_naming_msh_18(ack)
    assert "configured for sender" not in ack
    assert services.repo.count() == 0
    assert _segments(ack)[0].split("|")[4:6] == other.split("|"), "the AR goes back to its sender"


def test_an_override_applies_when_msh_18_is_empty_over_the_default(services, inbound):
    data = cp1252_referral("")

    outcome, ack = inbound.handle_v2(data)  # the UTF-8 default refuses 0x92
    assert outcome is None
    _assert_refused_naming_msh_18(ack)
    latin1_default = _with_overrides(services, {}, default="latin-1")
    outcome, ack = latin1_default.handle_v2(data)  # a C1 control byte in ISO 8859-1
    assert outcome is None
    _assert_refused_naming_msh_18(ack)
    assert services.repo.count() == 0

    overridden = _with_overrides(services, {EMIS: "cp1252"}, default="latin-1")
    outcome, ack = overridden.handle_v2(data)

    assert _segments(ack)[1].startswith("MSA|AA|REF0001"), ack
    assert outcome is not None
    assert outcome.status == "stored"
    assert _patient_given_names(services) == [O_BRIEN]
    assert _reason_texts(services) == [REASON]


def test_a_utf8_label_is_kept_over_an_override_so_utf8_is_never_stored_garbled(services):
    """UTF-8 checks itself; read as cp1252 the same bytes would be stored as `ZoÃ«` silently
    (the sender fixed, the override forgotten)."""
    overridden = _with_overrides(services, {EMIS: "cp1252"})

    outcome, ack = overridden.handle_v2(referral("UNICODE UTF-8", given=ZOE).encode("utf-8"))

    assert _segments(ack)[1].startswith("MSA|AA|REF0001"), ack
    assert outcome is not None
    assert outcome.status == "stored"
    assert _patient_given_names(services) == [ZOE]


@pytest.mark.parametrize("value", ["UNICODE UTF-16", "UNICODE", "BIG-5", "ISO IR87", "8859/99"])
def test_an_msh_18_we_refuse_is_refused_even_from_an_overridden_sender(services, value):
    overridden = _with_overrides(services, {EMIS: "cp1252"})

    outcome, ack = overridden.handle_v2(cp1252_referral(value))

    assert outcome is None
    _assert_refused_naming_msh_18(ack)
    assert services.repo.count() == 0


def test_the_override_codec_is_strict_and_the_refusal_names_the_sender_setting(services):
    data = cp1252_referral("8859/1").replace(b"O\x92Brien", b"O\x81Brien")  # 0x81: no cp1252 char
    offset = data.index(b"O\x81Brien") + 1

    outcome, ack = _with_overrides(services, {EMIS: "cp1252"}).handle_v2(data)

    assert outcome is None
    _assert_refused_naming_msh_18(ack)
    assert f"Byte offset {offset} is not valid cp1252 (configured for sender EMIS\\F\\Y12345" in ack
    assert "\ufffd" not in ack
    assert services.repo.count() == 0


# -- decoding, without a store -------------------------------------------------------------------


def test_every_entry_point_takes_the_sender_charsets():
    data = cp1252_referral("8859/1")
    overrides = {EMIS: "cp1252"}

    assert parse_message(data, sender_charsets=overrides).values["PID-5.2"] == O_BRIEN
    [text] = split_messages(data, sender_charsets=overrides)
    assert O_BRIEN in text
    [record] = read_messages(data, "one.hl7", sender_charsets=overrides)
    assert record.values["RF1-10.2"] == REASON
    [refused] = read_messages(data, "one.hl7")
    assert refused.header[ERROR_KEY].startswith("MSH-18: Byte offset ")


@pytest.mark.parametrize(
    "data",
    [
        b"MSH|^~\\&|EMIS|Y12345|CMH|CMHT|20261120||REF^I12|C1|P|2.5.1",
        b"\x0b\r\nMSH|^~\\&| EMIS ^1.2.826^ISO|Y12345^^L|CMH\rPID|1",
        b"MSH#$%\\&#EMIS$X#Y12345#CMH#CMHT#20261120##REF$I12#C1#P#2.5.1",
        b"MSH|^~\\&|EM\xcfS|Y12345|CMH|CMHT\rPID|1",  # not ASCII: empty, never a guessed match
        b"MSH|^~\\&|EMIS\rPID|1",
        b"MSH|^~",
    ],
)
def test_the_sender_key_is_read_exactly_as_the_envelope_reads_it(data):
    header = envelope(data)
    expected = f"{header.get('sending_application', '')}|{header.get('sending_facility', '')}"
    assert sender_key(data) == expected


def test_a_truncated_or_missing_msh_has_no_sender():
    assert sender_key(b"PID|1") is None
    assert sender_key(b"MSH|^~") == "|"  # matches no key: Settings refuses empty parts


# -- the setting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"EMIS|Y12345": "no-such-codec"}, "EMIS|Y12345"),
        ({"EMIS|Y12345": "utf-16"}, "EMIS|Y12345"),
        ({"RIO|RT5": "cp1252", "EMIS|Y12345": "cp500"}, "EMIS|Y12345"),
        ({"EMIS": "cp1252"}, "'EMIS'"),
        ({"EMIS|": "cp1252"}, "'EMIS|'"),
        ({"|Y12345": "cp1252"}, "'|Y12345'"),
        ({"EMIS|Y12345|X": "cp1252"}, "EMIS|Y12345|X"),
        ({"EMIS^1|Y12345": "cp1252"}, "EMIS^1|Y12345"),
        ({" EMIS|Y12345": "cp1252"}, "' EMIS|Y12345'"),
    ],
)
def test_an_invalid_sender_charset_stops_start_up_naming_the_key(overrides, named):
    with pytest.raises(pydantic.ValidationError) as caught:
        Settings(v2_sender_charsets=overrides)
    assert "v2_sender_charsets" in str(caught.value)
    assert named in str(caught.value)


def test_sender_charsets_come_from_the_environment_as_json_and_are_normalised(monkeypatch):
    monkeypatch.setenv(
        "ADAPTER_V2_SENDER_CHARSETS", '{"RIO|RT5": "Windows-1252", "EMIS|Y12345": "latin-1"}'
    )
    assert Settings().v2_sender_charsets == {"RIO|RT5": "cp1252", "EMIS|Y12345": "iso8859-1"}
    monkeypatch.setenv("ADAPTER_V2_SENDER_CHARSETS", '{"RIO|RT5": "utf-16"}')
    with pytest.raises(pydantic.ValidationError, match=r"sender 'RIO\|RT5': 'utf-16'"):
        Settings()
    monkeypatch.delenv("ADAPTER_V2_SENDER_CHARSETS")
    assert Settings().v2_sender_charsets == {}


# -- adapter ingest ------------------------------------------------------------------------------


def test_adapter_ingest_stores_a_file_from_an_overridden_sender_and_refuses_the_other(
    store, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("ADAPTER_V2_SENDER_CHARSETS", '{"EMIS|Y12345": "cp1252"}')
    messages = [
        cp1252_referral("8859/1", nhs="9990000018", control="REF0001"),
        cp1252_referral("8859/1", sender="RIO|RT5", nhs="9990000026", control="REF0002"),
    ]
    path = tmp_path / "rio-and-emis.hl7"
    path.write_bytes(b"\r\n".join(m.replace(b"\r", b"\r\n").rstrip() for m in messages))

    with caplog.at_level(logging.INFO, logger="adapter.cli_ingest"):
        result = runner.invoke(app, ["ingest", "--mapping", "hl7v2-ref-i12-referral", str(path)])

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert _row(result.output, "stored") == 1
    assert _row(result.output, "rejected") == 1
    assert _given_names(store) == [O_BRIEN]
    [dead] = _dead_letters(tmp_path / "dead-letter.jsonl")
    assert dead["locator"] == "rio-and-emis.hl7 message 2"
    assert "MSH-18: Byte offset" in dead["reasons"][0]["text"]
    [started] = [r for r in caplog.records if "overrides in force" in r.getMessage()]
    assert started.getMessage() == "v2 sender character-set overrides in force: 1"
    assert started.levelno == logging.WARNING
    assert "Brien" not in started.getMessage()
