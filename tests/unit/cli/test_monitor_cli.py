"""`adapter monitor` through typer's runner over a real SQLite store: exit code, table and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapter.cli import app

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "mappings"
runner = CliRunner()


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTER_DATABASE_URL", f"sqlite:///{tmp_path / 'monitor.sqlite3'}")
    monkeypatch.setenv("ADAPTER_AUTO_MIGRATE", "true")
    monkeypatch.chdir(tmp_path)
    csv = FIXTURES / "csv-discharge-summary" / "home-with-follow-up" / "input.csv"
    ingested = runner.invoke(app, ["ingest", "--mapping", "csv-discharge-summary", str(csv)])
    assert ingested.exit_code == 0, ingested.output


def test_nothing_due_yet_exits_zero(store):
    result = runner.invoke(app, ["monitor", "--now", "2026-12-05T09:00:00+00:00"])
    assert result.exit_code == 0, result.output
    assert "0 breach(es)" in result.output


def test_an_overdue_follow_up_is_listed_as_json_and_exits_one(store):
    result = runner.invoke(app, ["monitor", "--now", "2026-12-08T10:00:00+00:00", "--json"])
    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    follow_up = [b for b in lines if b["rule"] == "LPT-ADM-05"]
    assert len(follow_up) == 1
    assert follow_up[0]["resource"].startswith("Task/")
    assert follow_up[0]["citation"].startswith("001_8d61c32d75af2131.txt:10860-10862")
    assert "9990000018" not in result.output  # ids, rules and citations; never the patient


def test_the_table_names_the_rule_and_the_finding(store):
    result = runner.invoke(app, ["monitor", "--now", "2026-12-08T10:00:00+00:00"])
    assert result.exit_code == 1
    assert "LPT-ADM-05" in result.output
    assert "breach(es)" in result.output


@pytest.mark.parametrize("bad", ["yesterday", "2026-12-08T10:00:00"])
def test_a_bad_now_is_a_usage_error(store, bad):
    result = runner.invoke(app, ["monitor", "--now", bad])
    assert result.exit_code == 2
