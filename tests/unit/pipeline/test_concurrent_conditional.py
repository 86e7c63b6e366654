"""Two re-deliveries of the same referral at the same moment must not create two Patients."""

from __future__ import annotations

import threading

import pytest

from adapter.errors import AdapterError
from adapter.store.repository import SearchParam, SearchQuery
from adapter.wiring import build_services
from tests.support.referrals import NHS, ODS, referral_bundle


@pytest.fixture
def services(settings):
    s = build_services(settings)
    yield s
    s.close()


def test_concurrent_identical_referrals_make_one_patient_and_one_practice(services):
    n = 6
    barrier = threading.Barrier(n)
    outcomes: list[str] = []
    lock = threading.Lock()

    def send() -> None:
        bundle = referral_bundle("9990000085", practice_ods="Y77777")
        barrier.wait()
        try:
            services.pipeline.transaction(bundle)
            result = "ok"
        except AdapterError as exc:  # a loser may be told to retry; it must never duplicate
            result = f"{exc.status}"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=send) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    patients = services.repo.search(
        "Patient", SearchQuery(params=(SearchParam("identifier", (f"{NHS}|9990000085",)),))
    )
    practices = services.repo.search(
        "Organization", SearchQuery(params=(SearchParam("identifier", (f"{ODS}|Y77777",)),))
    )
    assert patients.total == 1
    assert practices.total == 1
    referrals = services.repo.search(
        "ServiceRequest",
        SearchQuery(params=(SearchParam("subject", (f"Patient/{patients.resources[0].id}",)),)),
    )
    assert referrals.total == outcomes.count("ok")
    assert outcomes.count("ok") >= 1
    assert set(outcomes) <= {"ok", "412", "503"}


def test_concurrent_bulk_batches_make_one_patient_per_nhs_number(services):
    """`adapter ingest` batches run their conditional creates inside one long unit of work; two
    ingests of overlapping files at once (in opposite orders, so a careless lock order would
    deadlock) must still find-or-create each Patient exactly once."""
    numbers = ["9990000085", "9990000069", "9990000034", "9990000026"]
    n = 4
    barrier = threading.Barrier(n)
    outcomes: list[str] = []
    lock = threading.Lock()

    def ingest(k: int) -> None:
        order = numbers if k % 2 == 0 else list(reversed(numbers))
        bundles = [referral_bundle(nhs, practice_ods="Y77777") for nhs in order]
        barrier.wait()
        try:
            replies = services.pipeline.transaction_batch(bundles)
            result = ",".join(
                "ok" if not isinstance(r, AdapterError) else str(r.status) for r in replies
            )
        except AdapterError as exc:
            result = f"batch {exc.status}"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=ingest, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert outcomes == ["ok,ok,ok,ok"] * n
    for nhs in numbers:
        patients = services.repo.search(
            "Patient", SearchQuery(params=(SearchParam("identifier", (f"{NHS}|{nhs}",)),))
        )
        assert patients.total == 1, nhs
    practices = services.repo.search(
        "Organization", SearchQuery(params=(SearchParam("identifier", (f"{ODS}|Y77777",)),))
    )
    assert practices.total == 1
