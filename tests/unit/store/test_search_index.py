"""Pure parts of the search index: extraction of index entries and parsing of query values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapter.errors import InputError
from adapter.fhir.identifiers import NHS_NUMBER_SYSTEM
from adapter.store.search_index import (
    IndexEntry,
    extract_index_entries,
    parse_date,
    parse_reference_value,
    parse_token,
)


def test_extracts_identifiers_status_and_references_once():
    entries = extract_index_entries(
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "identifier": [
                {"system": "http://fhir.nhs.net/Id/nhs-number", "value": "9990000018"},
                {"system": "http://fhir.nhs.net/Id/nhs-number", "value": "9990000018"},
            ],
            "subject": {"reference": "Patient/p1", "display": "ignored"},
        }
    )
    assert entries == [
        IndexEntry("identifier", NHS_NUMBER_SYSTEM, "9990000018"),
        IndexEntry("status", None, "active"),
        IndexEntry("subject", ref_type="Patient", ref_id="p1"),
        IndexEntry("patient", ref_type="Patient", ref_id="p1"),
    ]


def test_patient_param_skips_non_patient_and_untyped_logical_subjects():
    entries = extract_index_entries(
        {"resourceType": "Observation", "subject": {"identifier": {"system": "s", "value": "v"}}}
    )
    assert entries == [IndexEntry("subject", "s", "v")]
    group = extract_index_entries(
        {"resourceType": "Observation", "subject": {"reference": "Group/g"}}
    )
    assert [e.param for e in group] == ["subject"]


def test_episode_of_care_patient_is_patient_even_when_logical():
    entries = extract_index_entries(
        {"resourceType": "EpisodeOfCare", "patient": {"identifier": {"system": "s", "value": "v"}}}
    )
    assert entries == [IndexEntry("patient", "s", "v", "Patient", None)]


def test_codeable_concept_tokens_and_unlisted_types():
    entries = extract_index_entries(
        {
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "urn:c", "code": "active"}, {"code": "x"}]},
        }
    )
    assert entries == [
        IndexEntry("clinical-status", "urn:c", "active"),
        IndexEntry("clinical-status", None, "x"),
    ]
    assert extract_index_entries({"resourceType": "Basic", "identifier": [{"value": "1"}]}) == []


def test_token_forms():
    assert parse_token("identifier", "s|v") == parse_token("identifier", "s|v")
    assert parse_token("identifier", "s|v").system == "s"
    assert parse_token("identifier", "|v").require_no_system
    assert parse_token("identifier", "s|").value is None
    assert not parse_token("identifier", "v").has_system
    assert (
        parse_token("identifier", "https://fhir.nhs.uk/id/nhs-number|1").system == NHS_NUMBER_SYSTEM
    )
    with pytest.raises(InputError):
        parse_token("identifier", "|")


def test_reference_forms():
    assert parse_reference_value("patient", "Patient/1", None).ref_type == "Patient"
    assert parse_reference_value("patient", "https://x.example/fhir/Patient/1", None).ref_id == "1"
    assert parse_reference_value("subject", "1", "Group").ref_type == "Group"
    with pytest.raises(InputError):
        parse_reference_value("subject", "Patient/1", "Group")


@pytest.mark.parametrize(
    ("value", "start", "end"),
    [
        ("2026", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2026-12", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2026-02-28", datetime(2026, 2, 28, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
        (
            "2026-11-26T10:00Z",
            datetime(2026, 11, 26, 10, tzinfo=UTC),
            datetime(2026, 11, 26, 10, 1, tzinfo=UTC),
        ),
        (
            "2026-11-26T10:00:00.5+01:00",
            datetime(2026, 11, 26, 9, 0, 0, 500000, tzinfo=UTC),
            datetime(2026, 11, 26, 9, 0, 0, 600000, tzinfo=UTC),
        ),
    ],
)
def test_dates_become_utc_ranges(value, start, end):
    criterion = parse_date("_lastUpdated", value)
    assert (criterion.prefix, criterion.start, criterion.end) == ("eq", start, end)


def test_date_prefix_and_errors():
    assert parse_date("_lastUpdated", "ge2026").prefix == "ge"
    for bad in ("2026-02-30", "26", "2026-1", "xx2026"):
        with pytest.raises(InputError) as caught:
            parse_date("_lastUpdated", bad)
        assert caught.value.issues[0].expression == "_lastUpdated"
