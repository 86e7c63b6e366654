"""Every golden case that maps cleanly also stores through the pipeline, and storing it again changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.mapping.inbound import Inbound
from adapter.wiring import build_services
from tests.unit.mapping.golden import cases, record_for, registry

REG = registry()
#: mapped cleanly, but the england-cmht/wales-measure policy packs still refuse them: they need
#: review-date and responsible-person extensions and discharge-letter content the RiO-style extracts
#: here do not carry yet (reported to the policy owner; see docs/mappings.md "Known gaps")
POLICY_GAPS = ("csv-care-plan", "csv-risk-assessment", "csv-discharge-summary")
CLEAN = [c for c in cases() if c.parent.name not in POLICY_GAPS and not any(i.is_blocking for i in
                                       Inbound.map(Inbound(None, REG), REG.get(c.parent.name),  # type: ignore[arg-type]
                                                   record_for(c)).issues)]


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
    assert first.status == "stored", [(i.severity, i.expression, i.text) for i in first.issues if i.is_blocking]
    total = (services.repo.count(), services.repo.history(None, None, count=1, offset=0).total)
    second = inbound.ingest(spec, record_for(case))
    assert second.status == "unchanged"
    assert (services.repo.count(), services.repo.history(None, None, count=1, offset=0).total) == total
