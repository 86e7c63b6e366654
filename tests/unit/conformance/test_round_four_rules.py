"""Rules and options of the fourth round (issue #3): example-URL, Parameters-reference and
HL7-publication options; derived extension urls, extension discriminators, vital-signs magic codes
and boolean ValueSet filters."""

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


def document(url):
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": {"contentType": "text/plain", "url": url}}],
    }


def test_no_example_urls_option(validator):
    strict = ConformanceValidator(no_example_urls=True)
    where = "DocumentReference.content[0].attachment.url"
    assert errors(strict, document("http://repository.example.org/fhir/x")) == [("invalid", where)]
    assert errors(strict, document("https://example.com")) == [("invalid", where)]
    assert errors(strict, document("http://notexample.org/x")) == []
    assert errors(strict, document("http://hl7.org/fhir")) == []
    assert errors(validator, document("http://repository.example.org/fhir/x")) == []


def parameters(beneficiary):
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "p", "resource": {"resourceType": "Patient", "id": "1"}},
            {
                "name": "c",
                "resource": {
                    "resourceType": "Coverage",
                    "id": "c1",
                    "status": "active",
                    "beneficiary": {"reference": beneficiary},
                    "payor": [{"reference": "Patient/1"}],
                },
            },
        ],
    }


def test_resolve_parameters_references_option(validator):
    strict = ConformanceValidator(resolve_parameters_references=True)
    assert errors(strict, parameters("Patient/1")) == []
    assert errors(strict, parameters("Patient/2")) == [
        ("not-found", "Parameters.parameter[1].resource.beneficiary.reference")
    ]
    assert errors(validator, parameters("Patient/2")) == []


def code_system(**extra):
    return {
        "resourceType": "CodeSystem",
        "url": "http://hl7.org/fhir/narrative-status",
        "status": "draft",
        "content": "not-present",
        **extra,
    }


def test_hl7_publication_option(validator):
    strict = ConformanceValidator(hl7_publication=True)
    assert errors(strict, code_system()) == [("business-rule", "CodeSystem")]
    wg = {
        "url": "http://hl7.org/fhir/StructureDefinition/structuredefinition-wg",
        "valueCode": "fhir",
    }
    assert errors(strict, code_system(extension=[wg])) == []
    assert errors(strict, code_system(url="http://example.org/cs")) == []
    assert errors(validator, code_system()) == []


def extension_sd(url, base, fixed):
    return {
        "resourceType": "StructureDefinition",
        "url": url,
        "name": "X",
        "status": "draft",
        "kind": "complex-type",
        "abstract": False,
        "context": [{"type": "element", "expression": "Patient"}],
        "type": "Extension",
        "baseDefinition": base,
        "derivation": "constraint",
        "differential": {
            "element": [
                {"id": "Extension", "path": "Extension"},
                {"id": "Extension.url", "path": "Extension.url", "fixedUri": fixed},
            ]
        },
    }


def test_derived_extension_keeps_the_fixed_url(validator):
    core = "http://hl7.org/fhir/StructureDefinition/Extension"
    base = extension_sd("http://x.org/base", core, "http://x.org/base")
    derived = extension_sd("http://x.org/derived", "http://x.org/base", "http://x.org/derived")
    assert errors(validator, derived, [base]) == [
        ("business-rule", "StructureDefinition.differential.element[1].fixedUri")
    ]
    same = extension_sd("http://x.org/derived", "http://x.org/base", "http://x.org/base")
    assert errors(validator, same, [base]) == []
    circle = extension_sd("http://x.org/derived", "http://x.org/derived", "http://x.org/derived")
    assert errors(validator, circle, [base]) == []


def sliced_profile(discriminator_path):
    return {
        "resourceType": "StructureDefinition",
        "url": "http://x.org/StructureDefinition/p",
        "name": "P",
        "status": "draft",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {
            "element": [
                {
                    "id": "Patient.extension",
                    "path": "Patient.extension",
                    "slicing": {
                        "discriminator": [{"type": "value", "path": discriminator_path}],
                        "rules": "open",
                    },
                }
            ]
        },
    }


def test_extension_discriminator_paths(validator):
    assert errors(validator, sliced_profile("type")) == [
        ("structure", "StructureDefinition.differential.element[0].slicing.discriminator[0]")
    ]
    for ok in ("url", "value", "value.ofType(Coding)", "extension('a').value", "$this"):
        assert errors(validator, sliced_profile(ok)) == [], ok


def observation(*codings):
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": list(codings)},
        "valueQuantity": {"value": 36, "system": "http://unitsofmeasure.org", "code": "Cel"},
    }


SCT_TEMP = {"system": "http://snomed.info/sct", "code": "276885007"}
LOINC_TEMP = {"system": "http://loinc.org", "code": "8310-5"}


def test_vital_signs_magic_code(validator):
    assert errors(validator, observation(SCT_TEMP)) == [("business-rule", "Observation.code")]
    assert errors(validator, observation(SCT_TEMP, LOINC_TEMP)) == []
    assert errors(validator, observation(LOINC_TEMP)) == []
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:1b0c3e8e-6c0e-4a57-9b8f-0d3c2f1a2b3c",
                "resource": observation(SCT_TEMP),
            }
        ],
    }
    assert errors(validator, bundle) == [("business-rule", "Bundle.entry[0].resource.code")]


def value_set(prop, value):
    return {
        "resourceType": "ValueSet",
        "status": "draft",
        "compose": {
            "include": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/ex-tooth",
                    "filter": [{"property": prop, "op": "=", "value": value}],
                }
            ]
        },
    }


def test_boolean_filter_values(validator):
    assert errors(validator, value_set("notSelectable", "1")) == [
        ("invalid", "ValueSet.compose.include[0].filter[0].value")
    ]
    assert errors(validator, value_set("notSelectable", "true")) == []
    assert errors(validator, value_set("inactive", "false")) == []
    assert errors(validator, value_set("parent", "x")) == []
