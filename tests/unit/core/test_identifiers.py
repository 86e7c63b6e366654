from __future__ import annotations

import pytest

from adapter.fhir.identifiers import (
    NHS_NUMBER_SYSTEM,
    nhs_number_is_valid,
    nhs_number_with_check_digit,
    normalise_identifier_systems,
)


@pytest.mark.parametrize(
    "value", ["9990000018", "9990000026", "9990000034", "9990000042", "9990079196"]
)
def test_valid_nhs_numbers(value):
    assert nhs_number_is_valid(value)


@pytest.mark.parametrize(
    "value",
    [
        "9990000019",
        "9990000000",  # 999 prefix whose check digit would be 10: no valid number
        "999000001",
        "99900000188",
        "999 000 0018",
        "99900000l8",
        "",
        "٩٩٩٠٠٠٠٠١٨",
    ],
)
def test_invalid_nhs_numbers(value):
    assert not nhs_number_is_valid(value)


def test_check_digit_of_ten_means_no_valid_number():
    # 999000003: weights give remainder 1 -> check 10 -> invalid outright
    nine = next(
        f"999{i:06d}" for i in range(1000) if nhs_number_with_check_digit(f"999{i:06d}") is None
    )
    assert all(not nhs_number_is_valid(nine + str(d)) for d in range(10))


def test_legacy_systems_are_normalised_everywhere():
    res = {
        "resourceType": "ServiceRequest",
        "subject": {
            "identifier": {"system": "http://fhir.nhs.net/Id/nhs-number", "value": "9990000018"}
        },
    }
    assert normalise_identifier_systems(res) == 1
    assert res["subject"]["identifier"]["system"] == NHS_NUMBER_SYSTEM
