from __future__ import annotations

from adapter.errors import ConformanceError, InputError, PolicyViolation, PreconditionFailed
from adapter.issue import Issue, RuleRef
from adapter.outcome import operation_outcome


def test_policy_issue_renders_rule_id_citation_and_expression():
    issue = Issue(
        "error",
        "business-rule",
        "No priority",
        expression="ServiceRequest.priority",
        rule=RuleRef("S000-REF-URG-01", "000_d2f535f8876d1512.txt:395-437"),
    )
    oo = operation_outcome([issue])
    rendered = oo["issue"][0]
    assert rendered["details"]["coding"][0]["code"] == "S000-REF-URG-01"
    assert "000_d2f535f8876d1512.txt:395-437" in rendered["diagnostics"]
    assert rendered["expression"] == ["ServiceRequest.priority"]


def test_rebasing_replaces_the_resource_type_root():
    i = Issue("error", "value", "x", expression="Patient.identifier[0].value")
    assert (
        i.rebased("Bundle.entry[3].resource").expression
        == "Bundle.entry[3].resource.identifier[0].value"
    )
    assert Issue("error", "value", "x").rebased("Bundle.entry[1]").expression == "Bundle.entry[1]"


def test_status_codes_of_the_family():
    assert InputError("x").status == 400
    assert ConformanceError("x").status == 422
    assert PolicyViolation("x").status == 422
    assert PreconditionFailed("x").status == 412


def test_empty_outcome_is_all_ok_information():
    assert operation_outcome([])["issue"][0]["severity"] == "information"
