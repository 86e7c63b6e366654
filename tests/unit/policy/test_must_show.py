"""The issue's must-show behaviours, each as a test."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from pathlib import Path

from adapter.clock import FixedClock
from adapter.context import ValidationContext
from adapter.issue import has_blocking
from adapter.outcome import operation_outcome
from adapter.policy import PolicyEngine, load_packs
from adapter.policy.calendar import add_working_days
from adapter.policy.scenarios import load_file
from adapter.policy.vocab import POLICY_OVERRIDE_URL

ROOT = Path(__file__).resolve().parents[3]
ENGINE = PolicyEngine(load_packs(ROOT / "profiles" / "policy", ["england-cmht"]))
CLOCK = FixedClock(datetime(2026, 12, 23, 12, tzinfo=UTC))


def _base(name: str) -> dict:
    return copy.deepcopy(load_file(ROOT / "fixtures" / "policy" / name)[0].resource)


def test_welsh_ctp_without_outcome_is_rejected_citing_the_code_of_practice() -> None:
    ctp = _base("wales-measure/ctp.yaml")
    del ctp["contained"][1]["category"]
    result = ENGINE.evaluate_traced(ctp, ValidationContext(clock=CLOCK))
    assert "wales-measure" in result.packs
    assert "england-cmht" not in result.packs
    [issue] = [i for i in result.issues if i.rule and i.rule.id == "W-CTP-07"]
    assert issue.severity == "error"
    assert has_blocking(result.issues)
    assert issue.rule is not None
    assert issue.rule.citation.startswith("002_b5b903ed5658e1bd.txt:2623")
    rendered = operation_outcome(result.issues)["issue"][0]
    assert rendered["details"]["coding"][0]["code"] == "W-CTP-07"
    assert "002_b5b903ed5658e1bd.txt" in rendered["diagnostics"]


def test_urgent_referral_due_date_counts_working_days_across_christmas() -> None:
    assert add_working_days(date(2026, 12, 23), 5) == date(2027, 1, 4)  # 25, 28 Dec and 1 Jan off
    assert add_working_days(date(2027, 3, 25), 2, "WLS") == date(2027, 3, 31)  # Easter 2027
    referral = _base("england-cmht/referral.yaml")
    referral["occurrenceDateTime"] = "2027-01-05T10:00:00Z"
    issues = ENGINE.evaluate(referral, ValidationContext(clock=CLOCK))
    [late] = [i for i in issues if i.rule and i.rule.id == "LPT-CMHT-REF-04-URGENT"]
    assert (
        late.diagnostics
        == "recorded 2027-01-05, due by 2027-01-04 (5 working days from 2026-12-23)"
    )
    referral["occurrenceDateTime"] = "2027-01-04T16:00:00Z"
    assert not [
        i
        for i in ENGINE.evaluate(referral, ValidationContext(clock=CLOCK))
        if i.rule and i.rule.id == "LPT-CMHT-REF-04-URGENT"
    ]


def test_should_warning_is_accepted_and_shown() -> None:
    referral = _base("england-cmht/referral.yaml")
    referral["occurrenceDateTime"] = (
        "2027-01-04T10:00:00Z"  # after 72 hours: S000-ASM-04 is a SHOULD
    )
    issues = ENGINE.evaluate(referral, ValidationContext(clock=CLOCK))
    assert [i.rule.id for i in issues if i.rule] == ["S000-ASM-04"]
    assert issues[0].severity == "warning"
    assert not has_blocking(issues)
    assert operation_outcome(issues)["issue"][0]["severity"] == "warning"


def _override(
    rule: str,
    reason: str | None = "EIP declined; consultant agreed",
    who: str | None = "Practitioner/dr-a",
) -> dict:
    parts: list[dict] = [{"url": "rule", "valueCode": rule}]
    if reason:
        parts.append({"url": "reason", "valueString": reason})
    if who:
        parts.append({"url": "author", "valueReference": {"reference": who}})
    return {"url": POLICY_OVERRIDE_URL, "extension": parts}


def test_must_override_is_recorded_with_reason_and_who() -> None:
    referral = _base("england-cmht/referral.yaml")
    referral["reasonCode"][0]["coding"][0]["code"] = "01"  # first-episode psychosis to a CMHT
    ctx = ValidationContext(clock=CLOCK)
    assert has_blocking(ENGINE.evaluate(referral, ctx))
    referral["extension"].append(_override("LPT-CMHT-ELIG-05-FEP"))
    issues = ENGINE.evaluate(referral, ctx)
    assert not has_blocking(issues)
    [issue] = issues
    assert issue.severity == "warning"
    assert issue.text.startswith("Overridden")
    assert issue.diagnostics == "overridden-by=Practitioner/dr-a"
    prov = ENGINE.overrides_provenance(referral, issues, ctx)
    assert prov is not None
    assert prov["target"] == [{"reference": "ServiceRequest/ref-1"}]
    assert prov["agent"][0]["who"] == {"reference": "Practitioner/dr-a"}
    assert prov["reason"][0]["text"] == "EIP declined; consultant agreed"
    assert prov["policy"] == ["https://fhir.cmh-adapter.example/rules/LPT-CMHT-ELIG-05-FEP"]


def test_incomplete_or_forbidden_override_still_blocks() -> None:
    referral = _base("england-cmht/referral.yaml")
    referral["reasonCode"][0]["coding"][0]["code"] = "01"
    referral["extension"].append(_override("LPT-CMHT-ELIG-05-FEP", reason=None))
    issues = ENGINE.evaluate(referral, ValidationContext(clock=CLOCK))
    assert has_blocking(issues)
    assert "needs a reason and an author" in str(issues[0].diagnostics)
    assert ENGINE.overrides_provenance(referral, issues, ValidationContext(clock=CLOCK)) is None
    referral = _base("england-cmht/referral.yaml")
    del referral["priority"]
    referral["extension"].append(_override("S000-REF-URG-01"))
    issues = ENGINE.evaluate(referral, ValidationContext(clock=CLOCK))
    assert has_blocking(issues)
    assert "cannot be overridden" in str(issues[0].diagnostics)


def test_from_settings_loads_wales_on_demand() -> None:
    from adapter.settings import Settings

    engine = PolicyEngine.from_settings(Settings(trust_overrides="trust-overrides"))
    assert engine.configured == ("england-cmht", "trust-overrides")
    assert engine.packs["wales-measure"].on_demand


def test_trust_override_disables_the_seven_day_follow_up() -> None:
    """D3: a Trust that monitors 72-hour follow-up switches the 7-day and 5-working-day rules off
    in data; only LPT-ADM-05 fires for a follow-up made after a week."""
    [late] = [
        s
        for s in load_file(ROOT / "fixtures" / "policy" / "trust-overrides" / "followup.yaml")
        if s.name == "after-a-week-only-72-hours-fires"
    ]
    tuned = PolicyEngine(
        load_packs(ROOT / "profiles" / "policy", ["england-cmht", "trust-overrides"])
    )
    fired = {i.rule.id for i in late.run(tuned).issues if i.rule}
    assert fired == {"LPT-ADM-05"}
    assert {"E-CPA-TRN-01", "S000-CPA-09"} <= {i.rule.id for i in late.run(ENGINE).issues if i.rule}
