"""Compartment membership and enforcement helpers, on plain JSON (no server, no database)."""

from __future__ import annotations

import pytest

from adapter.auth.access import (
    authorize_bundle,
    check_readable,
    check_resource,
    filter_bundle_for_grant,
    narrow_search,
    require,
)
from adapter.auth.compartment import in_patient_compartment
from adapter.auth.scopes import SmartGrant
from adapter.errors import Forbidden, NotFound
from adapter.store.repository import SearchParam, SearchQuery

SR_A = {
    "resourceType": "ServiceRequest",
    "id": "sr-a",
    "status": "active",
    "subject": {"reference": "Patient/a"},
}
SR_B = {
    "resourceType": "ServiceRequest",
    "id": "sr-b",
    "status": "draft",
    "subject": {"reference": "https://elsewhere.example/fhir/Patient/b"},
}
PATIENT_A = {"resourceType": "Patient", "id": "a"}
ORG = {"resourceType": "Organization", "id": "o"}


def patient_grant(scope: str = "patient/*.cruds") -> SmartGrant:
    return SmartGrant.from_scope_string(scope, patient="a", client_id="app")


def test_compartment_by_reference_relative_or_absolute_and_the_patient_itself():
    assert in_patient_compartment(SR_A, "a")
    assert in_patient_compartment(SR_B, "b")
    assert not in_patient_compartment(SR_B, "a")
    assert in_patient_compartment(PATIENT_A, "a")
    assert not in_patient_compartment(ORG, "a")
    audit = {"resourceType": "AuditEvent", "entity": [{"what": {"reference": "Patient/a"}}]}
    assert not in_patient_compartment(audit, "a")  # the audit trail is system-scope only


def test_require_raises_forbidden_with_outcome_issue():
    with pytest.raises(Forbidden) as info:
        require(patient_grant("patient/ServiceRequest.rs"), "create", "ServiceRequest")
    assert info.value.issues[0].code == "forbidden"


def test_check_resource_enforces_compartment_for_patient_scopes_only():
    check_resource(patient_grant(), "read", SR_A)
    with pytest.raises(Forbidden):
        check_resource(patient_grant(), "read", SR_B)
    check_resource(SmartGrant.from_scope_string("user/ServiceRequest.rs"), "read", SR_B)
    with pytest.raises(Forbidden):
        check_resource(SmartGrant.from_scope_string("patient/*.rs"), "read", SR_A)  # no patient


def test_v2_constraints_are_matched_on_the_resource():
    grant = SmartGrant.from_scope_string("user/ServiceRequest.rs?status=active")
    check_resource(grant, "read", SR_A)
    with pytest.raises(Forbidden):
        check_resource(grant, "read", SR_B)


def test_narrow_search_adds_the_compartment_parameter():
    query = narrow_search(patient_grant(), "ServiceRequest", SearchQuery())
    assert SearchParam("patient", ("Patient/a",)) in query.params
    assert (
        SearchParam("_id", ("a",))
        in narrow_search(patient_grant(), "Patient", SearchQuery()).params
    )
    assert (
        narrow_search(SmartGrant.from_scope_string("system/*.rs"), "Patient", SearchQuery()).params
        == ()
    )


def test_filter_bundle_drops_other_patients_matches_and_includes():
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 2,
        "entry": [
            {"resource": SR_A, "search": {"mode": "match"}},
            {"resource": SR_B, "search": {"mode": "match"}},
            {"resource": {"resourceType": "Patient", "id": "b"}, "search": {"mode": "include"}},
            {"resource": PATIENT_A, "search": {"mode": "include"}},
        ],
    }
    out = filter_bundle_for_grant(patient_grant(), bundle)
    assert [e["resource"]["id"] for e in out["entry"]] == ["sr-a", "a"]
    assert "total" not in out


def test_authorize_bundle_checks_every_entry_and_reports_each():
    stored = {("ServiceRequest", "sr-b"): SR_B}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": dict(SR_A), "request": {"method": "POST", "url": "ServiceRequest"}},
            {"resource": dict(SR_B), "request": {"method": "POST", "url": "ServiceRequest"}},
            {"request": {"method": "DELETE", "url": "ServiceRequest/sr-b"}},
            {"request": {"method": "GET", "url": "ServiceRequest?status=active"}},
        ],
    }
    with pytest.raises(Forbidden) as info:
        authorize_bundle(patient_grant(), bundle, lambda t, i: stored.get((t, i)))
    expressions = [i.expression for i in info.value.issues]
    assert expressions == [
        "Bundle.entry[1].resource",
        "Bundle.entry[2].request.url",
        "Bundle.entry[3].request.url",
    ]
    authorize_bundle(SmartGrant.from_scope_string("system/*.cruds"), bundle, lambda t, i: None)


def test_conditional_update_in_a_bundle_is_refused_for_patient_scopes():
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": dict(SR_A),
                "request": {"method": "PUT", "url": "ServiceRequest?identifier=x|1"},
            },
        ],
    }
    with pytest.raises(Forbidden) as info:
        authorize_bundle(patient_grant(), bundle, lambda t, i: None)
    assert info.value.issues[0].expression == "Bundle.entry[0].request.url"
    authorize_bundle(SmartGrant.from_scope_string("system/*.cruds"), bundle, lambda t, i: None)


def test_check_readable_hides_other_patients_records_as_404_but_keeps_403_for_scopes():
    grant = patient_grant("patient/ServiceRequest.rs")
    check_readable(grant, "read", SR_A, missing_text="ServiceRequest/sr-a is not known")
    with pytest.raises(NotFound) as hidden:
        check_readable(grant, "read", SR_B, missing_text="ServiceRequest/sr-b is not known")
    assert hidden.value.issues[0].code == "not-found"
    assert hidden.value.issues[0].text == "ServiceRequest/sr-b is not known"
    with pytest.raises(Forbidden):  # no scope for the type at all: nothing to hide
        check_readable(grant, "read", PATIENT_A, missing_text="Patient/a is not known")
