"""Conformance-resource rules (CodeSystem, SearchParameter, CapabilityStatement, ValueSet filters)
and profiles from supporting artefacts (differentials, ImplementationGuide.global, $this slices)."""

from __future__ import annotations

import pytest

from adapter.conformance import ConformanceValidator
from adapter.context import ValidationContext

NOT_SELECTABLE = "http://hl7.org/fhir/concept-properties#notSelectable"


@pytest.fixture(scope="module")
def validator() -> ConformanceValidator:
    return ConformanceValidator()


def errors(validator, resource, supporting=()):
    issues = validator.validate_with_supporting(resource, ValidationContext(), supporting)
    return [(i.code, i.expression) for i in issues if i.is_blocking]


def code_system(**extra):
    return {
        "resourceType": "CodeSystem",
        "url": "http://example.org/cs",
        "status": "draft",
        "content": "complete",
        **extra,
    }


def test_supplement_needs_content_supplement(validator):
    assert errors(validator, code_system(supplements="http://loinc.org")) == [
        ("business-rule", "CodeSystem.content")
    ]
    assert (
        errors(validator, code_system(supplements="http://loinc.org", content="supplement")) == []
    )


def test_property_codes_and_uris_are_unique_and_values_have_the_declared_type(validator):
    cs = code_system(
        property=[
            {"code": "a", "uri": NOT_SELECTABLE, "type": "boolean"},
            {"code": "a", "type": "string"},
            {"code": "b", "uri": NOT_SELECTABLE, "type": "boolean"},
        ],
        concept=[{"code": "x", "property": [{"code": "a", "valueBoolean": True}]}],
    )
    assert errors(validator, cs) == [
        ("business-rule", "CodeSystem.property[1]"),
        ("business-rule", "CodeSystem.property[2]"),
    ]
    cs = code_system(
        property=[{"code": "a", "type": "dateTime"}],
        concept=[
            {
                "code": "x",
                "concept": [{"code": "y", "property": [{"code": "a", "valueBoolean": True}]}],
            }
        ],
    )
    assert errors(validator, cs) == [
        ("business-rule", "CodeSystem.concept[0].concept[0].property[0]")
    ]


def search_parameter(**extra):
    return {
        "resourceType": "SearchParameter",
        "url": "http://example.org/sp",
        "name": "n",
        "status": "draft",
        "description": "d",
        "code": "name",
        "derivedFrom": "http://hl7.org/fhir/SearchParameter/Organization-name",
        "base": ["Organization"],
        "type": "string",
        **extra,
    }


def test_derived_search_parameter_keeps_type_and_base(validator):
    assert errors(validator, search_parameter()) == []
    assert errors(validator, search_parameter(type="token")) == [
        ("business-rule", "SearchParameter.type")
    ]
    assert errors(validator, search_parameter(base=["Patient"])) == [
        ("business-rule", "SearchParameter.base[0]")
    ]


def test_capability_statement_search_param_type_matches_its_definition(validator):
    cap = {
        "resourceType": "CapabilityStatement",
        "status": "draft",
        "date": "2026-01-01",
        "kind": "instance",
        "implementation": {"description": "x"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {
                        "type": "AllergyIntolerance",
                        "searchParam": [
                            {
                                "name": "clinical-status",
                                "definition": "http://hl7.org/fhir/SearchParameter/AllergyIntolerance-clinical-status",
                                "type": "date",
                            }
                        ],
                    }
                ],
            }
        ],
    }
    assert errors(validator, cap) == [
        ("business-rule", "CapabilityStatement.rest[0].resource[0].searchParam[0].type")
    ]
    cap["rest"][0]["resource"][0]["searchParam"][0]["type"] = "token"
    assert errors(validator, cap) == []


def test_filter_on_a_coding_property_needs_system_hash_code_of_a_real_code(validator):
    cs = code_system(
        property=[{"code": "p", "type": "Coding"}], concept=[{"code": "x"}, {"code": "y"}]
    )

    def vs(value):
        return {
            "resourceType": "ValueSet",
            "status": "draft",
            "compose": {
                "include": [
                    {
                        "system": "http://example.org/cs",
                        "filter": [{"property": "p", "op": "=", "value": value}],
                    }
                ]
            },
        }

    assert errors(validator, vs("http://example.org/cs#x"), [cs]) == []
    assert errors(validator, vs("x"), [cs]) == [
        ("invalid", "ValueSet.compose.include[0].filter[0]")
    ]
    assert errors(validator, vs("http://example.org/cs#zz"), [cs]) == [
        ("invalid", "ValueSet.compose.include[0].filter[0]")
    ]


def profile(url, elements):
    return {
        "resourceType": "StructureDefinition",
        "url": url,
        "type": "Patient",
        "derivation": "constraint",
        "differential": {"element": elements},
    }


def test_supporting_profile_in_meta_profile_is_applied(validator):
    sd = profile(
        "http://example.org/sd/p", [{"id": "Patient.name", "path": "Patient.name", "min": 1}]
    )
    p = {"resourceType": "Patient", "meta": {"profile": ["http://example.org/sd/p"]}}
    assert errors(validator, p, [sd]) == [("required", "Patient.name")]
    assert errors(validator, {**p, "name": [{"family": "x"}]}, [sd]) == []


def test_implementation_guide_global_profile_applies_to_its_type(validator):
    sd = profile(
        "http://example.org/sd/g", [{"id": "Patient.name", "path": "Patient.name", "min": 1}]
    )
    ig = {
        "resourceType": "ImplementationGuide",
        "url": "http://example.org/ig",
        "global": [{"type": "Patient", "profile": "http://example.org/sd/g"}],
    }
    assert errors(validator, {"resourceType": "Patient"}, [sd, ig]) == [
        ("required", "Patient.name")
    ]
    assert errors(validator, {"resourceType": "Patient"}, [sd]) == []


def test_slice_selected_by_its_own_pattern(validator):
    sd = profile(
        "http://example.org/sd/s",
        [
            {
                "id": "Patient.address",
                "path": "Patient.address",
                "slicing": {
                    "discriminator": [{"type": "pattern", "path": "$this"}],
                    "rules": "open",
                },
            },
            {
                "id": "Patient.address:home",
                "path": "Patient.address",
                "sliceName": "home",
                "patternAddress": {"use": "home"},
            },
            {"id": "Patient.address:home.city", "path": "Patient.address.city", "min": 1},
        ],
    )
    p = {
        "resourceType": "Patient",
        "meta": {"profile": ["http://example.org/sd/s"]},
        "address": [{"use": "work"}, {"use": "home", "city": "Leeds"}],
    }
    assert errors(validator, p, [sd]) == []
    p["address"][1].pop("city")
    assert errors(validator, p, [sd]) == [("required", "Patient.address[1].city")]


def test_supporting_profile_binding_to_an_enumerated_core_value_set(validator):
    sd = {
        "resourceType": "StructureDefinition",
        "url": "http://example.org/sd/age",
        "type": "Observation",
        "derivation": "constraint",
        "differential": {
            "element": [
                {
                    "id": "Observation.value[x]",
                    "path": "Observation.value[x]",
                    "type": [{"code": "Quantity"}],
                    "binding": {
                        "strength": "required",
                        "valueSet": "http://hl7.org/fhir/ValueSet/age-units",
                    },
                }
            ]
        },
    }
    obs = {
        "resourceType": "Observation",
        "meta": {"profile": ["http://example.org/sd/age"]},
        "status": "final",
        "code": {"text": "age"},
        "valueQuantity": {"value": 18, "system": "http://unitsofmeasure.org", "code": "a"},
    }
    assert errors(validator, obs, [sd]) == []
    obs["valueQuantity"]["code"] = "m"
    assert errors(validator, obs, [sd]) == [("code-invalid", "Observation.valueQuantity")]


def document_bundle(references, versions=("1", "2")):
    base = "http://example.org/"
    entries = [
        {
            "fullUrl": base + "Composition/c1",
            "resource": {
                "resourceType": "Composition",
                "id": "c1",
                "status": "final",
                "type": {"text": "t"},
                "date": "2026-01-01",
                "author": [{"display": "a"}],
                "title": "t",
                "section": [{"title": "s", "entry": [{"reference": r} for r in references]}],
            },
        }
    ]
    for v in versions:
        entries.append(
            {
                "fullUrl": base + "Observation/o1",
                "resource": {
                    "resourceType": "Observation",
                    "id": "o1",
                    "meta": {"versionId": v},
                    "status": "final",
                    "code": {"text": "x"},
                },
            }
        )
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": entries,
    }


def test_bundle_reference_must_resolve_to_one_entry_or_the_named_version(validator):
    assert errors(validator, document_bundle(["Observation/o1"], versions=("1",))) == []
    assert errors(validator, document_bundle(["Observation/o1/_history/2"])) == []
    where = "Bundle.entry[0].resource.section[0].entry[0].reference"
    assert errors(validator, document_bundle(["Observation/o1"])) == [("not-found", where)]
    assert errors(validator, document_bundle(["Observation/o1/_history/3"])) == [
        ("not-found", where)
    ]
