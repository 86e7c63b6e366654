"""DIALOG ORU^R01 result status end to end: OBR-25 (table 0123) and OBX-11 (table 0085) through
`Inbound.handle_v2` into a real store (mappings/hl7v2/oru_r01.dialog.yaml, version 1.1.0).

A final report (F) is stored as a completed response with final scores; a correction (C) replaces
it as amended/corrected; a report posted as wrong (W) retracts the very resources the F made
(same ids from OBR-3) as entered-in-error; anything not final (P, or an OBX-11 such as D) is
refused with AE and nothing stored. The fixtures are the golden cases of the mapping.
"""

from __future__ import annotations

from decimal import Decimal

from adapter.store.repository import SearchQuery
from tests.unit.mapping import test_inbound
from tests.unit.mapping.golden import FIXTURES

# the store and Inbound fixtures of test_inbound, shared rather than copied
services = test_inbound.services
inbound = test_inbound.inbound
_versions = test_inbound._versions

CASES = FIXTURES / "hl7v2-oru-r01-dialog"
FINAL = (CASES / "complete" / "input.hl7").read_bytes()  # MSH-7 20261120103000, OBR-25 absent
CORRECTED = (CASES / "corrected-c" / "input.hl7").read_bytes()  # MSH-7 20261121093000, OBR-25 C
WRONG = (CASES / "wrong-patient-w" / "input.hl7").read_bytes()  # MSH-7 20261122110000, OBR-25 W
PRELIMINARY = (CASES / "preliminary-p-refused" / "input.hl7").read_bytes()  # OBR-25 P
OBX_DELETED = (CASES / "obx-deleted-d-refused" / "input.hl7").read_bytes()  # OBX[3]-11 D

SCORE_CODES = ("subjective-quality-of-life", "treatment-satisfaction")


def _only(services, resource_type: str) -> dict:
    page = services.repo.search(resource_type, SearchQuery(count=50))
    assert len(page.resources) == 1, f"exactly one {resource_type}, got {len(page.resources)}"
    return page.resources[0].resource


def _scores(services) -> dict[str, dict]:
    page = services.repo.search("Observation", SearchQuery(count=50))
    found = {r.resource["code"]["coding"][0]["code"]: r.resource for r in page.resources}
    assert set(found) == set(SCORE_CODES), "exactly the two DIALOG score Observations"
    assert len(page.resources) == 2
    return found


def _value(observation: dict) -> Decimal:
    """The score as stored, exactly (the store gives Decimal; a float would go through str)."""
    return Decimal(str(observation["valueQuantity"]["value"]))


def _msa(ack: str) -> str:
    return ack.split("\r")[1]


def _errs(ack: str) -> list[list[str]]:
    return [s.split("|") for s in ack.split("\r") if s.startswith("ERR|")]


def _stored_final(services, inbound) -> tuple[dict, dict[str, dict]]:
    _, ack = inbound.handle_v2(FINAL)
    assert _msa(ack).startswith("MSA|AA|DLG0001")
    response = _only(services, "QuestionnaireResponse")
    scores = _scores(services)
    assert response["status"] == "completed"
    assert {o["status"] for o in scores.values()} == {"final"}
    return response, scores


def test_w_after_f_retracts_the_same_response_and_scores_as_entered_in_error(services, inbound):
    response, scores = _stored_final(services, inbound)

    outcome, ack = inbound.handle_v2(WRONG)

    assert _msa(ack).startswith("MSA|AA|DLG0003")
    assert _errs(ack) == []
    assert outcome is not None
    assert outcome.status == "stored"
    retracted = _only(services, "QuestionnaireResponse")
    assert retracted["id"] == response["id"]
    assert retracted["status"] == "entered-in-error"
    assert retracted["meta"]["versionId"] == "2"
    for code, score in _scores(services).items():
        assert score["id"] == scores[code]["id"]
        assert score["status"] == "entered-in-error"
        assert score["meta"]["versionId"] == "2"
    assert services.repo.count("Patient") == 1


def test_c_after_f_amends_the_response_and_corrects_the_scores_exactly(services, inbound):
    response, scores = _stored_final(services, inbound)

    outcome, ack = inbound.handle_v2(CORRECTED)

    assert _msa(ack).startswith("MSA|AA|DLG0002")
    assert outcome is not None
    assert outcome.status == "stored"
    amended = _only(services, "QuestionnaireResponse")
    assert amended["id"] == response["id"]
    assert amended["status"] == "amended"
    answers = {i["linkId"]: i["answer"][0] for i in amended["item"]}
    assert answers["dialog-1"] == {"valueInteger": 3}  # was 5
    assert answers["dialog-9"] == {"valueInteger": 7}  # was 4
    corrected = _scores(services)
    for code in SCORE_CODES:
        assert corrected[code]["id"] == scores[code]["id"]
        assert corrected[code]["status"] == "corrected"
    # items 1-8: 3,3,2,6,4,7,5,6 -> 36/8; items 9-11: 7,5,6 -> 18/3 (both were 4.75 and 5)
    assert _value(corrected["subjective-quality-of-life"]) == Decimal("4.5")
    assert _value(corrected["treatment-satisfaction"]) == Decimal(6)


def test_preliminary_report_gets_ae_naming_obr_25_and_stores_nothing(services, inbound):
    outcome, ack = inbound.handle_v2(PRELIMINARY)

    assert _msa(ack).startswith("MSA|AE|DLG0004")
    errs = _errs(ack)
    locations = [e[2] for e in errs]
    assert "OBR^1^25" in locations
    [obr_err, *_] = [e for e in errs if e[2] == "OBR^1^25"]
    assert obr_err[4] == "E"
    assert "'P'" in obr_err[8]
    assert "OBX^1^11" in locations  # each P item is named too
    assert outcome is not None
    assert outcome.status == "rejected"
    assert services.repo.count() == 0


def test_deleted_obx_in_a_final_report_gets_ae_naming_that_obx_and_stores_nothing(
    services, inbound
):
    _stored_final(services, inbound)
    count, versions = services.repo.count(), _versions(services)

    outcome, ack = inbound.handle_v2(OBX_DELETED)

    assert _msa(ack).startswith("MSA|AE|DLG0005")
    errs = _errs(ack)
    assert [e[2] for e in errs] == ["OBX^3^11"]
    assert "OBX[3]-11" in errs[0][8]
    assert "'D'" in errs[0][8]
    assert outcome is not None
    assert outcome.status == "rejected"
    assert [i.expression for i in outcome.issues if i.severity == "error"] == ["OBX[3]-11"]
    assert (services.repo.count(), _versions(services)) == (count, versions)
    assert _only(services, "QuestionnaireResponse")["status"] == "completed"


def test_f_replayed_after_w_is_superseded_and_does_not_unretract(services, inbound):
    _stored_final(services, inbound)
    inbound.handle_v2(WRONG)
    versions = _versions(services)

    outcome, ack = inbound.handle_v2(FINAL)  # older MSH-7 than the W

    assert _msa(ack).startswith("MSA|AA|DLG0001")
    assert outcome is not None
    response = _only(services, "QuestionnaireResponse")
    scores = _scores(services)
    assert response["status"] == "entered-in-error"
    assert {o["status"] for o in scores.values()} == {"entered-in-error"}
    superseded = set(outcome.superseded)
    assert f"QuestionnaireResponse/{response['id']}" in superseded
    assert {f"Observation/{o['id']}" for o in scores.values()} <= superseded
    warnings = [i for i in outcome.issues if i.severity == "warning"]
    assert len(warnings) >= 3
    assert all("superseded" in i.text for i in warnings)
    assert _versions(services) == versions


def test_a_missing_obx_11_is_named_like_a_present_one(services, inbound):
    """A required field absent inside a group is named by its record key (`OBX[3]-11`), so the
    ACK's ERR-2 points at it (`OBX^3^11`) as it does for a present but wrong value."""
    segments = FINAL.decode().replace("\n", "\r").split("\r")
    third = [i for i, s in enumerate(segments) if s.startswith("OBX|")][2]
    fields = segments[third].split("|")
    fields[11] = ""
    segments[third] = "|".join(fields)
    outcome, ack = inbound.handle_v2("\r".join(segments).encode())
    assert _msa(ack).startswith("MSA|AE")
    assert [e[2] for e in _errs(ack)] == ["OBX^3^11"]
    assert outcome is not None
    assert [i.expression for i in outcome.issues if i.is_blocking] == ["OBX[3]-11"]
    assert services.repo.count() == 0


def test_group_field_names_are_derived_from_the_instance_keys():
    from adapter.mapping.rules import _global_name

    assert _global_name("OBX-11", "OBX-5", "OBX-5") == "OBX-11"  # the first OBX
    assert _global_name("OBX-11", "OBX-5", "OBX[3]-5") == "OBX[3]-11"
    assert _global_name("4", "1", "PID-3[2].1") == "PID-3[2].4"  # a repetition
    assert _global_name("answer", "linkId", "item[0].linkId") == "item[0].answer"  # a path prefix
    assert _global_name("OBX-11", ".", "item[0]") is None  # no shape to derive from
