"""Create, read, vread, update, delete, history and count of the embedded store, on both databases."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from adapter.clock import FixedClock
from adapter.errors import Conflict, Gone, InputError, NotFound, PreconditionFailed
from adapter.store.models import CURRENT_TABLE, INDEX_TABLE, VERSION_TABLE
from adapter.store.sql import SqlRepository

INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def rows(repo: SqlRepository, table: sa.Table) -> list[Any]:
    with repo.engine.connect() as conn:
        return list(conn.execute(sa.select(table)))


def test_create_assigns_id_version_1_and_meta_without_touching_the_input(repo):
    resource = {
        "resourceType": "Patient",
        "id": "ignored",
        "meta": {"profile": ["p"]},
        "active": True,
    }

    stored = repo.create(resource)

    assert re.fullmatch(r"[A-Za-z0-9\-\.]{1,64}", stored.id)
    assert stored.id != "ignored"
    assert stored.version_id == 1
    assert stored.etag == 'W/"1"'
    assert not stored.deleted
    assert stored.resource["id"] == stored.id
    assert stored.resource["meta"]["versionId"] == "1"
    assert stored.resource["meta"]["profile"] == ["p"]
    assert INSTANT.match(stored.resource["meta"]["lastUpdated"])
    assert resource == {
        "resourceType": "Patient",
        "id": "ignored",
        "meta": {"profile": ["p"]},
        "active": True,
    }
    assert repo.read("Patient", stored.id) == stored
    assert repo.count("Patient") == 1


def test_last_updated_is_utc_with_milliseconds_from_the_clock(database):
    repo = SqlRepository(
        database.engine, clock=FixedClock(datetime(2026, 11, 26, 9, 5, 7, 123456, tzinfo=UTC))
    )

    stored = repo.create({"resourceType": "Patient"})

    assert stored.resource["meta"]["lastUpdated"] == "2026-11-26T09:05:07.123Z"
    assert repo.read("Patient", stored.id).last_updated == datetime(
        2026, 11, 26, 9, 5, 7, 123000, tzinfo=UTC
    )


def test_create_with_an_existing_id_is_409_and_writes_nothing(repo):
    repo.create({"resourceType": "Patient", "active": True}, id="p1")

    with pytest.raises(Conflict) as caught:
        repo.create({"resourceType": "Patient", "active": False}, id="p1")

    assert caught.value.status == 409
    assert caught.value.issues[0].code == "duplicate"
    assert repo.read("Patient", "p1").resource["active"] is True
    assert len(rows(repo, VERSION_TABLE)) == 1


def test_create_over_a_deleted_id_continues_the_version_sequence(repo):
    repo.create({"resourceType": "Patient"}, id="p1")
    repo.delete("Patient", "p1")

    stored = repo.create({"resourceType": "Patient"}, id="p1")

    assert stored.version_id == 3
    assert repo.read("Patient", "p1").version_id == 3


@pytest.mark.parametrize("bad_id", ["", "a/b", "x" * 65, "spa ce"])
def test_invalid_ids_are_400(repo, bad_id):
    with pytest.raises(InputError) as caught:
        repo.create({"resourceType": "Patient"}, id=bad_id)
    assert caught.value.status == 400
    assert repo.count() == 0


def test_resource_without_resource_type_is_400(repo):
    with pytest.raises(InputError):
        repo.create({"id": "x"})
    with pytest.raises(InputError):
        repo.update({"resourceType": "Patient"})  # no id
    assert repo.count() == 0


def test_read_unknown_is_404_and_vread_unknown_version_is_404(repo):
    with pytest.raises(NotFound) as caught:
        repo.read("Patient", "nope")
    assert caught.value.status == 404
    assert caught.value.issues[0].code == "not-found"
    stored = repo.create({"resourceType": "Patient"})
    with pytest.raises(NotFound):
        repo.vread("Patient", stored.id, 2)


def test_update_creates_with_client_id_then_versions(repo):
    first, created = repo.update({"resourceType": "Patient", "id": "p1", "active": True})
    second, created_again = repo.update(
        {"resourceType": "Patient", "id": "p1", "active": False}, if_match=1
    )

    assert (created, first.version_id) == (True, 1)
    assert (created_again, second.version_id) == (False, 2)
    assert repo.read("Patient", "p1").resource["active"] is False
    assert repo.vread("Patient", "p1", 1).resource["active"] is True
    assert repo.vread("Patient", "p1", 1).resource["meta"]["versionId"] == "1"
    assert [r.version_id for r in rows(repo, CURRENT_TABLE)] == [2]


def test_stale_if_match_returns_412_and_writes_nothing(repo):
    repo.update({"resourceType": "Patient", "id": "p1", "active": True})
    repo.update({"resourceType": "Patient", "id": "p1", "active": False})

    with pytest.raises(PreconditionFailed) as caught:
        repo.update({"resourceType": "Patient", "id": "p1", "active": None}, if_match=1)

    assert caught.value.status == 412
    assert caught.value.issues[0].code == "conflict"
    assert "version 2" in caught.value.issues[0].text
    assert repo.read("Patient", "p1").version_id == 2
    assert len(rows(repo, VERSION_TABLE)) == 2


def test_if_match_on_an_absent_resource_is_412(repo):
    with pytest.raises(PreconditionFailed):
        repo.update({"resourceType": "Patient", "id": "p1"}, if_match=1)
    with pytest.raises(PreconditionFailed):
        repo.delete("Patient", "p1", if_match=1)
    assert repo.count() == 0


def test_delete_makes_a_tombstone_version_and_read_is_410(repo):
    repo.create({"resourceType": "Flag", "status": "active"}, id="f1")

    tombstone = repo.delete("Flag", "f1", if_match=1)

    assert tombstone is not None
    assert tombstone.deleted
    assert tombstone.version_id == 2
    with pytest.raises(Gone) as caught:
        repo.read("Flag", "f1")
    assert caught.value.status == 410
    assert caught.value.issues[0].code == "deleted"
    with pytest.raises(Gone):
        repo.vread("Flag", "f1", 2)
    assert repo.vread("Flag", "f1", 1).resource["status"] == "active"
    assert repo.count("Flag") == 0
    assert rows(repo, INDEX_TABLE) == []


def test_delete_again_or_of_unknown_adds_no_version(repo):
    repo.create({"resourceType": "Flag"}, id="f1")
    repo.delete("Flag", "f1")

    again = repo.delete("Flag", "f1")

    assert again is not None
    assert again.version_id == 2
    assert again.deleted
    assert repo.delete("Flag", "never") is None
    assert len(rows(repo, VERSION_TABLE)) == 2


def test_delete_with_stale_if_match_is_412_and_keeps_the_resource(repo):
    repo.create({"resourceType": "Flag"}, id="f1")
    repo.update({"resourceType": "Flag", "id": "f1"})

    with pytest.raises(PreconditionFailed):
        repo.delete("Flag", "f1", if_match=1)

    assert repo.read("Flag", "f1").version_id == 2


def test_update_after_delete_is_reported_as_created(repo):
    repo.create({"resourceType": "Flag"}, id="f1")
    repo.delete("Flag", "f1")

    stored, created = repo.update({"resourceType": "Flag", "id": "f1"})

    assert created
    assert stored.version_id == 3
    assert repo.count("Flag") == 1


def test_instance_history_is_newest_first_with_paging(repo):
    repo.update({"resourceType": "Patient", "id": "p1"})
    repo.update({"resourceType": "Patient", "id": "p1"})
    repo.delete("Patient", "p1")

    page = repo.history("Patient", "p1", count=2, offset=0)
    rest = repo.history("Patient", "p1", count=2, offset=2)

    assert [v.version_id for v in page.versions] == [3, 2]
    assert page.total == 3
    assert page.has_next
    assert [(v.version_id, v.deleted) for v in rest.versions] == [(1, False)]
    assert not rest.has_next
    with pytest.raises(NotFound):
        repo.history("Patient", "unknown", count=10, offset=0)


def test_type_and_system_history(database):
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    repo = SqlRepository(database.engine, clock=clock)
    repo.create({"resourceType": "Patient"}, id="p1")
    clock.set(datetime(2026, 1, 2, tzinfo=UTC))
    repo.create({"resourceType": "Flag"}, id="f1")
    clock.set(datetime(2026, 1, 3, tzinfo=UTC))
    repo.update({"resourceType": "Patient", "id": "p1"})

    by_type = repo.history("Patient", None, count=10, offset=0)
    everything = repo.history(None, None, count=10, offset=0)

    assert [(v.id, v.version_id) for v in by_type.versions] == [("p1", 2), ("p1", 1)]
    assert [(v.resource_type, v.version_id) for v in everything.versions] == [
        ("Patient", 2),
        ("Flag", 1),
        ("Patient", 1),
    ]
    assert everything.total == 3
    assert not everything.has_next
    assert repo.history("Observation", None, count=10, offset=0).total == 0


def test_count_is_current_non_deleted_resources(repo):
    repo.create({"resourceType": "Patient"}, id="p1")
    repo.update({"resourceType": "Patient", "id": "p1"})
    repo.create({"resourceType": "Patient"}, id="p2")
    repo.create({"resourceType": "Flag"}, id="f1")
    repo.delete("Patient", "p2")

    assert repo.count() == 2
    assert repo.count("Patient") == 1
    assert repo.count("Observation") == 0


def test_decimal_precision_survives_storage(repo):
    stored = repo.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "valueQuantity": {"value": Decimal("1.50")},
        }
    )

    value = repo.read("Observation", stored.id).resource["valueQuantity"]["value"]

    assert str(value) == "1.50"
    content = rows(repo, VERSION_TABLE)[0].content
    assert '"value":1.50' in content


def test_an_unmigrated_database_raises_503_not_a_driver_error(tmp_path):
    from adapter.errors import UpstreamUnavailable
    from adapter.store.sql import build_engine

    engine = build_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    try:
        with pytest.raises(UpstreamUnavailable) as caught:
            SqlRepository(engine).create({"resourceType": "Patient"})
        assert caught.value.status == 503
        assert caught.value.__cause__ is not None
        assert "INSERT" not in str(caught.value)  # the statement never leaks into the outcome
    finally:
        engine.dispose()
