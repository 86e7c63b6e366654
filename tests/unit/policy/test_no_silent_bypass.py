"""An artefact the packs cover, but that no rule recognised, is accepted with a warning."""

from __future__ import annotations

from adapter.context import ValidationContext
from adapter.policy import PolicyEngine
from adapter.settings import Settings


def test_unrecognised_referral_gets_a_warning_not_silence():
    engine = PolicyEngine.from_settings(Settings())
    sr = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p"},
    }
    issues = engine.evaluate(sr, ValidationContext())
    assert [i.severity for i in issues] == ["warning"]
    assert "No policy rule applied" in issues[0].text


def test_recognised_referral_gets_no_bypass_warning():
    engine = PolicyEngine.from_settings(Settings())
    sr = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "priority": "routine",
        "category": [
            {
                "coding": [
                    {
                        "system": "https://fhir.cmh-adapter.example/CodeSystem/referral-type",
                        "code": "cmht-referral",
                    }
                ]
            }
        ],
        "subject": {"reference": "Patient/p"},
    }
    issues = engine.evaluate(sr, ValidationContext())
    assert not any("No policy rule applied" in i.text for i in issues)


def test_types_outside_the_artefacts_get_no_bypass_warning():
    engine = PolicyEngine.from_settings(Settings())
    assert engine.evaluate({"resourceType": "Patient"}, ValidationContext()) == []
