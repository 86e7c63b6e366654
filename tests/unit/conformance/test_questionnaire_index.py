"""The index kept with our Questionnaires gives the same issues as one derived per call."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from adapter.conformance import ConformanceValidator
from adapter.conformance.questionnaire import questionnaire_issues
from adapter.context import ValidationContext

ROOT = Path(__file__).resolve().parents[3]


def _dialog_response() -> dict:
    expected = json.loads(
        (ROOT / "fixtures/mappings/csv-dialog/complete/expected.json").read_text()
    )
    return next(r for r in expected["resources"] if r["resourceType"] == "QuestionnaireResponse")


def test_kept_index_agrees_with_a_fresh_one_over_repeated_calls() -> None:
    validator = ConformanceValidator(profiles_dir=ROOT / "profiles")
    good = _dialog_response()
    bad = copy.deepcopy(good)
    bad["item"][0]["answer"] = [{"valueInteger": 9}, {"valueString": "x"}]  # not an option; type
    del bad["item"][2]  # a required item is missing
    ctx = ValidationContext(mode="validate")
    q = validator.profiles.questionnaire(good["questionnaire"])
    assert q is not None
    assert validator._kept_index(q) is not None
    for qr in (good, bad, good, bad):
        kept = validator.validate(qr, ctx)
        fresh = questionnaire_issues(q, qr, None)
        assert [i for i in kept if i in fresh] == fresh
    assert questionnaire_issues(q, bad, None)  # the bad response is judged
    assert not [i for i in validator.validate(good, ctx) if i.severity == "error"]
