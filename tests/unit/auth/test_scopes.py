"""Scope parsing (SMART App Launch 2.2 scopes-and-launch-context): v1, v2, granular constraints."""

from __future__ import annotations

import pytest

from adapter.auth.scopes import (
    ScopeSyntaxError,
    SmartGrant,
    narrow_scopes,
    parse_scope,
    parse_scopes,
)


@pytest.mark.parametrize(
    ("text", "letters"),
    [
        ("patient/ServiceRequest.read", "rs"),
        ("user/ServiceRequest.write", "cud"),
        ("system/ServiceRequest.*", "cruds"),
        ("patient/Observation.rs", "rs"),
        ("user/*.cruds", "cruds"),
        ("system/Patient.c", "c"),
        ("http://smarthealthit.org/fhir/scopes/patient/Patient.r", "r"),
    ],
)
def test_v1_and_v2_map_to_cruds_letters(text, letters):
    rule = parse_scope(text)
    assert rule is not None
    assert rule.permissions == frozenset(letters)


def test_v2_search_constraints_are_kept_as_pairs():
    rule = parse_scope(
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/"
        "observation-category|laboratory&status=final"
    )
    assert rule is not None
    assert rule.constraints == (
        ("category", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"),
        ("status", "final"),
    )


@pytest.mark.parametrize(
    "text",
    [
        "patient/Observation.dus",
        "patient/Observation.rr",
        "patient/Observation.",
        "patient/observation.rs",
        "user/Patient.read?x=1",
    ],
)
def test_malformed_resource_scopes_raise(text):
    with pytest.raises(ScopeSyntaxError):
        parse_scope(text)


def test_non_resource_scopes_are_context_scopes_and_unknown_are_reported():
    parsed = parse_scopes(
        "openid fhirUser launch launch/patient offline_access patient/*.rs bogus x/y.z"
    )
    assert parsed.has >= {"openid", "fhirUser", "launch", "launch/patient", "offline_access"}
    assert [r.text for r in parsed.rules] == ["patient/*.rs"]
    assert set(parsed.unknown) == {"bogus", "x/y.z"}


@pytest.mark.parametrize(
    ("requested", "allowed", "granted"),
    [
        ("system/ServiceRequest.rs", "system/*.cruds", "system/ServiceRequest.rs"),
        ("system/ServiceRequest.cruds", "system/ServiceRequest.rs", ""),
        ("patient/Patient.rs", "user/Patient.rs", ""),
        (
            "patient/Observation.rs?category=lab",
            "patient/Observation.rs",
            "patient/Observation.rs?category=lab",
        ),
        ("patient/Observation.rs", "patient/Observation.rs?category=lab", ""),
        ("openid launch/patient", "openid", "openid"),
    ],
)
def test_narrowing_never_grants_more_than_registered(requested, allowed, granted):
    assert narrow_scopes(requested, allowed) == granted


def test_grant_rules_for_interaction_and_type():
    grant = SmartGrant.from_scope_string("patient/ServiceRequest.rs user/Patient.r")
    assert grant.rules_for("s", "ServiceRequest")
    assert not grant.rules_for("c", "ServiceRequest")
    assert grant.rules_for("r", "Patient")
    assert not grant.rules_for("s", "Patient")
    assert SmartGrant.development().rules_for("d", "AuditEvent")
