"""`adapter ingest` end to end through typer's runner, into a real SQLite store: summary table,
exit codes, the dead-letter file, and unreadable input (rows, messages, whole files) that is
dead-lettered on its own instead of stopping the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapter.cli import app
from adapter.settings import Settings
from adapter.store.repository import SearchQuery
from adapter.wiring import build_services

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "mappings"
runner = CliRunner()


@pytest.fixture
def store(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ingest.sqlite3'}"
    monkeypatch.setenv("ADAPTER_DATABASE_URL", url)
    monkeypatch.setenv("ADAPTER_AUTO_MIGRATE", "true")
    monkeypatch.chdir(tmp_path)
    return url


def _count(url: str) -> int:
    services = build_services(Settings(database_url=url))
    try:
        return services.repo.count()
    finally:
        services.close()


def _dead_letters(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _row(table: str, key: str) -> int:
    line = next(line for line in table.splitlines() if f" {key} " in line)
    return int(line.split("│")[-2].strip())


def test_ingesting_a_csv_twice_stores_once_and_reports_unchanged(store, tmp_path):
    csv = FIXTURES / "csv-dialog" / "complete" / "input.csv"
    first = runner.invoke(app, ["ingest", "--mapping", "csv-dialog", str(csv)])
    assert first.exit_code == 0, first.output
    assert _row(first.output, "stored") == 1
    assert _row(first.output, "resources written") == 4
    count = _count(store)
    second = runner.invoke(app, ["ingest", "--mapping", "csv-dialog", str(csv)])
    assert second.exit_code == 0, second.output
    assert _row(second.output, "unchanged") == 1
    assert _row(second.output, "resources written") == 0
    assert _count(store) == count
    assert not (tmp_path / "dead-letter.jsonl").exists() or not _dead_letters(
        tmp_path / "dead-letter.jsonl"
    )


def test_a_malformed_row_is_dead_lettered_with_its_reason_and_the_good_rows_stored(store, tmp_path):
    header, row = (FIXTURES / "csv-dialog" / "complete" / "input.csv").read_text().splitlines()[:2]
    csv = tmp_path / "mixed.csv"
    csv.write_text("\n".join([header, "DLG-X-1,9990000018,too,few,cells", row]) + "\n")
    result = runner.invoke(app, ["ingest", "--mapping", "csv-dialog", str(csv)])
    assert result.exit_code == 1, result.output
    assert _row(result.output, "stored") == 1
    assert _row(result.output, "rejected") == 1
    [dead] = _dead_letters(tmp_path / "dead-letter.jsonl")
    assert dead["locator"] == "mixed.csv line 2"
    assert "5 cells for" in dead["reasons"][0]["text"]
    assert dead["original"].startswith("DLG-X-1,")


def test_an_unparseable_v2_message_is_dead_lettered_alone_and_the_file_goes_on(store, tmp_path):
    good = (FIXTURES / "hl7v2-oru-r01-dialog" / "complete" / "input.hl7").read_text()
    bad = "MSH|^~\\&|RIO|TRUST|CMH|ADAPTER|20261120||ORU^R01|BAD0001|P|2.5.1\rP-D|x\r"
    path = tmp_path / "feed.hl7"
    path.write_text(bad + "\n" + good)
    result = runner.invoke(app, ["ingest", "--mapping", "hl7v2-oru-r01-dialog", str(path)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert _row(result.output, "stored") == 1
    assert _row(result.output, "rejected") == 1
    [dead] = _dead_letters(tmp_path / "dead-letter.jsonl")
    assert dead["locator"] == "feed.hl7 message 1"
    assert "segment 2" in dead["reasons"][0]["text"]
    assert dead["original"].startswith("MSH|^~\\&|RIO|TRUST")
    assert _count(store) > 0


def test_an_unreadable_file_is_dead_lettered_and_the_next_file_is_ingested(store, tmp_path):
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"assessment_id,nhs_number\n\xff\xfe not utf-8\n")
    good = FIXTURES / "csv-dialog" / "complete" / "input.csv"
    result = runner.invoke(app, ["ingest", "--mapping", "csv-dialog", str(broken), str(good)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert _row(result.output, "stored") == 1
    assert _row(result.output, "rejected") == 1
    [dead] = _dead_letters(tmp_path / "dead-letter.jsonl")
    assert dead["locator"] == "broken.csv"
    assert "UTF-8" in dead["reasons"][0]["text"]


def test_a_file_with_the_discharge_before_the_admission_reports_what_was_superseded(
    store, tmp_path
):
    """HAZ-035 through the CLI: the A01 after its A03 writes nothing and the summary says so."""
    adt = FIXTURES / "hl7v2-adt-a01-a03-encounter"
    a01, a03 = (
        (adt / case / "input.hl7").read_text().strip() for case in ("admission", "discharge")
    )
    feed = tmp_path / "adt.hl7"
    feed.write_text(a03 + "\n" + a01 + "\n")
    result = runner.invoke(app, ["ingest", "--mapping", "hl7v2-adt-a01-a03-encounter", str(feed)])
    assert result.exit_code == 0, result.output
    assert (_row(result.output, "stored"), _row(result.output, "unchanged")) == (1, 1)
    assert _row(result.output, "resources superseded") == 2
    services = build_services(Settings(database_url=store))
    try:
        encounters = services.repo.search("Encounter", SearchQuery(count=10)).resources
    finally:
        services.close()
    assert [e.resource["status"] for e in encounters] == ["finished"]
