"""unit_of_work(): every write inside commits together, or none does."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from adapter.errors import Conflict, NotFound
from adapter.store.models import CURRENT_TABLE, INDEX_TABLE, VERSION_TABLE
from adapter.store.repository import SearchParam, SearchQuery


def table_counts(repo) -> tuple[int, int, int]:
    with repo.engine.connect() as conn:
        return tuple(
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (VERSION_TABLE, CURRENT_TABLE, INDEX_TABLE)
        )


def test_rollback_on_exception_leaves_no_rows(repo):
    seen: dict[str, object] = {}

    def write_then_fail() -> None:
        with repo.unit_of_work() as uow:
            patient = uow.create(
                {"resourceType": "Patient", "identifier": [{"system": "s", "value": "1"}]}
            )
            uow.create(
                {
                    "resourceType": "ServiceRequest",
                    "subject": {"reference": f"Patient/{patient.id}"},
                }
            )
            seen["id"], seen["count"] = patient.id, uow.count()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail()

    assert seen["count"] == 2  # the writes were visible inside the transaction
    assert table_counts(repo) == (0, 0, 0)
    with pytest.raises(NotFound):
        repo.read("Patient", str(seen["id"]))


def test_a_failing_write_rolls_back_the_earlier_writes(repo):
    repo.create({"resourceType": "Patient"}, id="taken")

    def write_two() -> None:
        with repo.unit_of_work() as uow:
            uow.create({"resourceType": "Flag"}, id="f1")
            uow.create({"resourceType": "Patient"}, id="taken")

    with pytest.raises(Conflict):
        write_two()

    assert repo.count() == 1
    with pytest.raises(NotFound):
        repo.read("Flag", "f1")


def test_writes_commit_together_and_nested_units_join(repo):
    with repo.unit_of_work() as uow:
        uow.create(
            {"resourceType": "Patient", "identifier": [{"system": "s", "value": "1"}]}, id="p1"
        )
        with uow.unit_of_work() as inner:
            assert inner is uow
            inner.update(
                {
                    "resourceType": "Patient",
                    "id": "p1",
                    "identifier": [{"system": "s", "value": "2"}],
                }
            )
        found = uow.search("Patient", SearchQuery(params=(SearchParam("identifier", ("s|2",)),)))
        assert [r.id for r in found.resources] == ["p1"]

    assert repo.read("Patient", "p1").version_id == 2
    assert table_counts(repo) == (2, 1, 1)


def test_an_exception_in_a_nested_unit_rolls_back_the_outer_one(repo):
    def fail_inside() -> None:
        with repo.unit_of_work() as uow:
            uow.create({"resourceType": "Patient"}, id="p1")
            with uow.unit_of_work() as inner:
                inner.create({"resourceType": "Patient"}, id="p2")
                raise ValueError("inner")

    with pytest.raises(ValueError, match="inner"):
        fail_inside()

    assert repo.count() == 0
