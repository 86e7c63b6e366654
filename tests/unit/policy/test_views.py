"""A Welsh CTP judged the same whether its Goals and CareTeam are contained or resources of their
own in the same transaction: the rules read a view with the referenced ones brought in."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest

from adapter.policy.scenarios import engines_for, load_file
from adapter.policy.views import care_plan_view

ROOT = Path(__file__).resolve().parents[3]
CTP = ROOT / "fixtures" / "policy" / "wales-measure" / "ctp.yaml"


@pytest.fixture(scope="module")
def valid_ctp():
    [scenario] = [s for s in load_file(CTP) if s.name == "valid-ctp"]
    engine = next(iter(engines_for([scenario], ROOT / "profiles" / "policy").values()))
    return scenario, engine


def _referenced(scenario, goal_changes: dict | None = None, drop_goal: bool = False):
    """The same CTP with its Goal and CareTeam sent as resources of their own."""
    plan = copy.deepcopy(scenario.resource)
    team, goal, crisis = plan.pop("contained")
    plan["contained"] = [crisis]
    plan["careTeam"] = [{"reference": "CareTeam/team"}]
    plan["goal"] = [{"reference": "Goal/g1"}]
    plan["activity"][0]["detail"]["goal"] = [{"reference": "Goal/g1"}]
    goal = {**goal, **(goal_changes or {})}
    extra = (dict(team, subject={"reference": "Patient/p1"}),) + (() if drop_goal else (goal,))
    return dataclasses.replace(scenario, resource=plan, bundle=(*scenario.bundle, *extra))


def _failed(scenario, engine) -> set[str]:
    return {
        i.rule.id
        for i in scenario.run(engine).issues
        if i.rule and i.severity in ("error", "fatal")
    }


def test_the_contained_ctp_passes(valid_ctp):
    scenario, engine = valid_ctp
    assert _failed(scenario, engine) == set()


def test_the_same_ctp_with_goal_and_care_team_as_resources_passes(valid_ctp):
    scenario, engine = valid_ctp
    assert _failed(_referenced(scenario), engine) == set()


def test_a_referenced_goal_is_still_judged(valid_ctp):
    scenario, engine = valid_ctp
    no_area = _referenced(scenario, goal_changes={"category": []})
    assert "W-CTP-07" in _failed(no_area, engine)


def test_a_goal_that_does_not_resolve_brings_nothing_in(valid_ctp):
    scenario, engine = valid_ctp
    assert "W-CTP-07" in _failed(_referenced(scenario, drop_goal=True), engine)


def test_the_view_is_a_copy_and_leaves_other_types_alone(valid_ctp):
    scenario, _ = valid_ctp
    referenced = _referenced(scenario)
    ctx = referenced.context()
    view = care_plan_view(referenced.resource, ctx)
    assert [c["id"] for c in view["contained"]] == ["crisis", "g1", "team"]
    assert [c["id"] for c in referenced.resource["contained"]] == ["crisis"]
    goal = {"resourceType": "Goal", "id": "x"}
    assert care_plan_view(goal, ctx) is goal
    english = {**referenced.resource, "category": [{"coding": [{"code": "cpa-care-plan"}]}]}
    assert care_plan_view(english, ctx) is english  # the CPA rules resolve references themselves
