"""The store's short write path (one statement for the current row, index rows diffed, statements on
the driver cursor) keeps every guarantee of the general path, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from adapter.clock import FixedClock
from adapter.errors import Conflict, InputError, PreconditionFailed, UpstreamUnavailable
from adapter.store.migrate import upgrade
from adapter.store.models import CURRENT_TABLE, INDEX_TABLE, VERSION_TABLE
from adapter.store.repository import SearchParam, SearchQuery, current_or_none, find_one_or_none
from adapter.store.sql import SqlRepository, _driver_sql, _plan_search, build_engine, write_engine

SYSTEM = "https://example.org/referral-id"


def referral(status: str = "active", note: str = "first", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "identifier": [{"system": SYSTEM, "value": "REF-1"}],
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "note": [{"text": note}],
        **extra,
    }


def index_rows(repo: SqlRepository, resource_id: str = "sr1") -> list[tuple[Any, ...]]:
    """(row_id, param, system, value, ref_type, ref_id) of one resource, by row_id."""
    i = INDEX_TABLE.c
    statement = (
        sa.select(i.row_id, i.param, i.system, i.value, i.ref_type, i.ref_id)
        .where(i.resource_id == resource_id)
        .order_by(i.row_id)
    )
    with repo.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(statement)]


def version_count(repo: SqlRepository, resource_id: str = "sr1") -> int:
    statement = sa.select(sa.func.count()).where(VERSION_TABLE.c.id == resource_id)
    with repo.engine.connect() as conn:
        return int(conn.execute(statement).scalar_one())


def search(repo: SqlRepository, name: str, value: str) -> list[str]:
    page = repo.search("ServiceRequest", SearchQuery(params=(SearchParam(name, (value,)),)))
    return sorted(f"{r.id}/{r.version_id}" for r in page.resources)


def test_update_with_unchanged_index_rows_leaves_them_and_stays_searchable(repo):
    repo.update(referral())
    repo.update({**referral(), "id": "sr2"})  # so sr1's row ids would not simply be reused
    before = index_rows(repo)

    stored, created = repo.update(referral(note="second"))

    assert (stored.version_id, created) == (2, False)
    assert index_rows(repo) == before  # same row ids: nothing deleted and re-inserted
    assert len(before) == 4  # identifier, status, subject, patient
    assert search(repo, "identifier", f"{SYSTEM}|REF-1") == ["sr1/2", "sr2/1"]
    assert search(repo, "status", "active") == ["sr1/2", "sr2/1"]
    assert search(repo, "patient", "Patient/p1") == ["sr1/2", "sr2/1"]
    assert repo.read("ServiceRequest", "sr1").resource["note"] == [{"text": "second"}]


def test_update_changing_one_searchable_value_rewrites_that_row_only(repo):
    repo.update(referral())
    repo.update({**referral(), "id": "sr2", "identifier": []})
    before = {row[1:]: row[0] for row in index_rows(repo)}

    repo.update(referral(status="on-hold"))

    after = {row[1:]: row[0] for row in index_rows(repo)}
    assert len(after) == 4
    assert ("status", None, "on-hold", None, None) in after
    assert ("status", None, "active", None, None) not in after
    kept = [key for key in before if key[0] != "status"]
    assert all(after[key] == before[key] for key in kept)
    assert search(repo, "status", "on-hold") == ["sr1/2"]
    assert search(repo, "status", "active") == ["sr2/1"]
    assert search(repo, "identifier", f"{SYSTEM}|REF-1") == ["sr1/2"]


def test_an_update_repairs_duplicate_and_foreign_index_rows(repo):
    repo.update(referral())
    extra = {"resource_type": "ServiceRequest", "resource_id": "sr1"}
    with write_engine(repo.engine).begin() as conn:
        conn.execute(
            sa.insert(INDEX_TABLE),
            [
                {**extra, "param": "status", "value": "active"},  # a duplicate
                {**extra, "param": "status", "value": "revoked"},  # not in the resource
            ],
        )

    repo.update(referral(note="second"))

    values = sorted((row[1], row[3] or row[5]) for row in index_rows(repo))
    assert values == [
        ("identifier", "REF-1"),
        ("patient", "p1"),
        ("status", "active"),
        ("subject", "p1"),
    ]
    assert search(repo, "status", "revoked") == []


def test_delete_then_update_brings_the_index_rows_back(repo):
    repo.update(referral())
    repo.delete("ServiceRequest", "sr1")
    assert index_rows(repo) == []
    assert search(repo, "identifier", f"{SYSTEM}|REF-1") == []

    stored, created = repo.update(referral())

    assert (stored.version_id, created) == (3, True)
    assert len(index_rows(repo)) == 4
    assert search(repo, "identifier", f"{SYSTEM}|REF-1") == ["sr1/3"]


def test_stale_if_match_is_412_and_writes_nothing_inside_a_unit_of_work(repo):
    repo.update(referral())
    repo.update(referral(note="second"))
    rows_before = index_rows(repo)

    with pytest.raises(PreconditionFailed) as caught, repo.unit_of_work() as uow:
        uow.update(referral(status="revoked"), if_match=1)

    assert caught.value.status == 412
    assert "is at version 2" in caught.value.issues[0].text
    assert repo.read("ServiceRequest", "sr1").version_id == 2
    assert version_count(repo) == 2
    assert index_rows(repo) == rows_before
    stored, created = repo.update(referral(status="revoked"), if_match=2)
    assert (stored.version_id, created) == (3, False)


def test_if_match_on_a_deleted_resource_at_that_version_recreates_it(repo):
    repo.update(referral())
    repo.delete("ServiceRequest", "sr1")

    with pytest.raises(PreconditionFailed):
        repo.update(referral(), if_match=1)
    stored, created = repo.update(referral(), if_match=2)

    assert (stored.version_id, created) == (3, True)
    assert search(repo, "status", "active") == ["sr1/3"]


def test_create_of_a_taken_id_is_409_and_writes_nothing(repo):
    repo.create(referral(), id="sr1")

    with pytest.raises(Conflict) as caught:
        repo.create(referral(status="revoked"), id="sr1")

    assert caught.value.status == 409
    assert version_count(repo) == 1
    assert search(repo, "status", "revoked") == []


def test_a_meta_that_is_not_an_object_is_400_before_any_row_changes(repo):
    repo.update(referral())

    with pytest.raises(InputError, match="meta must be an object"):
        repo.update(referral(meta=["not", "an", "object"]))

    assert repo.read("ServiceRequest", "sr1").version_id == 1
    assert version_count(repo) == 1


def test_a_driver_error_on_the_short_path_is_a_409_and_the_unit_of_work_rolls_back(repo):
    # A stray version row (no current row) makes the version insert of a create violate the key.
    with write_engine(repo.engine).begin() as conn:
        conn.execute(
            sa.insert(VERSION_TABLE),
            {
                "resource_type": "ServiceRequest",
                "id": "sr1",
                "version_id": 1,
                "last_updated": datetime(2026, 1, 1, tzinfo=UTC),
                "deleted": False,
                "content": "{}",
            },
        )

    def patient_then_referral() -> None:
        with repo.unit_of_work() as uow:
            uow.update({"resourceType": "Patient", "id": "p1"})
            uow.create(referral(), id="sr1")

    with pytest.raises(Conflict) as caught:
        patient_then_referral()

    assert caught.value.status == 409
    with repo.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(CURRENT_TABLE)).scalar() == 0
    assert index_rows(repo) == []
    with pytest.raises(Conflict):  # outside a unit of work: retried, then still a 409, never a 500
        repo.create(referral(), id="sr1")


def test_a_savepoint_rolls_back_short_path_writes_only(repo):
    with repo.unit_of_work() as uow:
        uow.update(referral())

        def two_updates_the_second_stale() -> None:
            with uow.savepoint():
                uow.update(referral(note="second"))
                uow.update(referral(note="third"), if_match=1)

        with pytest.raises(PreconditionFailed):
            two_updates_the_second_stale()
        uow.update({"resourceType": "Patient", "id": "p1"})

    assert repo.read("ServiceRequest", "sr1").version_id == 1
    assert repo.read("Patient", "p1").version_id == 1
    assert version_count(repo) == 1


def test_instants_keep_their_stored_form_when_the_clock_has_no_fraction(database):
    """The driver path formats instants with the column type, not the driver's own adapters."""
    clock = FixedClock(datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC))
    repo = SqlRepository(database.engine, clock=clock)
    repo.update(referral())
    clock.set(datetime(2026, 11, 26, 9, 0, 0, 500000, tzinfo=UTC))
    repo.update({**referral(), "id": "sr2", "identifier": []})

    page = repo.search(
        "ServiceRequest",
        SearchQuery(params=(SearchParam("_lastUpdated", ("ge2026-11-26T09:00:00Z",)),)),
    )

    assert [r.id for r in page.resources] == ["sr1", "sr2"]
    assert page.resources[0].last_updated == datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)
    if database.engine.dialect.name == "sqlite":
        with database.engine.connect() as conn:
            text = conn.exec_driver_sql(
                "SELECT last_updated FROM resource_current WHERE id = 'sr1'"
            ).scalar()
        assert text == "2026-11-26 09:00:00.000000"


def test_conditional_lookup_by_identifier_finds_one_among_many(repo):
    with repo.unit_of_work() as uow:
        for n in range(50):
            uow.update(
                {**referral(), "id": f"sr{n}", "identifier": [{"system": SYSTEM, "value": f"R{n}"}]}
            )
        uow.delete("ServiceRequest", "sr7")

    found = find_one_or_none(
        repo, "ServiceRequest", [SearchParam("identifier", (f"{SYSTEM}|R42",))]
    )

    assert found is not None
    assert found.id == "sr42"
    assert (
        find_one_or_none(repo, "ServiceRequest", [SearchParam("identifier", (f"{SYSTEM}|R7",))])
        is None
    )
    page = repo.search(
        "ServiceRequest",
        SearchQuery(
            params=(SearchParam("identifier", (f"{SYSTEM}|R1", f"{SYSTEM}|R2")),),
            sort=("-_lastUpdated",),
        ),
    )
    assert sorted(r.id for r in page.resources) == ["sr1", "sr2"]
    assert page.total == 2


def test_sqlite_fetches_selective_matches_by_key_not_by_walking_the_type(tmp_path):
    """Guards the query plan of the conditional-create lookup on SQLite (no statistics there)."""
    url = f"sqlite:///{tmp_path / 'plan.sqlite3'}"
    upgrade(url)
    engine = build_engine(url)

    query = SearchQuery(params=(SearchParam("identifier", (f"{SYSTEM}|R1",)),), count=2)
    shape, values = _plan_search("ServiceRequest", query)
    select, _ = _driver_sql(engine.dialect).search_statements(shape)
    with engine.connect() as conn:
        plan = " ".join(
            str(row[3])
            for row in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + select.sql, tuple(values[n] for n in select.names)
            )
        )

    engine.dispose()
    assert "ix_resource_current_type_last_updated" not in plan
    assert "sqlite_autoindex_resource_current_1" in plan


def test_nested_savepoints_and_a_database_error_inside_one(repo):
    """A failed statement inside a savepoint (on PostgreSQL it aborts the transaction until the
    savepoint is rolled back) leaves the unit usable; an inner savepoint's rollback keeps the
    outer one's writes."""
    with repo.unit_of_work() as uow:
        uow.update(referral())

        def lost_then_refused() -> None:
            with uow.savepoint():
                uow.update(referral(note="lost"))
                # a fault injected on purpose: a statement the database refuses
                uow._driver.execute(uow.connection, "SELECT * FROM no_such_table", ())

        with pytest.raises(sa.exc.DBAPIError):
            lost_then_refused()
        with uow.savepoint():
            uow.update({"resourceType": "Patient", "id": "p1"})

            def stale() -> None:
                with uow.savepoint():
                    uow.update(referral(note="stale"), if_match=7)

            with pytest.raises(PreconditionFailed):
                stale()
        uow.update({"resourceType": "Patient", "id": "p2"})

    assert repo.read("ServiceRequest", "sr1").version_id == 1
    assert repo.read("Patient", "p1").version_id == 1
    assert repo.read("Patient", "p2").version_id == 1
    assert version_count(repo) == 1  # sr1: the "lost" and "stale" versions were rolled back


def test_an_update_of_an_id_just_read_as_absent_inserts_it(repo):
    with repo.unit_of_work() as uow:
        assert current_or_none(uow, "ServiceRequest", "sr1") is None
        stored, created = uow.update(referral())
        again, created_again = uow.update(referral(note="second"))
    assert (stored.version_id, created) == (1, True)
    assert (again.version_id, created_again) == (2, False)
    assert version_count(repo) == 2
    assert search(repo, "identifier", f"{SYSTEM}|REF-1") == ["sr1/2"]


@pytest.mark.parametrize(
    "test_database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_an_absent_read_gone_stale_under_a_concurrent_insert_still_updates(database):
    """PostgreSQL only (SQLite's unit of work holds the write lock, so no one can insert between):
    the unit reads sr1 as absent, another connection creates it, the unit's update then finds the
    id taken and updates it as version 2 instead of failing or writing a second version 1."""
    assert database.engine.dialect.name == "postgresql"
    repo = SqlRepository(database.engine)
    with repo.unit_of_work() as uow:
        assert current_or_none(uow, "ServiceRequest", "sr1") is None
        SqlRepository(database.engine).update(referral(note="concurrent"))
        stored, created = uow.update(referral(note="ours"))
    assert (stored.version_id, created) == (2, False)
    assert version_count(repo) == 2


def test_a_write_blocked_past_the_busy_timeout_is_a_503_lock_error(tmp_path, monkeypatch):
    """SQLite: another process holds the write lock. `BEGIN IMMEDIATE` (issued on the driver)
    waits out the busy timeout, the write is retried, then refused as 503 lock-error, never a
    500 and never half-written."""
    import sqlite3

    import adapter.store.sql_engine as sql_engine

    monkeypatch.setattr(sql_engine, "SQLITE_BUSY_TIMEOUT_MS", 50)
    url = f"sqlite:///{tmp_path / 'locked.sqlite3'}"
    upgrade(url)
    engine = build_engine(url)
    blocker = sqlite3.connect(tmp_path / "locked.sqlite3", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(UpstreamUnavailable) as caught:
            SqlRepository(engine).update(referral())
        assert caught.value.status == 503
        assert caught.value.issues[0].code == "lock-error"
        blocker.execute("ROLLBACK")
        assert SqlRepository(engine).update(referral())[0].version_id == 1
    finally:
        blocker.close()
        engine.dispose()
