"""The native structural check (adapter.conformance.shape): one test per rule, message and path."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from adapter.conformance.definitions import core_definitions
from adapter.conformance.shape import REFUSED_R4_TYPES, primitive_shape_problem
from adapter.fhir import jsonio
from adapter.fhir.parse import R4_ONLY_UNSUPPORTED, model_class, structural_issues

OBS = {"resourceType": "Observation", "status": "final", "code": {"text": "mood"}}


def found(resource: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(i.code, i.text, i.expression) for i in structural_issues(resource)]


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **extra}


def test_a_valid_resource_has_no_issues():
    resource = patient(
        id="p1",
        active=True,
        name=[{"family": "Jones", "given": ["A", "B"], "_given": [None, {"id": "g"}]}],
        birthDate="1980-02-29",
        _birthDate={"extension": [{"url": "http://x.org/e", "valueString": "approx"}]},
        multipleBirthInteger=2,
        contained=[{"resourceType": "Organization", "id": "o1", "name": "CMHT"}],
    )
    assert structural_issues(resource) == []


# -- unknown properties ------------------------------------------------------------------------
def test_unknown_property_is_unknown_element():
    assert found(patient(foo=1)) == [("structure", "Unknown element", "Patient.foo")]


def test_unknown_property_deep_inside_has_the_full_path():
    resource = patient(name=[{"family": "J"}, {"period": {"start": "2020", "stop": "2021"}}])
    assert found(resource) == [("structure", "Unknown element", "Patient.name[1].period.stop")]


def test_unknown_underscore_sibling_is_unknown_element():
    assert found(patient(_foo={"id": "x"})) == [("structure", "Unknown element", "Patient._foo")]


def test_underscore_sibling_of_a_complex_element_is_unknown():
    assert found(patient(_name=[{"id": "x"}])) == [
        ("structure", "Unknown element", "Patient._name")
    ]


def test_underscore_id_on_a_resource_is_unknown():
    # Resource.id is a plain string in R4 JSON: it takes no extensions
    assert found(patient(id="p1", _id={"id": "x"})) == [
        ("structure", "Unknown element", "Patient._id")
    ]


def test_resource_type_inside_a_data_type_is_unknown():
    resource = patient(name=[{"family": "J", "resourceType": "HumanName"}])
    assert found(resource) == [("structure", "Unknown element", "Patient.name[0].resourceType")]


def test_bare_choice_name_is_unknown():
    assert found(patient(deceased=True)) == [("structure", "Unknown element", "Patient.deceased")]


def test_choice_type_not_allowed_for_the_element_is_unknown():
    assert found(patient(deceasedString="yes")) == [
        ("structure", "Unknown element", "Patient.deceasedString")
    ]


# -- arrays and single values ------------------------------------------------------------------
def test_array_where_the_element_does_not_repeat():
    assert found(patient(gender=["male"])) == [
        ("structure", "Expected a single value, not an array", "Patient.gender")
    ]


def test_single_value_where_the_element_repeats():
    assert found(patient(name={"family": "J"})) == [
        ("structure", "Expected an array (the element repeats)", "Patient.name")
    ]


def test_single_primitive_where_the_element_repeats():
    assert found(patient(name=[{"given": "A"}])) == [
        ("structure", "Expected an array (the element repeats)", "Patient.name[0].given")
    ]


# -- primitive JSON kinds, ranges and formats --------------------------------------------------
@pytest.mark.parametrize("value", ["true", "false", 1, 0])
def test_boolean_must_be_json_true_or_false(value):
    assert found(patient(active=value)) == [
        ("structure", "The value must be a JSON boolean", "Patient.active")
    ]


@pytest.mark.parametrize("value", ["2", Decimal("2.0"), Decimal("1.5"), 2.0, True])
def test_integer_must_be_a_json_number_without_fraction(value):
    assert found(patient(multipleBirthInteger=value)) == [
        ("structure", "The value must be a JSON integer", "Patient.multipleBirthInteger")
    ]


def test_integer_is_32_bit():
    assert found(patient(multipleBirthInteger=2**31)) == [
        (
            "structure",
            "The value is outside the 32-bit integer range",
            "Patient.multipleBirthInteger",
        )
    ]
    assert found(patient(multipleBirthInteger=-(2**31))) == []


def test_positive_int_is_at_least_one():
    sampled = {"origin": {"value": 1}, "period": 1, "dimensions": 0}
    assert found({**OBS, "valueSampledData": sampled}) == [
        ("structure", "The value must be 1 or more", "Observation.valueSampledData.dimensions")
    ]


def test_unsigned_int_is_at_least_zero():
    resource = {
        "resourceType": "ImagingStudy",
        "status": "available",
        "subject": {"reference": "Patient/p1"},
        "numberOfSeries": -1,
    }
    assert found(resource) == [
        ("structure", "The value must be 0 or more", "ImagingStudy.numberOfSeries")
    ]


def test_decimal_must_be_a_json_number():
    assert found({**OBS, "valueQuantity": {"value": "1.5"}}) == [
        ("structure", "The value must be a JSON number", "Observation.valueQuantity.value")
    ]
    assert found({**OBS, "valueQuantity": {"value": Decimal("1.50")}}) == []
    assert found({**OBS, "valueQuantity": {"value": True}}) == [
        ("structure", "The value must be a JSON number", "Observation.valueQuantity.value")
    ]


def test_decimals_from_jsonio_keep_their_precision_and_pass():
    resource = jsonio.loads(
        '{"resourceType":"Observation","status":"final","code":{"text":"x"},'
        '"valueQuantity":{"value":1.50}}'
    )
    assert structural_issues(resource) == []


@pytest.mark.parametrize("value", [5, True, {"text": "x"}])
def test_string_types_must_be_json_strings(value):
    assert found(patient(name=[{"family": value}])) == [
        ("structure", "The value must be a JSON string", "Patient.name[0].family")
    ]


def test_empty_string_is_refused_for_string():
    assert found(patient(name=[{"family": ""}])) == [
        ("structure", "The value must not be empty", "Patient.name[0].family")
    ]


@pytest.mark.parametrize(
    ("key", "value", "type_code"),
    [
        ("gender", " male", "code"),
        ("gender", "", "code"),
        ("id", "a_b", "id"),
        ("id", "a" * 65, "id"),
        ("birthDate", "2020-13-01", "date"),
        ("birthDate", "2020-01-01T00:00:00Z", "date"),
        ("deceasedDateTime", "2020-01-01T10:00:00", "dateTime"),
    ],
)
def test_formats_the_structural_check_owns(key, value, type_code):
    assert found(patient(**{key: value})) == [
        ("structure", f"The value is not a valid {type_code}", f"Patient.{key}")
    ]


def test_calendar_day_must_exist():
    assert found(patient(birthDate="2021-02-29")) == [
        ("structure", "The value is not a valid date (no such calendar day)", "Patient.birthDate")
    ]


def test_instant_time_oid_uuid_and_base64_formats():
    assert found(patient(meta={"lastUpdated": "2020-01-01T10:00:00"})) == [
        ("structure", "The value is not a valid instant", "Patient.meta.lastUpdated")
    ]
    assert found({**OBS, "valueTime": "25:00:00"}) == [
        ("structure", "The value is not a valid time", "Observation.valueTime")
    ]
    ext = [{"url": "http://x.org/e", "valueOid": "1.2.3"}]
    assert found(patient(extension=ext)) == [
        ("structure", "The value is not a valid oid", "Patient.extension[0].valueOid")
    ]
    ext = [{"url": "http://x.org/e", "valueUuid": "C757873D-EC9A-4326-A141-556F43239520"}]
    assert found(patient(extension=ext)) == [
        ("structure", "The value is not a valid uuid", "Patient.extension[0].valueUuid")
    ]
    assert found(patient(photo=[{"data": "YWI"}])) == [
        ("structure", "The value is not valid base64", "Patient.photo[0].data")
    ]
    assert found(patient(photo=[{"data": "YW Jj\n"}])) == []


def test_formats_left_to_the_walk_are_not_structural():
    # uri/markdown formats and empty uris are judged by the instance walk (422), as before
    assert found(patient(implicitRules="a b")) == []
    assert primitive_shape_problem("markdown", "") is None
    assert primitive_shape_problem("uri", 5) == "must be a JSON string"


def test_xhtml_must_be_a_string():
    assert found(patient(text={"status": "generated", "div": 5})) == [
        ("structure", "The value must be a JSON string", "Patient.text.div")
    ]


def test_a_resources_own_id_is_checked_as_id_and_elements_ids_as_string():
    assert found(patient(id="a b")) == [("structure", "The value is not a valid id", "Patient.id")]
    assert found(patient(name=[{"id": "a b", "family": "J"}])) == []


# -- `_name` siblings --------------------------------------------------------------------------
def test_primitive_extension_object_with_other_properties():
    resource = patient(birthDate="2020", _birthDate={"id": "b", "value": "2020"})
    assert found(resource) == [("structure", "Unknown element", "Patient._birthDate.value")]


def test_primitive_extension_object_without_id_or_extension():
    assert found(patient(active=True, _active={})) == [
        ("structure", "Expected an id or extensions", "Patient._active")
    ]


def test_primitive_extension_must_be_an_object():
    assert found(patient(active=True, _active="x")) == [
        ("structure", "Expected a JSON object", "Patient._active")
    ]


def test_primitive_extension_array_for_a_single_primitive():
    assert found(patient(active=True, _active=[{"id": "a"}])) == [
        ("structure", "Expected a single object, not an array", "Patient._active")
    ]


def test_primitive_extension_object_for_a_repeating_primitive():
    assert found(patient(name=[{"given": ["A"], "_given": {"id": "g"}}])) == [
        ("structure", "Expected an array (the element repeats)", "Patient.name[0]._given")
    ]


def test_primitive_extension_array_must_align_with_the_values():
    resource = patient(name=[{"given": ["A"], "_given": [{"id": "test"}, None]}])
    assert found(resource) == [
        ("structure", "The array must have as many items as given (1)", "Patient.name[0]._given")
    ]


def test_primitive_extension_array_items_are_objects_or_null():
    resource = patient(name=[{"given": ["A", "B"], "_given": [None, "x"]}])
    assert found(resource) == [("structure", "Expected a JSON object", "Patient.name[0]._given[1]")]


def test_extensions_inside_a_primitive_extension_are_checked():
    bad = {"extension": [{"url": "http://x.org/e", "valueFoo": 1}]}
    assert found(patient(birthDate="2020", _birthDate=bad)) == [
        ("structure", "Unknown element", "Patient._birthDate.extension[0].valueFoo")
    ]


def test_extension_only_primitive_counts_as_present_for_a_minimum():
    resource = {"resourceType": "Observation", "_status": {"id": "s"}, "code": {"text": "x"}}
    assert found(resource) == []


# -- objects, nulls and empties ----------------------------------------------------------------
def test_complex_value_must_be_an_object():
    assert found(patient(maritalStatus="M")) == [
        ("structure", "Expected a JSON object", "Patient.maritalStatus")
    ]
    assert found(patient(name=["Jones"])) == [
        ("structure", "Expected a JSON object", "Patient.name[0]")
    ]


def test_null_in_a_complex_array_is_refused():
    assert found(patient(name=[None])) == [
        ("structure", "Null is not allowed in this array", "Patient.name[0]")
    ]


def test_nulls_and_empties_the_walk_reports_are_not_structural():
    # ele-1 (empty elements and arrays) and null properties answer 422 from the instance walk
    assert found(patient(active=None, maritalStatus=None, name=[{}], telecom=[])) == []
    assert found(patient(name=[{"given": [None, "A"], "_given": [{"id": "g"}, None]}])) == []


# -- choice types ------------------------------------------------------------------------------
def test_two_types_of_one_choice_element():
    assert found({**OBS, "valueString": "a", "valueInteger": 1}) == [
        (
            "structure",
            "Only one type of value[x] may be present, found valueString, valueInteger",
            "Observation",
        )
    ]


def test_two_types_counting_an_extension_only_variant():
    resource = patient(deceasedBoolean=True, _deceasedDateTime={"id": "d"})
    assert found(resource) == [
        (
            "structure",
            "Only one type of deceased[x] may be present, found deceasedBoolean, deceasedDateTime",
            "Patient",
        )
    ]


def test_a_value_and_its_extension_are_one_variant():
    assert found(patient(deceasedBoolean=True, _deceasedBoolean={"id": "d"})) == []


# -- required elements -------------------------------------------------------------------------
def test_required_elements_are_missing():
    assert sorted(found({"resourceType": "Observation"})) == [
        ("structure", "Required element is missing", "Observation.code"),
        ("structure", "Required element is missing", "Observation.status"),
    ]
    link = patient(link=[{"type": "seealso"}])
    assert found(link) == [("structure", "Required element is missing", "Patient.link[0].other")]


def test_required_choice_element_is_missing():
    resource = {
        "resourceType": "Questionnaire",
        "status": "draft",
        "useContext": [{"code": {"code": "age"}}],
    }
    assert found(resource) == [
        ("structure", "Required element is missing", "Questionnaire.useContext[0].value")
    ]


# -- resourceType and nested resources ---------------------------------------------------------
def test_root_without_resource_type_is_fatal():
    issues = structural_issues({"id": "x"})
    assert [(i.severity, i.code, i.text, i.expression) for i in issues] == [
        ("fatal", "structure", "resourceType is missing", "resourceType")
    ]


@pytest.mark.parametrize("rt", ["patient", "Citation", "MedicinalProduct", "SubstanceProtein"])
def test_unknown_or_unsupported_root_type_is_not_supported(rt):
    issues = structural_issues({"resourceType": rt})
    assert [(i.severity, i.code, i.text, i.expression) for i in issues] == [
        ("fatal", "not-supported", f"Unknown or unsupported resource type '{rt}'", "resourceType")
    ]


def test_refused_r4_types_are_those_the_r4b_models_lack():
    r4_types = {t for t, k in core_definitions().kinds.items() if k == "resource"}
    lacking = {t for t in r4_types if model_class(t) is None}
    assert lacking == REFUSED_R4_TYPES
    assert R4_ONLY_UNSUPPORTED <= REFUSED_R4_TYPES


def test_contained_resource_without_resource_type():
    assert found(patient(contained=[{"id": "o1"}])) == [
        ("structure", "resourceType is missing", "Patient.contained[0].resourceType")
    ]


def test_contained_resource_of_unknown_type():
    assert found(patient(contained=[{"resourceType": "Foo", "id": "f"}])) == [
        (
            "not-supported",
            "Unknown or unsupported resource type 'Foo'",
            "Patient.contained[0].resourceType",
        )
    ]


def test_contained_resource_is_checked_as_its_own_type():
    resource = patient(contained=[{"resourceType": "Observation", "id": "o", "status": "final"}])
    assert found(resource) == [
        ("structure", "Required element is missing", "Patient.contained[0].code")
    ]
    assert found(patient(contained=[{"resourceType": "Organization", "foo": 1}])) == [
        ("structure", "Unknown element", "Patient.contained[0].foo")
    ]


def test_bundle_entry_resources():
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "active": "yes"}},
            {"resource": {"id": "x"}},
            {"resource": "Patient/1"},
        ],
    }
    assert found(bundle) == [
        ("structure", "The value must be a JSON boolean", "Bundle.entry[0].resource.active"),
        ("structure", "resourceType is missing", "Bundle.entry[1].resource.resourceType"),
        ("structure", "Expected a JSON object", "Bundle.entry[2].resource"),
    ]


def test_parameters_resource_and_bundle_response_outcome():
    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "a", "resource": {"resourceType": "Patient", "foo": 1}}],
    }
    assert found(params) == [
        ("structure", "Unknown element", "Parameters.parameter[0].resource.foo")
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"response": {"status": "200", "outcome": {"id": "x"}}}],
    }
    assert found(bundle) == [
        ("structure", "resourceType is missing", "Bundle.entry[0].response.outcome.resourceType")
    ]


def test_content_reference_elements_are_checked_as_their_target():
    q = {
        "resourceType": "Questionnaire",
        "status": "draft",
        "item": [{"linkId": "1", "type": "group", "item": [{"type": "string", "foo": 1}]}],
    }
    assert found(q) == [
        ("structure", "Unknown element", "Questionnaire.item[0].item[0].foo"),
        ("structure", "Required element is missing", "Questionnaire.item[0].item[0].linkId"),
    ]


def test_every_issue_is_collected():
    resource = patient(foo=1, active="x", name={"family": "J"})
    assert [e for _, _, e in found(resource)] == ["Patient.foo", "Patient.active", "Patient.name"]


def test_very_deep_nesting_is_an_issue_not_a_crash():
    item: dict[str, Any] = {"linkId": "x", "type": "group"}
    root = item
    for _ in range(3000):
        child: dict[str, Any] = {"linkId": "x", "type": "group"}
        item["item"] = [child]
        item = child
    issues = structural_issues({"resourceType": "Questionnaire", "status": "draft", "item": [root]})
    assert [(i.code, i.text) for i in issues] == [
        ("structure", "The resource is nested too deeply")
    ]
