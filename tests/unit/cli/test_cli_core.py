"""`adapter validate` and `adapter db upgrade`, through typer's runner (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from adapter.cli import app

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "referrals"
runner = CliRunner()


def _outcomes(output: str) -> list[dict]:
    """Splits the `# file` headed JSON documents printed by `adapter validate`."""
    docs, current = [], []
    for line in output.splitlines():
        if line.startswith("# "):
            if current:
                docs.append(json.loads("\n".join(current)))
            current = []
        else:
            current.append(line)
    if current:
        docs.append(json.loads("\n".join(current)))
    return docs


def test_validate_valid_referral_exits_zero():
    result = runner.invoke(app, ["validate", str(FIXTURES / "valid-urgent-referral.json")])
    assert result.exit_code == 0, result.output
    (oo,) = _outcomes(result.stdout)
    assert oo["resourceType"] == "OperationOutcome"
    assert all(i["severity"] not in ("error", "fatal") for i in oo["issue"])


def test_validate_invalid_referral_exits_one_and_names_the_field():
    result = runner.invoke(
        app,
        [
            "validate",
            str(FIXTURES / "valid-routine-referral.json"),
            str(FIXTURES / "invalid-nhs-number.json"),
        ],
    )
    assert result.exit_code == 1
    ok, bad = _outcomes(result.stdout)
    assert all(i["severity"] != "error" for i in ok["issue"])
    assert "Bundle.entry[0].resource.identifier[0].value" in [
        e for i in bad["issue"] for e in i.get("expression", [])
    ]


def test_validate_unreadable_file_is_a_fatal_outcome(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = runner.invoke(app, ["validate", str(broken)])
    assert result.exit_code == 1
    (oo,) = _outcomes(result.stdout)
    assert oo["issue"][0]["severity"] == "fatal"


def test_db_upgrade_creates_the_schema(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/fresh.sqlite3"
    monkeypatch.setenv("ADAPTER_DATABASE_URL", url)
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    tables = set(sa.inspect(sa.create_engine(url)).get_table_names())
    assert {"resource_version", "resource_current", "search_index", "alembic_version"} <= tables
    again = runner.invoke(app, ["db", "upgrade"])
    assert again.exit_code == 0
