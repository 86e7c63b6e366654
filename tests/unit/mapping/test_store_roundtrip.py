"""Every golden case that maps cleanly also stores through the pipeline, and storing it again changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.mapping.inbound import Inbound
from adapter.wiring import build_services
from tests.unit.mapping.golden import cases, record_for, registry

REG = registry()
#: every golden case that maps without errors, including the three CSV artefacts (care plan, risk
#: assessment, discharge summary), which the england-cmht/wales-measure packs now accept as mapped
CLEAN = [
    c
    for c in cases()
    if not any(
        i.is_blocking
        for i in Inbound.map(
            Inbound(None, REG),
            REG.get(c.parent.name),  # type: ignore[arg-type]
            record_for(c),
        ).issues
    )
]


@pytest.fixture
def services(settings):
    s = build_services(settings)
    yield s
    s.close()


@pytest.mark.parametrize("case", CLEAN, ids=[f"{c.parent.name}/{c.name}" for c in CLEAN])
def test_clean_case_stores_once(services, case: Path):
    inbound = Inbound(services.pipeline, REG)
    spec = REG.get(case.parent.name)
    first = inbound.ingest(spec, record_for(case))
    assert first.status == "stored", [
        (i.severity, i.expression, i.text) for i in first.issues if i.is_blocking
    ]
    total = (services.repo.count(), services.repo.history(None, None, count=1, offset=0).total)
    second = inbound.ingest(spec, record_for(case))
    assert second.status == "unchanged"
    assert (
        services.repo.count(),
        services.repo.history(None, None, count=1, offset=0).total,
    ) == total


def _totals(services) -> tuple[int, int]:
    return services.repo.count(), services.repo.history(None, None, count=1, offset=0).total


@pytest.mark.parametrize("case", CLEAN, ids=[f"{c.parent.name}/{c.name}" for c in CLEAN])
def test_clean_case_stores_once_in_a_batch(services, case: Path):
    inbound = Inbound(services.pipeline, REG)
    spec = REG.get(case.parent.name)
    [first] = inbound.ingest_batch(spec, [record_for(case)])
    assert first.status == "stored", [
        (i.severity, i.expression, i.text) for i in first.issues if i.is_blocking
    ]
    total = _totals(services)
    [second] = inbound.ingest_batch(spec, [record_for(case)])
    assert second.status == "unchanged", second.written
    assert _totals(services) == total


def test_rows_in_one_batch_see_each_other_and_fail_alone(services):
    """Two plans for one new patient in one commit make one Patient; a bad row is rejected alone."""
    from adapter.sources import read_extract

    case = next(c for c in CLEAN if c.name == "cpa-england")
    header, row = (case / "input.csv").read_text().splitlines()[:2]
    second = row.replace("CP-2026-0101", "CP-2026-0102")
    bad = row.replace("CP-2026-0101", "CP-2026-0103").replace("9990000018", "9990000017")
    records = list(read_extract("\n".join([header, row, bad, second]).encode(), "plans.csv"))
    inbound = Inbound(services.pipeline, REG)
    outcomes = inbound.ingest_batch(REG.get("csv-care-plan"), records)
    assert [o.status for o in outcomes] == ["stored", "rejected", "stored"]
    assert outcomes[1].issues[0].expression == "nhs_number"
    assert services.repo.count("Patient") == 1
    again = inbound.ingest_batch(REG.get("csv-care-plan"), [records[0], records[2]])
    assert [o.status for o in again] == ["unchanged", "unchanged"]
