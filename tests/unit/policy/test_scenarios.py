"""Every YAML scenario under fixtures/policy/ runs as one test (collected like fhirpath-py's cases)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.policy.scenarios import Scenario, engines_for, load_all

ROOT = Path(__file__).resolve().parents[3]
POLICY_DIR = ROOT / "profiles" / "policy"
SCENARIOS = load_all(ROOT / "fixtures" / "policy")
ENGINES = engines_for(SCENARIOS, POLICY_DIR)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_scenario(scenario: Scenario) -> None:
    result = scenario.run(ENGINES[scenario.packs])
    fired = {i.rule.id for i in result.issues if i.rule}
    missing = set(scenario.expect_fail) - fired
    assert not missing, f"expected to fire: {sorted(missing)}; fired: {sorted(fired)}"
    if scenario.expect_pass == "all":
        assert result.evaluated, "no rule applied to the base resource"
        assert not fired, f"expected a clean pass; fired: {sorted(fired)}"
    else:
        for rule_id in scenario.expect_pass:
            assert rule_id in result.evaluated, f"{rule_id} did not apply"
            assert rule_id not in fired, f"{rule_id} fired"
    for rule_id, severity in scenario.expect_severity.items():
        assert {i.severity for i in result.issues if i.rule and i.rule.id == rule_id} == {severity}
    for issue in result.issues:
        assert issue.rule is not None
        assert issue.rule.citation
        assert issue.expression
