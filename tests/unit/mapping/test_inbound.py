"""Mapped feeds through the pipeline into the store (SQLite and PostgreSQL via `settings`)."""

from __future__ import annotations

import random

import pytest

from adapter.mapping.inbound import Inbound
from adapter.sources import read_extract
from adapter.store.repository import SearchQuery
from adapter.wiring import build_services
from tests.unit.mapping.golden import FIXTURES, registry


@pytest.fixture
def services(settings):
    s = build_services(settings)
    yield s
    s.close()


@pytest.fixture
def inbound(services):
    return Inbound(services.pipeline, registry())


def _versions(services) -> int:
    return services.repo.history(None, None, count=1, offset=0).total


def _score(services, code: str) -> float:
    from adapter.store.repository import SearchQuery

    page = services.repo.search("Observation", SearchQuery(count=50))
    values = [
        r.resource["valueQuantity"]["value"]
        for r in page.resources
        if r.resource["code"]["coding"][0]["code"] == code
    ]
    assert len(values) == 1
    return values[0]


def test_reingesting_the_same_extract_twice_leaves_the_store_unchanged(services, inbound):
    data = (FIXTURES / "csv-dialog" / "complete" / "input.csv").read_bytes()
    spec = registry().get("csv-dialog")
    first = [inbound.ingest(spec, r) for r in read_extract(data, "input.csv")]
    assert [o.status for o in first] == ["stored"]
    count, versions = services.repo.count(), _versions(services)
    assert count == 4
    second = [inbound.ingest(spec, r) for r in read_extract(data, "input.csv")]
    assert [o.status for o in second] == ["unchanged"]
    assert (services.repo.count(), _versions(services)) == (count, versions)


def test_resending_a_v2_message_never_duplicates(services, inbound):
    text = (FIXTURES / "hl7v2-ref-i12-referral" / "routine-gp-referral" / "input.hl7").read_bytes()
    _, ack1 = inbound.handle_v2(text)
    count, versions = services.repo.count(), _versions(services)
    _, ack2 = inbound.handle_v2(text)
    assert "MSA|AA|REF0001" in ack1
    assert "MSA|AA|REF0001" in ack2
    assert (services.repo.count(), _versions(services)) == (count, versions)


def test_bad_nhs_number_gets_ae_ack_naming_pid_3_and_stores_nothing(services, inbound):
    text = (FIXTURES / "hl7v2-ref-i12-referral" / "bad-nhs-number" / "input.hl7").read_bytes()
    outcome, ack = inbound.handle_v2(text)
    segments = ack.split("\r")
    assert segments[1].startswith("MSA|AE|REF0001")
    err = [s for s in segments if s.startswith("ERR|")]
    assert err
    assert err[0].split("|")[2] == "PID^1^3^^1"
    assert "NHS number" in err[0]
    assert outcome is not None
    assert outcome.status == "rejected"
    assert services.repo.count() == 0


def test_unsupported_message_type_gets_ar(inbound):
    _, ack = inbound.handle_v2(b"MSH|^~\\&|A|B|C|D|20261120||ZZZ^Z99|X1|P|2.5.1\r")
    assert ack.split("\r")[1].startswith("MSA|AR|X1")
    assert "MSH^1^9" in ack


def test_dialog_scores_are_exact_whatever_the_obx_order(services, inbound):
    text = (FIXTURES / "hl7v2-oru-r01-dialog" / "complete" / "input.hl7").read_text()
    segments = text.strip("\r").split("\r")
    head, obx = segments[:3], segments[3:]
    random.Random(7).shuffle(obx)
    _, ack = inbound.handle_v2("\r".join(head + obx))
    assert "MSA|AA" in ack
    # items 1-8: 5,3,2,6,4,7,5,6 -> 38/8; items 9-11: 4,5,6 -> 15/3
    assert _score(services, "subjective-quality-of-life") == 4.75
    assert _score(services, "treatment-satisfaction") == 5
    qr = (
        services.repo.search(
            "QuestionnaireResponse",
            __import__("adapter.store.repository", fromlist=["SearchQuery"]).SearchQuery(),
        )
        .resources[0]
        .resource
    )
    assert [i["linkId"] for i in qr["item"]][:4] == [
        "dialog-1",
        "dialog-1-help",
        "dialog-2",
        "dialog-2-help",
    ]


def test_dialog_csv_scores_do_not_depend_on_column_order(services, inbound):
    spec = registry().get("csv-dialog")
    data = (FIXTURES / "csv-dialog" / "columns-reordered" / "input.csv").read_bytes()
    assert [inbound.ingest(spec, r).status for r in read_extract(data, "input.csv")] == ["stored"]
    assert _score(services, "subjective-quality-of-life") == 4.75
    assert _score(services, "treatment-satisfaction") == 5


def test_an_unexpected_failure_gets_ar_asking_for_a_resend_and_stores_nothing(
    services, inbound, monkeypatch, caplog
):
    """An MLLP sender must always get an answer; AR tells it to send again, and nothing is half stored."""

    def broken(bundles):
        raise RuntimeError("disk on fire 9990000018")  # an injected fault, with data in its text

    monkeypatch.setattr(services.pipeline, "transaction_batch", broken)
    text = (FIXTURES / "hl7v2-ref-i12-referral" / "routine-gp-referral" / "input.hl7").read_bytes()
    outcome, ack = inbound.handle_v2(text)
    assert outcome is None
    segments = ack.split("\r")
    assert segments[1].startswith("MSA|AR|REF0001")
    assert any(s.startswith("ERR|") and "send it again" in s for s in segments)
    assert services.repo.count() == 0
    [record] = [r for r in caplog.records if r.name == "adapter.mapping.inbound"]
    assert record.error == "RuntimeError"
    logged = caplog.text + repr(record.__dict__)
    assert "9990000018" not in logged and "disk on fire" not in logged


def test_resending_a_dialog_whose_mean_is_not_a_binary_fraction_adds_no_version(services, inbound):
    """A mean like 4.38 is a float in the mapping and a Decimal once read back from the store; the
    no-op check must compare them as the same JSON number, or every re-send adds a version."""
    text = (FIXTURES / "hl7v2-oru-r01-dialog" / "complete" / "input.hl7").read_text()
    first_item = "OBX|1|NM|1037651000000100^DIALOG item 1^SCT|score|5|"
    assert first_item in text
    text = text.replace(first_item, first_item.replace("|score|5|", "|score|2|"))
    outcome, ack = inbound.handle_v2(text)
    assert "MSA|AA" in ack, ack
    assert outcome is not None
    assert outcome.status == "stored"
    means = [
        r.resource["valueQuantity"]["value"]
        for r in services.repo.search("Observation", SearchQuery(count=10)).resources
    ]
    assert any(str(m) not in ("4.5", "4.25", "4.75") and "." in str(m) for m in means), means
    versions = _versions(services)
    again, _ = inbound.handle_v2(text)
    assert again is not None
    assert again.status == "unchanged", again.written
    assert _versions(services) == versions
