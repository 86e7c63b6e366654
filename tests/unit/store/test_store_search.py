"""search(): every supported parameter, modifiers, AND/OR, paging, totals and sorting."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from adapter.clock import FixedClock
from adapter.errors import InputError
from adapter.fhir.identifiers import NHS_NUMBER_SYSTEM, nhs_number_with_check_digit
from adapter.store.repository import SearchParam, SearchQuery
from adapter.store.search_index import SEARCH_PARAMETERS
from adapter.store.sql import SqlRepository

NHS_A = nhs_number_with_check_digit("999000001")
NHS_B = nhs_number_with_check_digit("999000002")


def ids(repo, resource_type, *params, **query) -> list[str]:
    page = repo.search(resource_type, SearchQuery(params=tuple(params), **query))
    return [r.id for r in page.resources]


def p(name, *values, modifier=None) -> SearchParam:
    return SearchParam(name, tuple(values), modifier)


@pytest.fixture
def referrals(repo):
    """Two patients (NHS numbers A, B), referrals for each, and one for a Group."""
    assert NHS_A
    assert NHS_B
    repo.create(
        {"resourceType": "Patient", "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": NHS_A}]},
        id="pa",
    )
    repo.create(
        {"resourceType": "Patient", "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": NHS_B}]},
        id="pb",
    )
    repo.create(
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "identifier": [{"system": "https://trust.example/referral", "value": "R1"}],
            "subject": {"reference": "Patient/pa"},
        },
        id="sr-a1",
    )
    repo.create(
        {
            "resourceType": "ServiceRequest",
            "status": "completed",
            "identifier": [{"value": "R2"}],
            "subject": {"reference": "https://other.example/fhir/Patient/pa"},
        },
        id="sr-a2",
    )
    repo.create(
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "subject": {"reference": "Patient/pb"},
        },
        id="sr-b1",
    )
    repo.create(
        {"resourceType": "ServiceRequest", "status": "draft", "subject": {"reference": "Group/pa"}},
        id="sr-group",
    )
    return repo


def test_id_with_or(referrals):
    assert ids(referrals, "ServiceRequest", p("_id", "sr-a1", "sr-b1")) == ["sr-a1", "sr-b1"]
    assert ids(referrals, "ServiceRequest", p("_id", "pa")) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://trust.example/referral|R1", ["sr-a1"]),
        ("R1", ["sr-a1"]),
        ("|R2", ["sr-a2"]),
        ("|R1", []),
        ("https://trust.example/referral|", ["sr-a1"]),
        ("https://elsewhere|R1", []),
    ],
)
def test_identifier_token_forms(referrals, value, expected):
    assert ids(referrals, "ServiceRequest", p("identifier", value)) == expected


def test_status_or_within_a_param_and_across_repeats(referrals):
    assert ids(referrals, "ServiceRequest", p("status", "active", "draft")) == [
        "sr-a1",
        "sr-b1",
        "sr-group",
    ]
    assert ids(referrals, "ServiceRequest", p("status", "active"), p("status", "completed")) == []
    assert ids(referrals, "ServiceRequest", p("status", "active"), p("subject", "Patient/pb")) == [
        "sr-b1"
    ]


@pytest.mark.parametrize("value", ["Patient/pa", "pa", "https://fhir.example/base/Patient/pa"])
def test_patient_matches_relative_bare_and_absolute_but_not_a_group(referrals, value):
    assert ids(referrals, "ServiceRequest", p("patient", value)) == ["sr-a1", "sr-a2"]


def test_subject_matches_any_target_type_unless_typed(referrals):
    assert ids(referrals, "ServiceRequest", p("subject", "pa")) == ["sr-a1", "sr-a2", "sr-group"]
    assert ids(referrals, "ServiceRequest", p("subject", "Group/pa")) == ["sr-group"]
    assert ids(referrals, "ServiceRequest", p("subject", "pa", modifier="Patient")) == [
        "sr-a1",
        "sr-a2",
    ]


@pytest.mark.parametrize("name", ["subject", "patient"])
def test_search_by_nhs_number_finds_the_referrals(referrals, name):
    found = ids(
        referrals, "ServiceRequest", p(name, f"{NHS_NUMBER_SYSTEM}|{NHS_A}", modifier="identifier")
    )
    assert found == ["sr-a1", "sr-a2"]
    assert ids(
        referrals, "ServiceRequest", p(name, f"{NHS_NUMBER_SYSTEM}|{NHS_B}", modifier="identifier")
    ) == ["sr-b1"]
    unknown = nhs_number_with_check_digit("999000003")
    assert (
        ids(
            referrals,
            "ServiceRequest",
            p(name, f"{NHS_NUMBER_SYSTEM}|{unknown}", modifier="identifier"),
        )
        == []
    )


def test_nhs_number_search_follows_patient_changes(referrals):
    referrals.delete("Patient", "pa")
    assert (
        ids(
            referrals,
            "ServiceRequest",
            p("patient", f"{NHS_NUMBER_SYSTEM}|{NHS_A}", modifier="identifier"),
        )
        == []
    )


def test_legacy_nhs_system_spelling_finds_the_same_patient(referrals):
    legacy = "http://fhir.nhs.net/Id/nhs-number"
    assert ids(referrals, "Patient", p("identifier", f"{legacy}|{NHS_A}")) == ["pa"]


def test_logical_reference_by_identifier_is_found(repo):
    repo.create(
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "subject": {
                "type": "Patient",
                "identifier": {"system": NHS_NUMBER_SYSTEM, "value": NHS_A},
            },
        },
        id="logical",
    )
    for name in ("subject", "patient"):
        found = ids(
            repo, "ServiceRequest", p(name, f"{NHS_NUMBER_SYSTEM}|{NHS_A}", modifier="identifier")
        )
        assert found == ["logical"]


def test_index_follows_updates_and_deletes(referrals):
    referrals.update(
        {
            "resourceType": "ServiceRequest",
            "id": "sr-b1",
            "status": "revoked",
            "subject": {"reference": "Patient/pb"},
        }
    )
    referrals.delete("ServiceRequest", "sr-a1")

    assert ids(referrals, "ServiceRequest", p("status", "active")) == []
    assert ids(referrals, "ServiceRequest", p("status", "revoked")) == ["sr-b1"]
    assert ids(referrals, "ServiceRequest", p("patient", "pa")) == ["sr-a2"]


def test_unknown_parameter_is_400_naming_it(referrals):
    with pytest.raises(InputError) as caught:
        referrals.search("ServiceRequest", SearchQuery(params=(p("colour", "red"),)))
    issue = caught.value.issues[0]
    assert caught.value.status == 400
    assert issue.code == "not-supported"
    assert issue.expression == "colour"
    assert "colour" in issue.text
    with pytest.raises(InputError):  # Patient has no status parameter
        referrals.search("Patient", SearchQuery(params=(p("status", "active"),)))


@pytest.mark.parametrize(
    "param",
    [
        p("status", "active", modifier="not"),
        p("_lastUpdated", "2026", modifier="missing"),
        p("patient", "x", modifier="bogus!"),
    ],
)
def test_unsupported_modifiers_are_400(referrals, param):
    with pytest.raises(InputError) as caught:
        referrals.search("ServiceRequest", SearchQuery(params=(param,)))
    assert caught.value.issues[0].expression == param.name


@pytest.mark.parametrize(
    "param",
    [
        p("_lastUpdated", "yesterday"),
        p("_lastUpdated", "2026-13"),
        p("patient", "not a ref"),
        p("identifier", ""),
    ],
)
def test_malformed_values_are_400(referrals, param):
    with pytest.raises(InputError):
        referrals.search("ServiceRequest", SearchQuery(params=(param,)))


@pytest.fixture
def dated(database):
    """Flags written at known instants: f1 2025-12-31T23:59:59.999Z, f2 2026-11-26T10:00:00Z, f3 2026-11-27T00:00:00Z."""
    clock = FixedClock(datetime(2025, 12, 31, 23, 59, 59, 999000, tzinfo=UTC))
    repo = SqlRepository(database.engine, clock=clock)
    repo.create({"resourceType": "Flag", "status": "active"}, id="f1")
    clock.set(datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC))
    repo.create({"resourceType": "Flag", "status": "active"}, id="f2")
    clock.set(datetime(2026, 11, 27, tzinfo=UTC))
    repo.create({"resourceType": "Flag", "status": "active"}, id="f3")
    return repo


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026", ["f2", "f3"]),
        ("eq2025", ["f1"]),
        ("2026-11", ["f2", "f3"]),
        ("2026-11-26", ["f2"]),
        ("ne2026-11-26", ["f1", "f3"]),
        ("2026-11-26T10:00:00Z", ["f2"]),
        ("2026-11-26T10:00:00.000Z", ["f2"]),
        ("2026-11-26T11:00:00+01:00", ["f2"]),
        ("gt2026-11-26", ["f3"]),
        ("sa2026-11-26", ["f3"]),
        ("ge2026-11-26", ["f2", "f3"]),
        ("lt2026-11-26", ["f1"]),
        ("eb2026-11-26", ["f1"]),
        ("le2026-11-26", ["f1", "f2"]),
        ("gt2026-11-26T10:00:00Z", ["f3"]),
        ("le2025-12-31T23:59:59.999Z", ["f1"]),
        ("lt2025-12-31T23:59:59.999Z", []),
    ],
)
def test_last_updated_prefixes_and_precisions(dated, value, expected):
    assert ids(dated, "Flag", p("_lastUpdated", value)) == expected


def test_last_updated_range_is_and_of_two_params(dated):
    found = ids(dated, "Flag", p("_lastUpdated", "ge2026-01-01"), p("_lastUpdated", "lt2026-11-27"))
    assert found == ["f2"]


def test_paging_total_and_has_next(repo):
    for i in range(5):
        repo.create({"resourceType": "Flag", "status": "active"}, id=f"f{i}")
    repo.create({"resourceType": "Flag", "status": "inactive"}, id="other")
    active = (p("status", "active"),)

    pages = [
        repo.search("Flag", SearchQuery(active, count=2, offset=offset)) for offset in (0, 2, 4)
    ]

    assert [[r.id for r in page.resources] for page in pages] == [
        ["f0", "f1"],
        ["f2", "f3"],
        ["f4"],
    ]
    assert [page.has_next for page in pages] == [True, True, False]
    assert [page.total for page in pages] == [5, 5, 5]
    assert repo.search("Flag", SearchQuery(active, count=2, total=False)).total is None
    only_total = repo.search("Flag", SearchQuery(active, count=0))
    assert only_total.resources == []
    assert only_total.total == 5


def test_default_order_is_last_updated_then_id_and_sort_can_reverse(database):
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    repo = SqlRepository(database.engine, clock=clock)
    repo.create({"resourceType": "Flag"}, id="b")
    repo.create({"resourceType": "Flag"}, id="a")  # same instant: id breaks the tie
    clock.set(datetime(2026, 1, 2, tzinfo=UTC))
    repo.create({"resourceType": "Flag"}, id="c")

    assert ids(repo, "Flag") == ["a", "b", "c"]
    assert ids(repo, "Flag", sort=("-_lastUpdated",)) == ["c", "a", "b"]
    assert ids(repo, "Flag", sort=("-_id",)) == ["c", "b", "a"]
    with pytest.raises(InputError):
        repo.search("Flag", SearchQuery(sort=("status",)))


def test_deleted_resources_are_not_found(referrals):
    referrals.delete("ServiceRequest", "sr-b1")
    assert ids(referrals, "ServiceRequest", p("_id", "sr-b1")) == []
    assert "sr-b1" not in ids(referrals, "ServiceRequest", count=100)


def test_supported_search_params(repo):
    assert list(repo.supported_search_params("ServiceRequest")) == [
        "_id",
        "_lastUpdated",
        "identifier",
        "patient",
        "status",
        "subject",
    ]
    assert list(repo.supported_search_params("Basic")) == ["_id", "_lastUpdated"]


# -- every resource type in the table: identifier, status and patient land in the index ------------


def _example(resource_type: str) -> dict[str, Any]:
    """A resource of the type with one value for each of its parameters pointing at Patient/px."""
    patient = {"reference": "Patient/px"}
    resource: dict[str, Any] = {"resourceType": resource_type}
    for name, definition in SEARCH_PARAMETERS[resource_type].items():
        if name == "identifier":
            identifier = {"system": "urn:example", "value": f"{resource_type}-1"}
            path = definition.paths[-1]
            resource[path] = (
                identifier
                if resource_type in ("QuestionnaireResponse", "Composition")
                else [identifier]
            )
        elif definition.kind == "token":
            path = definition.paths[0]
            resource[path] = (
                {"coding": [{"system": "urn:s", "code": "active"}]}
                if name == "clinical-status"
                else "active"
            )
        elif name == "patient":
            head, _, tail = definition.paths[-1].partition(".")
            many = head in ("target", "entity", "agent")
            node = {tail: patient} if tail else patient
            resource[head] = [node] if many else node
    return resource


@pytest.mark.parametrize("resource_type", sorted(SEARCH_PARAMETERS))
def test_every_table_entry_is_searchable(repo, resource_type):
    stored = repo.create(_example(resource_type))
    params = SEARCH_PARAMETERS[resource_type]

    if "identifier" in params:
        assert ids(repo, resource_type, p("identifier", f"urn:example|{resource_type}-1")) == [
            stored.id
        ]
    for name in ("status", "lifecycle-status", "clinical-status"):
        if name in params:
            assert ids(repo, resource_type, p(name, "active")) == [stored.id]
    if "patient" in params:
        assert ids(repo, resource_type, p("patient", "Patient/px")) == [stored.id]
        assert ids(repo, resource_type, p("patient", "Patient/other")) == []
