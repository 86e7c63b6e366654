"""An older v2 message re-delivered after a newer one never overwrites what the newer one wrote.

Runs on SQLite and PostgreSQL (the `settings` fixture). See adapter/fhir/source_event.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from adapter.fhir.source_event import SOURCE_EVENT_URL, SourceEvent, event_of, stamp, superseding
from adapter.mapping.source_events import source_event
from adapter.sources import read_extract
from adapter.sources.hl7v2 import parse_message
from tests.unit.mapping import test_inbound
from tests.unit.mapping.golden import FIXTURES, registry

# the store and Inbound fixtures of test_inbound, shared rather than copied
services = test_inbound.services
inbound = test_inbound.inbound

ADT = FIXTURES / "hl7v2-adt-a01-a03-encounter"
A01 = (ADT / "admission" / "input.hl7").read_text()
A03 = (ADT / "discharge" / "input.hl7").read_text()
ENCOUNTER = "Encounter/586ed2fa44208f8891d925282475efefe6f37db0"
EPISODE = "EpisodeOfCare/f45cb9a4da1d18fa4405e445dbf46785798b7578"


def _current(services, ref: str):
    resource_type, resource_id = ref.split("/")
    return services.repo.read(resource_type, resource_id)


def _segments(ack: str) -> list[str]:
    return ack.split("\r")


def test_an_admission_replayed_after_the_discharge_does_not_reopen_the_encounter(services, inbound):
    for message in (A01, A03):
        _, ack = inbound.handle_v2(message)
        assert "MSA|AA" in ack, ack
    discharged = _current(services, ENCOUNTER)
    assert discharged.resource["status"] == "finished"

    outcome, ack = inbound.handle_v2(A01)  # the interface engine replays its queue

    encounter = _current(services, ENCOUNTER)
    assert encounter.version_id == discharged.version_id, "no new version"
    assert encounter.resource["status"] == "finished"
    assert encounter.resource["period"]["end"] == "2026-12-04T10:30:00+00:00"
    assert "dischargeDisposition" in encounter.resource["hospitalization"]
    assert _current(services, EPISODE).resource["status"] == "finished"
    assert outcome is not None
    assert sorted(outcome.superseded) == [ENCOUNTER, EPISODE]
    errs = [s for s in _segments(ack) if s.startswith("ERR")]
    assert _segments(ack)[1].startswith("MSA|AA|ADT0001")
    assert len(errs) == 2, errs
    assert all("|W|" in e and "superseded" in e for e in errs), errs
    assert all("|EVN^1^2|" in e for e in errs), "ERR-2 names the event time the decision used"


def test_messages_in_order_are_applied_and_each_version_carries_its_event(services, inbound):
    inbound.handle_v2(A01)
    admitted = event_of(_current(services, ENCOUNTER).resource)
    inbound.handle_v2(A03)
    discharged = event_of(_current(services, ENCOUNTER).resource)
    assert admitted == SourceEvent("RIO|RT5", datetime(2026, 11, 20, 13, 55, tzinfo=UTC), "ADT0001")
    assert discharged == SourceEvent(
        "RIO|RT5", datetime(2026, 12, 4, 10, 55, tzinfo=UTC), "ADT0002"
    )
    assert _current(services, ENCOUNTER).resource["status"] == "finished"


def test_the_event_time_is_evn_2_when_the_message_was_sent_late(services, inbound):
    """A01 recorded at 13:55 on 20 Nov but only sent (MSH-7) after the A03: still older."""
    late_a01 = A01.replace("|20261120140000|", "|20261204120000|")
    inbound.handle_v2(A03)
    outcome, _ = inbound.handle_v2(late_a01)
    assert outcome is not None
    assert ENCOUNTER in outcome.superseded
    assert _current(services, ENCOUNTER).resource["status"] == "finished"


def test_without_evn_the_message_time_decides(services, inbound):
    no_evn_a03 = "\r".join(s for s in A03.splitlines() if not s.startswith("EVN"))
    no_evn_a01 = "\r".join(s for s in A01.splitlines() if not s.startswith("EVN"))
    inbound.handle_v2(no_evn_a03)
    outcome, ack = inbound.handle_v2(no_evn_a01)
    assert outcome is not None
    assert ENCOUNTER in outcome.superseded
    assert "|MSH^1^7|" in ack


def test_a_later_message_from_another_sender_is_not_compared(services, inbound):
    """Clocks of two senders are not comparable: the later arrival wins, as without stamps."""
    inbound.handle_v2(A03)
    other = A01.replace("MSH|^~\\&|RIO|RT5|", "MSH|^~\\&|SYSTMONE|RT5|")
    outcome, _ = inbound.handle_v2(other)
    assert outcome is not None
    assert outcome.superseded == []
    assert _current(services, ENCOUNTER).resource["status"] == "in-progress"


def test_an_out_of_order_file_keeps_the_latest_event_within_one_batch(services, inbound):
    spec = registry().for_message("ADT", "A01")
    outcomes = inbound.ingest_batch(spec, [parse_message(A03), parse_message(A01)])
    assert [o.status for o in outcomes] == ["stored", "unchanged"]
    assert sorted(outcomes[1].superseded) == [ENCOUNTER, EPISODE]
    assert [i.severity for i in outcomes[1].issues if "superseded" in i.text] == ["warning"] * 2
    assert _current(services, ENCOUNTER).resource["status"] == "finished"


def test_a_stamped_transaction_entry_older_than_the_stored_one_is_answered_not_written(
    services, inbound
):
    """The same rule for a FHIR client's transaction (prepared on another connection, so the
    stored version is read again under the unit of work)."""
    inbound.handle_v2(A03)
    stored = _current(services, ENCOUNTER)
    older = {k: v for k, v in stored.resource.items() if k != "meta"}
    older["status"] = "in-progress"
    stamp(older, SourceEvent("RIO|RT5", datetime(2026, 11, 21, tzinfo=UTC), "X1"))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": older, "request": {"method": "PUT", "url": ENCOUNTER}}],
    }
    reply = services.pipeline.transaction(bundle)
    entry = reply["entry"][0]
    assert entry["response"]["status"] == "200 OK"
    assert entry["response"]["etag"] == stored.etag
    texts = [i["details"]["text"] for i in entry["response"]["outcome"]["issue"]]
    assert any("superseded" in t for t in texts), texts
    assert _current(services, ENCOUNTER).resource["status"] == "finished"


# -- the stamp itself --------------------------------------------------------------------------
def test_a_local_v2_time_is_read_as_london_time():
    summer = A01.replace("|20261120135500", "|20260601110000")
    found = source_event(registry().for_message("ADT", "A01"), parse_message(summer))
    assert found is not None
    assert found.event is not None
    assert found.field == "EVN-2"
    assert found.event.instant == datetime(2026, 6, 1, 11, 0, tzinfo=timezone(timedelta(hours=1)))


def test_no_readable_v2_time_means_no_stamp():
    no_times = A01.replace("|20261120140000|", "||").replace("|20261120135500", "|")
    assert source_event(registry().for_message("ADT", "A01"), parse_message(no_times)) is None


# -- extracts that name an event_time column --------------------------------------------------
RISK = FIXTURES / "csv-risk-assessment" / "revised-with-last-updated" / "input.csv"
RISK_ASSESSMENT = "RiskAssessment"


def _risk_rows(**changes: str) -> list:
    header, row = RISK.read_text().splitlines()[:2]
    columns, values = header.split(","), row.split(",")
    for name, value in changes.items():
        values[columns.index(name)] = value
    return list(read_extract(("\n".join([header, ",".join(values)]) + "\n").encode(), "risk.csv"))


def _risk_levels(services) -> list[str]:
    from adapter.store.repository import SearchQuery

    page = services.repo.search(RISK_ASSESSMENT, SearchQuery(count=10))
    return [
        r.resource["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] for r in page.resources
    ]


def test_an_older_extract_re_run_after_a_newer_one_does_not_put_back_the_old_risk(
    services, inbound
):
    spec = registry().get("csv-risk-assessment")
    newer = inbound.ingest_batch(spec, _risk_rows())
    assert [o.status for o in newer] == ["stored"]
    level = _risk_levels(services)
    older = _risk_rows(risk_level="HIGH", last_updated="2026-11-20T12:00:00")
    [outcome] = inbound.ingest_batch(spec, older)
    assert outcome.status == "unchanged"
    assert any(ref.startswith("RiskAssessment/") for ref in outcome.superseded)
    assert [i.expression for i in outcome.issues if "superseded" in i.text] == [
        "last_updated"
    ] * len(outcome.superseded)
    assert _risk_levels(services) == level
    [later] = inbound.ingest_batch(spec, _risk_rows(risk_level="HIGH", last_updated="2026-11-28"))
    assert later.status == "stored", "a later extract still updates"
    assert _risk_levels(services) != level


def test_an_extract_time_that_is_not_a_date_refuses_the_row_naming_the_column(services, inbound):
    spec = registry().get("csv-risk-assessment")
    [outcome] = inbound.ingest_batch(spec, _risk_rows(last_updated="yesterday"))
    assert outcome.status == "rejected"
    assert [i.expression for i in outcome.issues if i.is_blocking] == ["last_updated"]
    assert services.repo.count() == 0


def test_an_empty_extract_time_means_no_stamp():
    spec = registry().get("csv-risk-assessment")
    assert source_event(spec, _risk_rows(last_updated="")[0]) is None
    found = source_event(spec, _risk_rows(last_updated="2026-11-27")[0])
    assert found is not None
    assert found.event is not None
    assert found.event.sender == "csv:csv-risk-assessment"
    assert found.event.instant == datetime(2026, 11, 27, tzinfo=UTC)


def test_stamp_replaces_the_previous_stamp_and_keeps_other_meta():
    resource = {
        "resourceType": "Encounter",
        "meta": {"profile": ["p"], "extension": [{"url": "x"}]},
    }
    first = SourceEvent("A|B", datetime(2026, 1, 1, tzinfo=UTC), "1")
    second = SourceEvent("A|B", datetime(2026, 1, 2, tzinfo=UTC), "2")
    stamp(resource, first)
    stamp(resource, second)
    assert resource["meta"]["profile"] == ["p"]
    urls = [x["url"] for x in resource["meta"]["extension"]]
    assert urls == ["x", SOURCE_EVENT_URL]
    assert event_of(resource) == second


@pytest.mark.parametrize(
    "instant",
    ["not a time", "2026-01-01T10:00:00", 42],
    ids=["garbage", "no offset", "not a string"],
)
def test_an_unreadable_stamp_is_no_stamp(instant):
    resource = {
        "meta": {
            "extension": [
                {
                    "url": SOURCE_EVENT_URL,
                    "extension": [
                        {"url": "sender", "valueString": "A|B"},
                        {"url": "instant", "valueInstant": instant},
                    ],
                }
            ]
        }
    }
    assert event_of(resource) is None


def test_only_a_strictly_later_event_of_the_same_sender_supersedes():
    def stamped(sender: str, day: int) -> dict:
        r: dict = {"resourceType": "Encounter"}
        stamp(r, SourceEvent(sender, datetime(2026, 1, day, tzinfo=UTC)))
        return r

    assert superseding(stamped("A", 2), stamped("A", 1)) is not None
    assert superseding(stamped("A", 2), stamped("A", 2)) is None
    assert superseding(stamped("A", 1), stamped("A", 2)) is None
    assert superseding(stamped("B", 2), stamped("A", 1)) is None
    assert superseding({"resourceType": "Encounter"}, stamped("A", 1)) is None
    assert superseding(stamped("A", 2), {"resourceType": "Encounter"}) is None


def test_event_time_is_refused_on_a_v2_mapping():
    """A v2 message's event time is EVN-2, else MSH-7: a mapping cannot name another one."""
    import yaml

    from adapter.errors import ArtefactLoadError
    from adapter.mapping.spec import parse_spec

    path = "mappings/hl7v2/adt_a01_a03.encounter.yaml"
    data = yaml.safe_load((FIXTURES.parents[1] / path).read_text())
    assert parse_spec(data, path).event_time is None
    data["source"]["event_time"] = "PV1-44"
    with pytest.raises(ArtefactLoadError, match="event_time"):
        parse_spec(data, path)
