"""Bulk ingest: many Bundles, one commit; each Bundle still all or nothing."""

from __future__ import annotations

import pytest

from adapter.errors import AdapterError
from adapter.store.repository import SearchParam, SearchQuery, current_or_none
from adapter.wiring import build_services
from tests.support.referrals import NHS, referral_bundle


@pytest.fixture
def services(settings):
    s = build_services(settings)
    yield s
    s.close()


def _patients(services, nhs: str) -> int:
    page = services.repo.search(
        "Patient", SearchQuery(params=(SearchParam("identifier", (f"{NHS}|{nhs}",)),))
    )
    assert page.total is not None
    return page.total


def test_batch_keeps_good_bundles_and_rolls_back_only_the_bad_one(services):
    before = services.repo.count()
    results = services.pipeline.transaction_batch(
        [
            referral_bundle("9990000093"),
            referral_bundle("9990000019"),  # bad NHS number: rejected whole
            referral_bundle("9990000107"),
        ]
    )
    assert isinstance(results[0], dict)
    assert isinstance(results[1], AdapterError)
    assert results[1].status == 422
    assert isinstance(results[2], dict)
    assert _patients(services, "9990000093") == 1
    assert _patients(services, "9990000019") == 0
    assert _patients(services, "9990000107") == 1
    # two referrals, each 5 resources, but the practice Organization is shared (ifNoneExist)
    assert services.repo.count() == before + 9


def test_later_bundle_in_a_batch_sees_the_earlier_ones_conditional_creates(services):
    results = services.pipeline.transaction_batch(
        [referral_bundle("9990000115"), referral_bundle("9990000115")]
    )
    assert all(isinstance(r, dict) for r in results), results
    assert _patients(services, "9990000115") == 1
    statuses = [e["response"]["status"] for e in results[1]["entry"]]
    assert statuses[0] == "200 OK"  # the Patient matched the one created earlier in the batch


@pytest.mark.parametrize("size", [1, 2])
def test_a_unit_refused_while_writing_leaves_nothing_behind(services, size):
    """A refusal that comes from the store mid-unit (the second PUT is create-only and its target
    exists) must roll back the unit's first write, alone (a batch of one has no savepoint: the
    unit of work rolls back) or in a batch (its savepoint rolls back)."""
    services.pipeline.transaction_batch([_put_bundle(("Patient", "taken", False))])
    unit = _put_bundle(("Patient", f"first-{size}", False), ("Patient", "taken", True))
    results = services.pipeline.transaction_batch([unit] + [_put_bundle()] * (size - 1))
    assert isinstance(results[0], AdapterError)
    assert results[0].status == 412
    assert current_or_none(services.repo, "Patient", f"first-{size}") is None
    assert len(results) == size


def _put_bundle(*puts: tuple[str, str, bool]) -> dict:
    entries = []
    for rt, rid, create_only in puts:
        request = {"method": "PUT", "url": f"{rt}/{rid}"}
        if create_only:
            request["ifNoneMatch"] = "*"
        entries.append({"resource": {"resourceType": rt, "id": rid}, "request": request})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
