"""Narrative XHTML rules, ValueSet compose rules, SNOMED CT id syntax, JSON nulls, resource ids."""

from __future__ import annotations

import pytest

from adapter.conformance import ConformanceValidator
from adapter.conformance.valuesets import sctid_is_well_formed
from adapter.conformance.xhtml import xhtml_problems
from adapter.context import ValidationContext

NS = 'xmlns="http://www.w3.org/1999/xhtml"'


@pytest.fixture(scope="module")
def validator() -> ConformanceValidator:
    return ConformanceValidator()


def errors(validator, resource):
    return [i for i in validator.validate(resource, ValidationContext()) if i.is_blocking]


def test_plain_narrative_with_table_link_and_anchor_passes():
    div = f'<div {NS}><p id="top">Hi <a href="#top">up</a> <a href="#c1">c</a></p><table><tr><td>1</td></tr></table></div>'
    assert xhtml_problems(div, ["c1"]) == []


@pytest.mark.parametrize(
    ("div", "fragment"),
    [
        (
            f"<div {NS}><script>alert(1)</script></div>",
            "Invalid element name in the XHTML ('script')",
        ),
        (f'<div {NS}><p onclick="x()">a</p></div>', "Invalid attribute name"),
        (f'<div {NS}><a href="javascript:x()">a</a></div>', "Script URLs"),
        (f"<div {NS}>&reg;</div>", "Invalid entity in the XHTML ('&reg;')"),
        (f'<div {NS}><a href="#nowhere">a</a></div>', "Hyperlink '#nowhere' does not resolve"),
        (f"<div {NS}><p>a</div>", "not well-formed"),
        ("<div><p>a</p></div>", "XHTML namespace"),
        ('<!DOCTYPE x [<!ENTITY a "b">]><div>&a;</div>', "DOCTYPE"),
    ],
)
def test_narrative_problems(div, fragment):
    problems = xhtml_problems(div)
    assert any(fragment in p for p in problems), problems


def test_narrative_problem_is_an_invalid_issue_at_the_div(validator):
    p = {
        "resourceType": "Patient",
        "text": {"status": "generated", "div": f"<div {NS}><script>x</script></div>"},
    }
    assert [(i.code, i.expression) for i in errors(validator, p)] == [
        ("invalid", "Patient.text.div")
    ]


def test_sctid_syntax_uses_partition_and_verhoeff_check():
    assert sctid_is_well_formed("373942005")
    assert sctid_is_well_formed("56248011000036107")  # an extension concept id
    assert not sctid_is_well_formed("373942006")  # check digit
    assert not sctid_is_well_formed("1")
    assert sctid_is_well_formed("373942005:246=1")  # expressions are not judged


def test_malformed_snomed_code_in_a_coding_is_code_invalid(validator):
    p = {
        "resourceType": "Patient",
        "maritalStatus": {"coding": [{"system": "http://snomed.info/sct", "code": "12"}]},
    }
    assert [(i.code, i.expression) for i in errors(validator, p)] == [
        ("code-invalid", "Patient.maritalStatus.coding[0].code")
    ]


def value_set(include):
    return {"resourceType": "ValueSet", "status": "draft", "compose": {"include": [include]}}


def test_compose_system_must_be_absolute(validator):
    found = errors(validator, value_set({"system": "#cs1", "concept": [{"code": "a"}]}))
    assert [(i.code, i.expression) for i in found] == [("invalid", "ValueSet.compose.include[0]")]


def test_compose_concepts_must_exist_in_held_systems(validator):
    ok = value_set(
        {"system": "http://hl7.org/fhir/administrative-gender", "concept": [{"code": "male"}]}
    )
    assert errors(validator, ok) == []
    bad = value_set(
        {
            "system": "http://hl7.org/fhir/administrative-gender",
            "concept": [{"code": "male"}, {"code": "x"}],
        }
    )
    assert [i.expression for i in errors(validator, bad)] == [
        "ValueSet.compose.include[0].concept[1].code"
    ]
    sct = value_set({"system": "http://snomed.info/sct", "concept": [{"code": "1"}]})
    assert [i.code for i in errors(validator, sct)] == ["code-invalid"]


def test_null_property_is_a_structure_error(validator):
    found = errors(validator, {"resourceType": "Patient", "meta": None})
    assert [(i.code, i.expression) for i in found] == [("structure", "Patient")]


def test_contained_and_entry_resource_ids_use_the_id_format(validator):
    long_id = "x" * 65
    p = {
        "resourceType": "Patient",
        "contained": [{"resourceType": "Organization", "id": long_id, "name": "o"}],
        "managingOrganization": {"reference": f"#{long_id}"},
    }
    assert "Patient.contained[0].id" in [i.expression for i in errors(validator, p)]


def test_code_system_with_supplements_is_a_supplement(validator):
    cs = {
        "resourceType": "CodeSystem",
        "url": "http://example.org/sup",
        "content": "complete",
        "supplements": "http://loinc.org",
        "concept": [{"code": "a"}],
    }
    obs = {
        "resourceType": "Patient",
        "maritalStatus": {"coding": [{"system": "http://example.org/sup", "code": "a"}]},
    }
    found = [
        i
        for i in validator.validate_with_supporting(obs, ValidationContext(), [cs])
        if i.is_blocking
    ]
    assert [i.code for i in found] == ["business-rule"]
