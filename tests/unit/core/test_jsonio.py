"""FHIR JSON in and out: decimals kept exactly, and deep copies that share nothing mutable."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapter.fhir import jsonio


def test_decimals_round_trip_with_their_precision():
    text = '{"resourceType":"Observation","valueQuantity":{"value":1.50}}'
    value = jsonio.loads(text)
    assert value["valueQuantity"]["value"] == Decimal("1.50")
    assert jsonio.dumps(value) == text


def test_duplicate_keys_are_a_syntax_error():
    with pytest.raises(jsonio.JsonSyntaxError):
        jsonio.loads('{"a": 1, "a": 2}')


def test_copy_json_shares_no_container_with_the_original():
    original = jsonio.loads(
        '{"resourceType":"Patient","name":[{"given":["Ann"],"family":"X"}],'
        '"extension":[{"url":"u","valueDecimal":2.10}]}'
    )
    copied = jsonio.copy_json(original)
    assert copied == original
    copied["name"][0]["given"].append("Bo")
    copied["name"].append({"family": "Y"})
    copied["extension"][0]["url"] = "v"
    assert original["name"] == [{"given": ["Ann"], "family": "X"}]
    assert original["extension"][0]["url"] == "u"
    assert jsonio.dumps(copied["extension"][0]) == '{"url":"v","valueDecimal":2.10}'


def test_without_store_meta_keeps_content_and_other_meta_in_order():
    from adapter.fhir.meta import without_store_meta

    stored = {
        "resourceType": "Patient",
        "id": "p",
        "meta": {"versionId": "3", "lastUpdated": "2026-11-26T10:00:00Z", "tag": [{"code": "x"}]},
        "gender": "female",
    }
    assert without_store_meta(stored) == {
        "resourceType": "Patient",
        "id": "p",
        "meta": {"tag": [{"code": "x"}]},
        "gender": "female",
    }
    assert list(without_store_meta(stored)) == ["resourceType", "id", "meta", "gender"]
    only_ours = {**stored, "meta": {"versionId": "3", "lastUpdated": "2026-11-26T10:00:00Z"}}
    assert "meta" not in without_store_meta(only_ours)
    assert stored["meta"]["versionId"] == "3"  # the original is untouched


@pytest.mark.parametrize(
    ("sent", "held", "same"),
    [
        (4.38, Decimal("4.38"), True),  # a mapped mean, and the stored text read back
        (4.5, Decimal("4.50"), True),  # the same decimal value
        (4.38, Decimal("4.39"), False),
        (5, Decimal("5"), True),
        (1, True, False),  # a boolean is never a number
        (True, True, True),
        ("4.38", Decimal("4.38"), False),  # a string is not a number
        ({"a": [1, {"b": 2.1}]}, {"a": [1, {"b": Decimal("2.10")}]}, True),
        ({"a": [1, {"b": 2.1}]}, {"a": [1, {"b": Decimal("2.2")}]}, False),
        ({"a": 1}, {"a": 1, "b": None}, False),
        ([1, 2], [2, 1], False),
        (None, None, True),
    ],
)
def test_same_json_compares_numbers_by_decimal_value_and_nothing_else_loosely(sent, held, same):
    from adapter.fhir.meta import same_json

    assert same_json(sent, held) is same
    assert same_json(held, sent) is same
