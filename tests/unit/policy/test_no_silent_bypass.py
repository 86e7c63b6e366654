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


def test_a_type_no_pack_judges_skips_selection_and_is_not_judged(monkeypatch):
    """A Patient or a Practitioner has no rule in any pack, Welsh or English: evaluate() answers
    at once, without walking it for jurisdiction."""
    from adapter.policy import jurisdiction

    engine = PolicyEngine.from_settings(Settings())
    judged = {r.applies_to for r in engine.rules()}
    assert "Patient" not in judged
    assert "Practitioner" not in judged

    def no_walk(*_args):
        raise AssertionError("jurisdiction walked for a type no rule judges")

    monkeypatch.setattr(jurisdiction, "detect", no_walk)
    assert (
        engine.evaluate({"resourceType": "Practitioner", "active": True}, ValidationContext()) == []
    )
    assert engine.evaluate({"resourceType": "Patient"}, ValidationContext()) == []
