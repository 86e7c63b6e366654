"""The shortcuts taken for clean nodes (walkplans.clean_leaf, shape's leaf nodes, the
Questionnaire check's one-answer items) still let every issue of such a node through."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

from adapter.conformance import ConformanceValidator
from adapter.conformance.shape import shape_issues
from adapter.context import ValidationContext

ROOT = Path(__file__).resolve().parents[3]


def _dialog(resource_type: str) -> dict:
    expected = json.loads(
        (ROOT / "fixtures/mappings/csv-dialog/complete/expected.json").read_text(),
        parse_float=Decimal,
    )
    return next(r for r in expected["resources"] if r["resourceType"] == resource_type)


def _texts(issues: list) -> set[tuple[str, str]]:
    return {(str(i.expression), i.text) for i in issues if i.severity == "error"}


def test_one_answer_items_report_type_and_option() -> None:
    validator = ConformanceValidator(profiles_dir=ROOT / "profiles")
    qr = _dialog("QuestionnaireResponse")
    assert not _texts(validator.validate(qr, ValidationContext(mode="validate")))
    bad = copy.deepcopy(qr)
    bad["item"][0]["answer"] = [{"valueInteger": 9}]  # not an answerOption
    bad["item"][1]["answer"] = [{"valueString": "yes"}]  # a boolean item
    got = _texts(validator.validate(bad, ValidationContext(mode="validate")))
    assert (
        "QuestionnaireResponse.item[0].answer[0]",
        "The answer is not in the set of permitted values",
    ) in got
    assert (
        "QuestionnaireResponse.item[1].answer[0]",
        "Answer value must be of type Boolean not String",
    ) in got


def test_leaf_nodes_still_report_invariants_formats_and_codes() -> None:
    validator = ConformanceValidator(profiles_dir=ROOT / "profiles")
    obs = _dialog("Observation")
    assert not _texts(validator.validate(obs, ValidationContext(mode="validate")))
    bad = copy.deepcopy(obs)
    bad["valueQuantity"]["code"] = "score"  # qty-3: a code needs a system
    bad["subject"] = {"reference": "#nowhere"}  # ref-1: a contained reference must resolve
    bad["category"][0]["coding"][0]["code"] = "no-such-category"
    got = _texts(validator.validate(bad, ValidationContext(mode="validate")))
    assert any(e == "Observation.valueQuantity" and "qty-3" in t for e, t in got), got
    assert any(e == "Observation.subject" and "ref-1" in t for e, t in got), got
    assert any("category[0].coding[0]" in e for e, _ in got), got


def test_leaf_nodes_in_the_structural_check() -> None:
    qr = _dialog("QuestionnaireResponse")
    assert shape_issues(qr) == []
    bad = copy.deepcopy(qr)
    bad["item"][0]["answer"] = [{"valueInteger": "5"}]  # a string where a number goes
    bad["item"][1]["answer"] = [{"valueBoolean": True, "valueInteger": 1}]  # two of value[x]
    bad["subject"] = {"reference": "Patient/1", "bogus": 1}
    got = {(i.expression, i.text) for i in shape_issues(bad)}
    assert (
        "QuestionnaireResponse.item[0].answer[0].valueInteger",
        "The value must be a JSON integer",
    ) in got
    assert any(
        e == "QuestionnaireResponse.item[1].answer[0]" and "Only one type of value[x]" in t
        for e, t in got
    ), got
    assert ("QuestionnaireResponse.subject.bogus", "Unknown element") in got


def test_clean_items_still_report_what_a_whole_item_can_break() -> None:
    validator = ConformanceValidator(profiles_dir=ROOT / "profiles")
    qr = _dialog("QuestionnaireResponse")
    bad = copy.deepcopy(qr)
    del bad["item"][0]["linkId"]  # required
    bad["item"][1]["item"] = [{"linkId": "x", "answer": [{"valueBoolean": True}]}]  # qrs-1
    bad["item"][2]["answer"] = []  # ele-1
    got = _texts(validator.validate(bad, ValidationContext(mode="validate")))
    assert ("QuestionnaireResponse.item[0].linkId", "Minimum cardinality of 'linkId' is 1") in got
    assert any(e == "QuestionnaireResponse.item[1]" and "qrs-1" in t for e, t in got), got
    assert ("QuestionnaireResponse.item[2].answer", "ele-1: Arrays must not be empty") in got
    shaped = copy.deepcopy(qr)
    shaped["item"][0]["answer"] = {"valueInteger": 5}  # answer repeats
    del shaped["item"][1]["linkId"]
    got = {(i.expression, i.text) for i in shape_issues(shaped)}
    assert (
        "QuestionnaireResponse.item[0].answer",
        "Expected an array (the element repeats)",
    ) in got
    assert ("QuestionnaireResponse.item[1].linkId", "Required element is missing") in got
