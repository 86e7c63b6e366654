"""ADT cancel events end to end: A11 (cancel admit) and A13 (cancel discharge) through
`Inbound.handle_v2` into a real store, on top of the A01/A03 admission they cancel.

The cancel mapping (mappings/hl7v2/adt_a11_a13.cancel.yaml) must key the very Encounter and
EpisodeOfCare the A01/A03 mapping made: a cancel that made a second Encounter would leave the
admission open. Assertions look at clinical elements (status, period, hospitalization), not whole
stored resources, so provenance stamps in `meta` do not matter here.
"""

from __future__ import annotations

import pytest

from adapter.mapping.engine import apply_mapping
from adapter.sources import parse_message
from adapter.store.repository import SearchQuery
from tests.unit.mapping import test_inbound
from tests.unit.mapping.golden import FIXTURES, registry

# the store and Inbound fixtures of test_inbound, shared rather than copied
services = test_inbound.services
inbound = test_inbound.inbound
_versions = test_inbound._versions

ADMIT_DISCHARGE = FIXTURES / "hl7v2-adt-a01-a03-encounter"
CANCEL = FIXTURES / "hl7v2-adt-a11-a13-cancel"
A01 = (ADMIT_DISCHARGE / "admission" / "input.hl7").read_bytes()
A03 = (ADMIT_DISCHARGE / "discharge" / "input.hl7").read_bytes()
A11 = (CANCEL / "cancel-admit" / "input.hl7").read_bytes()
A13 = (CANCEL / "cancel-discharge" / "input.hl7").read_bytes()
A11_BAD_NHS_NUMBER = (CANCEL / "cancel-admit-bad-nhs-number" / "input.hl7").read_bytes()


def _only(services, resource_type: str) -> dict:
    """The one stored resource of this type (current version): a second one is a duplicate."""
    page = services.repo.search(resource_type, SearchQuery(count=50))
    assert len(page.resources) == 1, f"exactly one {resource_type}, got {len(page.resources)}"
    return page.resources[0].resource


def _msa(ack: str) -> str:
    return ack.split("\r")[1]


def _ids(mapping_id: str, text: bytes) -> dict[str, str]:
    reg = registry()
    result = apply_mapping(reg.get(mapping_id), parse_message(text), reg.concept_maps)
    assert not [i for i in result.issues if i.is_blocking]
    return {
        m.resource["resourceType"]: m.resource["id"]
        for m in result.resources
        if m.resource["resourceType"] in ("Encounter", "EpisodeOfCare")
    }


@pytest.mark.parametrize("visit_number", ["SP000451", "SP999001", "V-12/3"])
def test_cancel_mapping_keys_the_same_encounter_and_episode_as_admit_and_discharge(visit_number):
    def visit(text: bytes) -> bytes:
        return text.replace(b"SP000451^", visit_number.encode() + b"^")

    admitted = _ids("hl7v2-adt-a01-a03-encounter", visit(A01))
    discharged = _ids("hl7v2-adt-a01-a03-encounter", visit(A03))
    assert set(admitted) == {"Encounter", "EpisodeOfCare"}
    assert _ids("hl7v2-adt-a11-a13-cancel", visit(A11)) == admitted
    assert _ids("hl7v2-adt-a11-a13-cancel", visit(A13)) == admitted == discharged


def test_a11_after_a01_cancels_the_same_encounter_and_episode(services, inbound):
    _, ack = inbound.handle_v2(A01)
    assert _msa(ack).startswith("MSA|AA|ADT0001")
    admitted = _only(services, "Encounter")
    assert admitted["status"] == "in-progress"

    outcome, ack = inbound.handle_v2(A11)

    assert _msa(ack).startswith("MSA|AA|ADT0003")
    assert not [s for s in ack.split("\r") if s.startswith("ERR|")]
    assert outcome is not None
    assert outcome.status == "stored"
    encounter = _only(services, "Encounter")
    assert encounter["id"] == admitted["id"]
    assert encounter["status"] == "cancelled"
    assert encounter["meta"]["versionId"] == "2"
    episode = _only(services, "EpisodeOfCare")
    assert episode["status"] == "cancelled"
    assert encounter["episodeOfCare"] == [{"reference": f"EpisodeOfCare/{episode['id']}"}]
    assert services.repo.count("Patient") == 1


def test_a13_after_a03_reopens_the_admission_without_the_cancelled_discharge(services, inbound):
    for text, control_id in ((A01, "ADT0001"), (A03, "ADT0002")):
        _, ack = inbound.handle_v2(text)
        assert _msa(ack).startswith(f"MSA|AA|{control_id}")
    discharged = _only(services, "Encounter")
    assert discharged["status"] == "finished"
    assert "end" in discharged["period"]
    assert "dischargeDisposition" in discharged["hospitalization"]
    assert "end" in _only(services, "EpisodeOfCare")["period"]

    outcome, ack = inbound.handle_v2(A13)  # still repeats the discharge's PV1-36 and PV1-45

    assert _msa(ack).startswith("MSA|AA|ADT0004")
    encounter = _only(services, "Encounter")
    assert encounter["id"] == discharged["id"]
    assert encounter["status"] == "in-progress"
    assert encounter["period"] == {"start": discharged["period"]["start"]}
    assert "dischargeDisposition" not in encounter.get("hospitalization", {})
    episode = _only(services, "EpisodeOfCare")
    assert episode["status"] == "active"
    assert "end" not in episode["period"]
    # the repeated discharge fields are reported as ignored, with the reason, not dropped silently
    assert outcome is not None
    for field in ("PV1-45", "PV1-36"):
        assert field in outcome.result.ignored
        assert field not in outcome.result.used
        [issue] = [i for i in outcome.issues if i.expression == field]
        assert issue.severity == "information"
        assert "deliberately not mapped: discharge" in issue.text
        assert issue.diagnostics == "rule hl7v2-adt-a11-a13-cancel@1.0.0#ignore"


def test_resending_the_same_a11_adds_no_version(services, inbound):
    inbound.handle_v2(A01)
    inbound.handle_v2(A11)
    count, versions = services.repo.count(), _versions(services)

    outcome, ack = inbound.handle_v2(A11)

    assert _msa(ack).startswith("MSA|AA|ADT0003")
    assert outcome is not None
    assert outcome.status == "unchanged"
    assert (services.repo.count(), _versions(services)) == (count, versions)
    assert _only(services, "Encounter")["meta"]["versionId"] == "2"


def test_a11_with_bad_nhs_number_gets_ae_naming_pid_3_and_stores_nothing(services, inbound):
    inbound.handle_v2(A01)
    count, versions = services.repo.count(), _versions(services)

    outcome, ack = inbound.handle_v2(A11_BAD_NHS_NUMBER)

    segments = ack.split("\r")
    assert segments[1].startswith("MSA|AE|ADT0003")
    err = [s for s in segments if s.startswith("ERR|")]
    assert err
    assert err[0].split("|")[2] == "PID^1^3^^1"
    assert "NHS number" in err[0]
    assert outcome is not None
    assert outcome.status == "rejected"
    assert (services.repo.count(), _versions(services)) == (count, versions)
    assert _only(services, "Encounter")["status"] == "in-progress"
