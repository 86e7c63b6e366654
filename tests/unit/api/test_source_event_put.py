"""A stamped PUT older than the stored version's source event is answered, not written (HAZ-035),
through the REST update as through a transaction. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from adapter.fhir.source_event import SourceEvent, event_of, stamp

NEWER = SourceEvent("RIO|RT5", datetime(2026, 12, 4, 10, 55, tzinfo=UTC), "ADT0002")
OLDER = SourceEvent("RIO|RT5", datetime(2026, 11, 20, 13, 55, tzinfo=UTC), "ADT0001")


def _patient(family: str, event: SourceEvent) -> dict:
    resource = {
        "resourceType": "Patient",
        "id": "stamped-1",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}],
        "name": [{"family": family}],
        "gender": "unknown",
    }
    stamp(resource, event)
    return resource


def _put(client, resource: dict):
    return client.put(
        "/fhir/Patient/stamped-1", json=resource, headers={"Content-Type": "application/fhir+json"}
    )


def test_an_older_stamped_put_is_answered_with_the_stored_version_and_not_written(client):
    first = _put(client, _patient("Newer", NEWER))
    assert first.status_code == 201, first.text
    replay = _put(client, _patient("Older", OLDER))
    assert replay.status_code == 200, replay.text
    assert replay.headers["ETag"] == first.headers["ETag"], "no new version"
    stored = client.get("/fhir/Patient/stamped-1").json()
    assert stored["name"][0]["family"] == "Newer"
    assert event_of(stored) == NEWER


def test_a_newer_stamped_put_and_an_unstamped_one_are_written(client):
    _put(client, _patient("Older", OLDER))
    newer = _put(client, _patient("Newer", NEWER))
    assert newer.status_code == 200, newer.text
    assert newer.headers["ETag"] == 'W/"2"'
    unstamped = {k: v for k, v in _patient("Clinician", NEWER).items() if k != "meta"}
    assert _put(client, unstamped).headers["ETag"] == 'W/"3"'
    assert client.get("/fhir/Patient/stamped-1").json()["name"][0]["family"] == "Clinician"
