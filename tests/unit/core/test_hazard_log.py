"""The hazard log's guarding tests exist: a renamed or deleted test must not leave a hazard
"mitigated" on paper only (STYLE: no guarding test means it stays open)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
LOG = ROOT / "docs" / "clinical-safety" / "hazard-log.md"
NODE = re.compile(r"`(tests/[^`:]+\.py)::([A-Za-z_][A-Za-z0-9_]*)(\[[^`]*\])?`")


def _rows() -> list[list[str]]:
    rows = []
    for line in LOG.read_text(encoding="utf-8").splitlines():
        if line.startswith("| HAZ-"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_the_log_has_hazards_with_unique_ids():
    ids = [row[0] for row in _rows()]
    assert len(ids) >= 20
    assert len(ids) == len(set(ids))


def test_every_mitigated_hazard_names_a_guarding_test_that_exists():
    problems = []
    for row in _rows():
        hazard_id, guarding, status = row[0], row[5], row[-1]
        nodes = NODE.findall(guarding)
        if status == "mitigated" and not nodes:
            problems.append(f"{hazard_id}: mitigated without a guarding test")
        for path, name, _params in nodes:
            file = ROOT / path
            if not file.exists():
                problems.append(f"{hazard_id}: {path} does not exist")
            elif not re.search(rf"^(async )?def {name}\(", file.read_text(), re.MULTILINE):
                problems.append(f"{hazard_id}: {path} has no test {name}")
    assert problems == []
