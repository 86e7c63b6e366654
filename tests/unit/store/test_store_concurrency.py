"""Races between threads on one repository: If-Match is compare-and-set on both databases."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from adapter.errors import AdapterError, Conflict, PreconditionFailed

THREADS = 8


def race(action: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """Runs `action(i)` in THREADS threads released together; returns (results, errors)."""
    barrier = threading.Barrier(THREADS)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcome = action(i)
        except BaseException as exc:  # collected and asserted on below
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results, errors


def test_concurrent_updates_with_the_same_if_match_exactly_one_wins(repo):
    repo.update({"resourceType": "ServiceRequest", "id": "sr1", "status": "draft"})

    results, errors = race(
        lambda i: repo.update(
            {
                "resourceType": "ServiceRequest",
                "id": "sr1",
                "status": "active",
                "note": [{"text": str(i)}],
            },
            if_match=1,
        )
    )

    assert len(results) == 1
    assert len(errors) == THREADS - 1
    assert all(isinstance(e, PreconditionFailed) and e.status == 412 for e in errors)
    winner, _ = results[0]
    current = repo.read("ServiceRequest", "sr1")
    assert current.version_id == 2
    assert current.resource["note"] == winner.resource["note"]
    assert repo.history("ServiceRequest", "sr1", count=10, offset=0).total == 2


def test_concurrent_updates_without_if_match_all_land_as_distinct_versions(repo):
    repo.update({"resourceType": "Task", "id": "t1", "status": "requested"})

    results, errors = race(
        lambda i: repo.update({"resourceType": "Task", "id": "t1", "status": "requested"})
    )

    assert errors == []
    assert sorted(stored.version_id for stored, _ in results) == list(range(2, THREADS + 2))
    assert repo.read("Task", "t1").version_id == THREADS + 1


def test_concurrent_creates_of_one_id_exactly_one_wins(repo):
    results, errors = race(lambda i: repo.create({"resourceType": "Patient"}, id="p1"))

    assert len(results) == 1
    assert len(errors) == THREADS - 1
    assert all(isinstance(e, Conflict) for e in errors)
    assert repo.read("Patient", "p1").version_id == 1


def test_concurrent_client_id_updates_of_an_absent_resource_never_lose_a_write(repo):
    results, errors = race(
        lambda i: repo.update({"resourceType": "Flag", "id": "f1", "status": "active"})
    )

    assert [e for e in errors if not isinstance(e, AdapterError)] == []
    assert errors == []
    assert sum(created for _, created in results) == 1
    assert repo.read("Flag", "f1").version_id == THREADS
