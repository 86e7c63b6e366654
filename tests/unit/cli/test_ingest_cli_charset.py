"""`adapter ingest` over a v2 file whose messages use different character sets: each is decoded by
its own MSH-18, and one that cannot be decoded is dead-lettered alone, its bytes kept, the run going
on. ADAPTER_V2_DEFAULT_CHARSET decides the messages with an empty MSH-18."""

from __future__ import annotations

from adapter.cli import app
from adapter.settings import Settings
from adapter.store.repository import SearchQuery
from adapter.wiring import build_services
from tests.unit.cli import test_ingest_cli as _shared
from tests.unit.mapping.test_v2_charset import ZOE, referral

store = _shared.store  # fixture, reused: an empty SQLite store the CLI reaches through the env
runner, _row, _dead_letters = _shared.runner, _shared._row, _shared._dead_letters


def _feed(tmp_path):
    """Latin-1 labelled 8859/1, UTF-8 labelled UNICODE UTF-8, then Latin-1 with MSH-18 empty."""
    messages = [
        referral("8859/1", nhs="9990000018", control="REF0001").encode("latin-1"),
        referral("UNICODE UTF-8", nhs="9990000026", control="REF0002").encode("utf-8"),
        referral("", nhs="9990000034", control="REF0003").encode("latin-1"),
    ]
    path = tmp_path / "mixed.hl7"
    path.write_bytes(b"\r\n".join(m.replace(b"\r", b"\r\n").rstrip() for m in messages))
    return path


def _given_names(url: str) -> list[str]:
    services = build_services(Settings(database_url=url))
    try:
        page = services.repo.search("Patient", SearchQuery(count=50))
    finally:
        services.close()
    return sorted(r.resource["name"][0]["given"][0] for r in page.resources)


def test_a_mixed_charset_file_stores_both_readable_messages_and_dead_letters_the_third_alone(
    store, tmp_path
):
    path = _feed(tmp_path)

    result = runner.invoke(app, ["ingest", "--mapping", "hl7v2-ref-i12-referral", str(path)])

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert _row(result.output, "stored") == 2
    assert _row(result.output, "rejected") == 1
    assert _given_names(store) == [ZOE, ZOE]
    [dead] = _dead_letters(tmp_path / "dead-letter.jsonl")
    assert dead["locator"] == "mixed.hl7 message 3"
    assert "MSH-18: Byte offset" in dead["reasons"][0]["text"]
    assert "Zo" not in dead["reasons"][0]["text"]
    assert "Testperson^Zo\\xeb" in dead["original"]  # the undecodable byte is kept, not replaced
    assert "\ufffd" not in dead["original"]


def test_with_a_latin1_default_the_unlabelled_message_is_stored_too(store, tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTER_V2_DEFAULT_CHARSET", "latin-1")
    path = _feed(tmp_path)

    result = runner.invoke(app, ["ingest", "--mapping", "hl7v2-ref-i12-referral", str(path)])

    assert result.exit_code == 0, result.output
    assert _row(result.output, "stored") == 3
    assert _given_names(store) == [ZOE, ZOE, ZOE]
