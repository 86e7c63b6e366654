"""QuestionnaireResponse answers: exclusive options, SDC quantity limits, unit options, UCUM."""

from __future__ import annotations

from decimal import Decimal

from adapter.conformance import ucum
from adapter.conformance.questionnaire import questionnaire_issues
from adapter.conformance.terminology import core_artefacts

SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
EXT = "http://hl7.org/fhir/StructureDefinition/"
UCUM = "http://unitsofmeasure.org"


def qty(value, code=None, unit=None):
    out = {"value": Decimal(str(value))}
    if code:
        out |= {"system": UCUM, "code": code}
    if unit:
        out["unit"] = unit
    return out


def check(item, answers):
    q = {"resourceType": "Questionnaire", "item": [{"linkId": "q1", "repeats": True, **item}]}
    qr = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "item": [{"linkId": "q1", "answer": answers}],
    }
    return questionnaire_issues(q, qr, core_artefacts())


def limits(lo, hi):
    return {
        "type": "quantity",
        "extension": [
            {"url": SDC + "sdc-questionnaire-minQuantity", "valueQuantity": lo},
            {"url": SDC + "sdc-questionnaire-maxQuantity", "valueQuantity": hi},
        ],
    }


def test_ucum_compare_converts_within_a_dimension_only():
    assert ucum.compare(Decimal(10000), "m", Decimal(5), "km") == 1
    assert ucum.compare(Decimal(1), "[mi_i]", Decimal(1609), "m") == 1
    assert ucum.compare(Decimal(5), "kg", Decimal(10), "[mi_i]") == "incomparable"
    assert ucum.compare(Decimal(5), "{beats}", Decimal(10), "m") is None


def test_quantity_within_limits_in_other_units_passes():
    assert check(limits(qty(1, "km"), qty(5, "km")), [{"valueQuantity": qty(2000, "m")}]) == []


def test_quantity_outside_limits_after_conversion_is_an_error():
    found = check(limits(qty(1, "km"), qty(5, "km")), [{"valueQuantity": qty(10000, "m")}])
    assert [(i.code, i.expression) for i in found] == [
        ("invariant", "QuestionnaireResponse.item[0].answer[0].valueQuantity")
    ]
    assert "greater than the allowed maximum" in found[0].text


def test_quantity_limits_without_formal_units_or_in_another_dimension_are_errors():
    found = check(
        limits(qty(1, unit="Kg"), qty(5, unit="Kg")), [{"valueQuantity": qty(2, unit="Kg")}]
    )
    assert len(found) == 2
    assert all("no formal (UCUM) units" in i.text for i in found)
    found = check(limits(qty(1, "[mi_i]"), qty(5, "[mi_i]")), [{"valueQuantity": qty(2, "kg")}])
    assert len(found) == 2
    assert all("cannot be compared" in i.text for i in found)


def test_unit_option_must_match_system_and_code():
    item = {
        "type": "quantity",
        "extension": [
            {
                "url": EXT + "questionnaire-unitOption",
                "valueCoding": {"system": UCUM, "code": "km"},
            },
            {"url": EXT + "questionnaire-unitOption", "valueCoding": {"system": UCUM, "code": "m"}},
        ],
    }
    assert check(item, [{"valueQuantity": qty(3, "m")}]) == []
    assert len(check(item, [{"valueQuantity": qty(3, "kg")}])) == 1


def test_unit_value_set_draws_on_its_code_systems():
    vs = "http://hl7.org/fhir/ValueSet/ucum-units"
    item = {
        "type": "quantity",
        "extension": [{"url": EXT + "questionnaire-unitValueSet", "valueCanonical": vs}],
    }
    assert check(item, [{"valueQuantity": qty(3, "m")}]) == []
    item["extension"][0]["valueCanonical"] = "http://hl7.org/fhir/ValueSet/jurisdiction"
    found = check(
        item, [{"valueQuantity": qty(3, "km")}, {"valueQuantity": {"value": 1, "system": UCUM}}]
    )
    assert [i.expression for i in found] == [
        "QuestionnaireResponse.item[0].answer[0].valueQuantity",
        "QuestionnaireResponse.item[0].answer[1].valueQuantity",
    ]


def test_exclusive_option_cannot_be_selected_with_another():
    item = {
        "type": "choice",
        "answerOption": [
            {"valueCoding": {"system": "http://example.org", "code": "a"}},
            {
                "valueCoding": {"system": "http://example.org", "code": "none"},
                "extension": [{"url": EXT + "questionnaire-optionExclusive", "valueBoolean": True}],
            },
        ],
    }
    a = {"valueCoding": {"system": "http://example.org", "code": "a"}}
    none = {"valueCoding": {"system": "http://example.org", "code": "none"}}
    assert check(item, [none]) == []
    assert check(item, [a]) == []
    found = check(item, [a, none])
    assert [(i.code, i.expression) for i in found] == [
        ("business-rule", "QuestionnaireResponse.item[0].answer[1]")
    ]
