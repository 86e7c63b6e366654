"""Rules added to close the gap to the reference validator (issue #3): composite SearchParameters,
required bindings with only a data-absent-reason, ..."""

from __future__ import annotations

import pytest

from adapter.conformance import ConformanceValidator
from adapter.context import ValidationContext


@pytest.fixture(scope="module")
def validator() -> ConformanceValidator:
    return ConformanceValidator()


def errors(validator, resource, supporting=()):
    issues = validator.validate_with_supporting(resource, ValidationContext(), supporting)
    return [(i.code, i.expression) for i in issues if i.is_blocking]


def search_parameter(**extra):
    return {
        "resourceType": "SearchParameter",
        "url": "http://example.org/SearchParameter/x",
        "name": "x",
        "status": "draft",
        "description": "x",
        "code": "x",
        "base": ["DocumentReference"],
        "type": "composite",
        "expression": "DocumentReference.relatesTo",
        **extra,
    }


def component(n):
    return {"definition": f"http://example.org/SearchParameter/c{n}", "expression": "code"}


def test_composite_search_parameter_needs_two_components(validator):
    assert errors(validator, search_parameter()) == [("business-rule", "SearchParameter")]
    assert errors(validator, search_parameter(component=[component(1)])) == [
        ("business-rule", "SearchParameter.component")
    ]
    assert errors(validator, search_parameter(component=[component(1), component(2)])) == []
    assert errors(validator, search_parameter(type="token")) == []


CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"


def allergy(**extra):
    return {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "patient": {"reference": "Patient/abc"},
        **extra,
    }


DAR = {
    "extension": [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
            "valueCode": "unknown",
        }
    ]
}


def test_required_code_with_only_a_data_absent_reason(validator):
    assert errors(validator, allergy(_category=[DAR])) == [
        ("code-invalid", "AllergyIntolerance.category[0]")
    ]
    assert errors(validator, allergy(category=["food"], _category=[DAR])) == []
    assert errors(validator, allergy(category=["food", None], _category=[None, DAR])) == [
        ("code-invalid", "AllergyIntolerance.category[1]")
    ]
    xver = {"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-X.y", "valueCode": "z"}
    assert errors(validator, allergy(_category=[{"extension": [xver]}])) == []
    # an element bound to no required value set may carry only extensions
    assert errors(validator, allergy(_recordedDate=DAR)) == []


def communication(text):
    return {"resourceType": "Communication", "status": "completed", "note": [{"text": text}]}


def test_no_html_in_markdown_option():
    strict = ConformanceValidator(no_html_in_markdown=True)
    assert errors(strict, communication("<resource type>\\<id>")) == [
        ("invalid", "Communication.note[0].text")
    ]
    assert errors(strict, communication("see <b>this</b>")) == [
        ("invalid", "Communication.note[0].text")
    ]
    assert errors(strict, communication("a < b, see <http://example.org>")) == []
    assert errors(ConformanceValidator(), communication("<resource type>")) == []


def patient_with_name(text):
    return {"resourceType": "Patient", "name": [{"text": text}]}


def test_security_checks_option():
    strict = ConformanceValidator(security_checks=True)
    assert errors(strict, patient_with_name("Standard <script>x</script>")) == [
        ("invalid", "Patient.name[0].text")
    ]
    assert errors(strict, patient_with_name("a < b > c")) == []
    assert errors(ConformanceValidator(), patient_with_name("<script>x</script>")) == []


def observation_profile(*paths):
    return {
        "resourceType": "StructureDefinition",
        "url": "http://example.org/StructureDefinition/obs",
        "name": "Obs",
        "status": "draft",
        "kind": "resource",
        "abstract": False,
        "type": "Observation",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "derivation": "constraint",
        "differential": {"element": [{"id": p, "path": p} for p in paths]},
    }


def test_differential_paths_are_elements_of_the_type(validator):
    good = observation_profile(
        "Observation",
        "Observation.value[x]",
        "Observation.valueQuantity",
        "Observation.code.coding.system",
        "Observation.component.code",
        "Observation.extension",
    )
    assert errors(validator, good) == []
    assert errors(validator, observation_profile("Observation.valueBla")) == [
        ("structure", "StructureDefinition.differential.element[0].path")
    ]
    assert ("structure", "StructureDefinition.differential.element[0].path") in errors(
        validator, observation_profile("Patient.name")
    )
