"""Code existence and display in held code systems, extension definitions, canonical types."""

from __future__ import annotations

import pytest

from adapter.conformance import ConformanceValidator
from adapter.context import ValidationContext


@pytest.fixture(scope="module")
def validator() -> ConformanceValidator:
    return ConformanceValidator()


@pytest.fixture(scope="module")
def strict() -> ConformanceValidator:
    return ConformanceValidator(unknown_extensions="error")


def errors(validator, resource, supporting=()):
    issues = validator.validate_with_supporting(resource, ValidationContext(), supporting)
    return [i for i in issues if i.is_blocking]


def patient(**extra):
    return {"resourceType": "Patient", **extra}


def _coded(system, code, display=None):
    coding = {"system": system, "code": code}
    if display is not None:
        coding["display"] = display
    return patient(maritalStatus={"coding": [coding]})


MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"


def test_code_not_in_a_complete_code_system_is_code_invalid(validator):
    found = errors(validator, _coded(MARITAL, "ZZ"))
    assert [(i.code, i.expression) for i in found] == [
        ("code-invalid", "Patient.maritalStatus.coding[0].code")
    ]


def test_known_code_with_its_display_passes(validator):
    assert errors(validator, _coded(MARITAL, "M", "Married")) == []
    assert errors(validator, _coded(MARITAL, "M", "  married ")) == []  # case and spaces


def test_wrong_display_for_a_held_code_system_is_invalid(validator):
    found = errors(validator, _coded(MARITAL, "M", "Divorced"))
    assert [(i.code, i.expression) for i in found] == [
        ("invalid", "Patient.maritalStatus.coding[0].display")
    ]


def test_code_systems_we_do_not_hold_are_not_judged(validator):
    assert errors(validator, _coded("http://snomed.info/sct", "373942005")) == []  # not judged


def test_supporting_code_system_and_supplement(validator):
    cs = {
        "resourceType": "CodeSystem",
        "url": "http://example.org/cs",
        "content": "complete",
        "caseSensitive": True,
        "concept": [{"code": "a", "concept": [{"code": "b"}]}],
    }
    assert errors(validator, _coded("http://example.org/cs", "b"), [cs]) == []
    assert [i.code for i in errors(validator, _coded("http://example.org/cs", "c"), [cs])] == [
        "code-invalid"
    ]
    supplement = {**cs, "url": "http://example.org/sup", "content": "supplement"}
    found = errors(validator, _coded("http://example.org/sup", "a"), [supplement])
    assert [(i.code, i.expression) for i in found] == [
        ("business-rule", "Patient.maritalStatus.coding[0].system")
    ]


BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
MOTHERS_FAMILY = "http://hl7.org/fhir/StructureDefinition/humanname-mothers-family"


def test_extension_in_its_context_with_the_right_type_passes(validator):
    p = patient(extension=[{"url": BIRTH_PLACE, "valueAddress": {"city": "Leeds"}}])
    assert errors(validator, p) == []
    p = patient(
        name=[
            {
                "family": "Smith",
                "_family": {"extension": [{"url": MOTHERS_FAMILY, "valueString": "Jones"}]},
            }
        ]
    )
    assert errors(validator, p) == []


def test_extension_outside_its_context_is_an_error(validator):
    p = patient(
        name=[{"family": "Smith", "extension": [{"url": MOTHERS_FAMILY, "valueString": "J"}]}]
    )
    found = errors(validator, p)
    assert [i.expression for i in found] == ["Patient.name[0].extension[0]"]
    assert "not allowed to be used at this point" in found[0].text


def test_extension_value_of_a_type_its_definition_does_not_allow_is_an_error(validator):
    found = errors(validator, patient(extension=[{"url": BIRTH_PLACE, "valueString": "Leeds"}]))
    assert [i.expression for i in found] == ["Patient.extension[0]"]
    assert "does not allow a value of type string" in found[0].text


def test_regular_extension_used_as_modifier_is_an_error(validator):
    found = errors(
        validator, patient(modifierExtension=[{"url": BIRTH_PLACE, "valueAddress": {"city": "L"}}])
    )
    assert [i.expression for i in found] == ["Patient.modifierExtension[0]"]


def test_unknown_extensions_follow_the_policy(validator, strict):
    p = patient(extension=[{"url": "http://example.net/fhir/ext/x", "valueString": "a"}])
    assert errors(validator, p) == []
    assert [i.text for i in errors(strict, p)] == [
        "The extension http://example.net/fhir/ext/x could not be found so is not allowed here"
    ]
    # HL7 namespaces published in packages we do not hold are never judged unknown
    for url in (
        "http://hl7.org/fhir/StructureDefinition/organization-brand",
        "http://hl7.org/fhir/5.0/StructureDefinition/extension-Patient.x",
        "http://hl7.org/fhir/tools/StructureDefinition/y",
    ):
        assert errors(strict, patient(extension=[{"url": url, "valueString": "a"}])) == []
    # our own canonical base: always an error
    ours = patient(
        extension=[{"url": "https://fhir.cmh-adapter.example/ext/nope", "valueString": "a"}]
    )
    assert len(errors(validator, ours)) == 1


def test_supporting_extension_definition_is_known(strict):
    sd = {
        "resourceType": "StructureDefinition",
        "url": "http://example.net/fhir/ext/x",
        "type": "Extension",
        "context": [{"type": "element", "expression": "Patient"}],
        "differential": {"element": [{"path": "Extension.value[x]", "type": [{"code": "string"}]}]},
    }
    p = patient(extension=[{"url": "http://example.net/fhir/ext/x", "valueString": "a"}])
    assert errors(strict, p, [sd]) == []
    p = patient(extension=[{"url": "http://example.net/fhir/ext/x", "valueBoolean": True}])
    assert len(errors(strict, p, [sd])) == 1


def test_questionnaire_canonical_to_a_value_set_is_invalid(validator):
    qr = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "questionnaire": "http://hl7.org/fhir/ValueSet/example-extensional",
    }
    found = errors(validator, qr)
    assert [(i.code, i.expression) for i in found] == [
        ("invalid", "QuestionnaireResponse.questionnaire")
    ]


def test_que_12_uses_the_corrected_reading_more_than_one(validator):
    q = {
        "resourceType": "Questionnaire",
        "status": "active",
        "item": [
            {"linkId": "a", "type": "boolean"},
            {"linkId": "b", "type": "boolean"},
            {
                "linkId": "c",
                "type": "boolean",
                "enableWhen": [
                    {"question": "a", "operator": "exists", "answerBoolean": True},
                    {"question": "b", "operator": "exists", "answerBoolean": True},
                ],
            },
        ],
    }
    found = errors(validator, q)
    assert [(i.code, i.expression) for i in found] == [("invariant", "Questionnaire.item[2]")]
    q["item"][2]["enableBehavior"] = "all"
    assert errors(validator, q) == []
