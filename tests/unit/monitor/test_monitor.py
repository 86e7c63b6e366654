"""The timescale monitor: stored records judged again at a later instant (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapter.clock import FixedClock
from adapter.mapping.inbound import Inbound
from adapter.mapping.loader import load_registry
from adapter.monitor import sweep
from adapter.sources import read_extract
from adapter.wiring import build_services
from tests.support.referrals import nhs_number, referral_bundle

ROOT = Path(__file__).resolve().parents[3]
WRITTEN_AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # two hours after the referral's authoredOn


@pytest.fixture
def services(settings):
    s = build_services(settings, clock=FixedClock(WRITTEN_AT))
    yield s
    s.close()


def _referral(services, priority: str, **changes) -> str:
    bundle = referral_bundle(nhs_number(40 + len(priority)), priority=priority)
    bundle["entry"][-1]["resource"].update(changes)
    response = services.pipeline.transaction(bundle)
    ref = next(
        e["fullUrl"] for e in response["entry"] if e["fullUrl"].startswith("ServiceRequest/")
    )
    return ref.split("/")[1]


def _sweep(services, at: datetime, **kwargs):
    ctx = services.pipeline.context(mode="validate")
    ctx.clock = FixedClock(at)
    return list(sweep(services.repo, services.policy, ctx, **kwargs))


def _rules(breaches, resource_id: str) -> set[str]:
    return {b.rule_id for b in breaches if b.id == resource_id}


def test_an_urgent_referral_with_no_assessment_breaches_once_its_deadlines_pass(services):
    sr = referral_bundle(nhs_number(61), priority="urgent")["entry"][-1]["resource"]
    assert sr["resourceType"] == "ServiceRequest"
    assert sr["authoredOn"] == "2026-11-20T10:00:00+00:00"
    sr_id = _referral(services, "urgent")
    # within 72 hours of authoredOn: nothing is due yet
    assert _rules(_sweep(services, datetime(2026, 11, 22, 9, 0, tzinfo=UTC)), sr_id) == set()
    # 96 hours on: the 72-hour assessment deadline has passed with no assessment recorded
    late = _sweep(services, datetime(2026, 11, 24, 10, 0, tzinfo=UTC))
    assert "S000-ASM-04" in _rules(late, sr_id)
    breach = next(b for b in late if b.id == sr_id and b.rule_id == "S000-ASM-04")
    assert breach.resource_type == "ServiceRequest"
    assert breach.version_id == 1
    assert breach.citation.startswith("000_d2f535f8876d1512.txt:415-417")
    assert "not recorded and due by 2026-11-23" in str(breach.detail)
    # a week on, the 5-working-day appointment deadline has passed too
    later = _sweep(services, datetime(2026, 11, 28, 10, 0, tzinfo=UTC))
    assert {"S000-ASM-04", "LPT-CMHT-REF-04-URGENT"} <= _rules(later, sr_id)


def test_an_assessment_recorded_in_time_clears_the_breach(services):
    sr_id = _referral(services, "urgent", occurrenceDateTime="2026-11-21T15:00:00+00:00")
    assert _rules(_sweep(services, datetime(2026, 12, 10, tzinfo=UTC)), sr_id) == set()


def test_closed_records_are_left_out_unless_asked_for(services):
    sr_id = _referral(services, "urgent", status="completed")
    at = datetime(2026, 11, 28, tzinfo=UTC)
    assert _rules(_sweep(services, at), sr_id) == set()
    assert "S000-ASM-04" in _rules(_sweep(services, at, include_closed=True), sr_id)


def test_a_mapped_follow_up_task_breaches_72_hours_after_discharge(services):
    inbound = Inbound(services.pipeline, load_registry(ROOT / "mappings"))
    spec = inbound.registry.get("csv-discharge-summary")
    data = (
        ROOT / "fixtures/mappings/csv-discharge-summary/home-with-follow-up/input.csv"
    ).read_bytes()
    [outcome] = [inbound.ingest(spec, r) for r in read_extract(data, "input.csv")]
    assert outcome.status == "stored", outcome.issues
    task_id = next(ref for ref in outcome.written if ref.startswith("Task/")).split("/")[1]
    # discharged 2026-12-04 10:30: on the next day nothing is due, four days on 72 hours have passed
    assert _rules(_sweep(services, datetime(2026, 12, 5, 10, 0, tzinfo=UTC)), task_id) == set()
    late = _rules(_sweep(services, datetime(2026, 12, 8, 10, 0, tzinfo=UTC)), task_id)
    assert "LPT-ADM-05" in late
    breaches = _sweep(services, datetime(2026, 12, 8, 10, 0, tzinfo=UTC))
    assert all(json.dumps(b.as_json()).find("9990000018") < 0 for b in breaches)
