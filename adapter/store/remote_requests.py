"""What the HTTP backing store sends and reads back: requests, Bundle entries and answers.

The clients in `remote` (`RemoteFhirRepository`, `AsyncFhirClient`) send nothing they do not build
here: the JSON body, the FHIR headers, search parameters, the `PUT`/`DELETE` entries of a transaction
Bundle with their `ifMatch`, and the timeout and pool limits from `Settings`. Answers come back as
`StoredResource`s (`stored_from`: version from `meta`, else the ETag) and Bundle entries. The outbox
builds its messages from the same entries (`PendingWrites` in `outbox_messages`). Nothing here does
I/O: every function takes and returns values.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

import httpx

from adapter.fhir import jsonio
from adapter.fhir.types import JsonObject
from adapter.settings import Settings
from adapter.store.repository import SearchQuery, StoredResource

FHIR_JSON: Final = "application/fhir+json"


# --- requests and answers ---------------------------------------------------------------------


def etag_of(version_id: int) -> str:
    return f'W/"{version_id}"'


def _version_of(resource: JsonObject, response: httpx.Response | None = None) -> int:
    """versionId as an int; from meta, else the ETag. Backends with non-numeric versions (Medplum
    UUIDs) are not supported yet: they read as version 0."""
    raw = (resource.get("meta") or {}).get("versionId")
    if raw is None and response is not None:
        raw = response.headers.get("ETag", "").removeprefix("W/").strip('"')
    text = str(raw or "")
    return int(text) if text.isdigit() else 0


def _instant(resource: JsonObject) -> datetime:
    raw = (resource.get("meta") or {}).get("lastUpdated")
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime.now(UTC)


def stored_from(resource: JsonObject, response: httpx.Response | None = None) -> StoredResource:
    return StoredResource(
        resource_type=str(resource.get("resourceType")),
        id=str(resource.get("id")),
        version_id=_version_of(resource, response),
        last_updated=_instant(resource),
        resource=resource,
    )


def _body(resource: JsonObject) -> bytes:
    return jsonio.dumps(resource).encode("utf-8")


def _search_params(query: SearchQuery) -> list[tuple[str, str]]:
    items = [
        (p.name + (f":{p.modifier}" if p.modifier else ""), ",".join(p.values))
        for p in query.params
    ]
    items += [("_count", str(query.count))]
    if query.offset:
        items.append(("_offset", str(query.offset)))
    if query.sort:
        items.append(("_sort", ",".join(query.sort)))
    if query.total:
        items.append(("_total", "accurate"))
    return items


def _has_next(bundle: JsonObject) -> bool:
    return any(link.get("relation") == "next" for link in bundle.get("link") or [])


def _entries(bundle: JsonObject, *, mode: str | None = "match") -> list[JsonObject]:
    out: list[JsonObject] = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        if mode is not None and (entry.get("search") or {}).get("mode", "match") != mode:
            continue
        out.append(resource)
    return out


def transaction_bundle(entries: Sequence[JsonObject]) -> JsonObject:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def put_entry(resource: JsonObject, *, if_match: int | None = None) -> JsonObject:
    """`PUT Type/id`: idempotent, so a re-delivered message leaves one resource (client-assigned id,
    as FHIR-Converter does with ids derived from business identifiers)."""
    target = f"{resource['resourceType']}/{resource['id']}"
    request: JsonObject = {"method": "PUT", "url": target}
    if if_match is not None:
        request["ifMatch"] = etag_of(if_match)
    return {"fullUrl": target, "resource": resource, "request": request}


def delete_entry(resource_type: str, id: str, *, if_match: int | None = None) -> JsonObject:
    request: JsonObject = {"method": "DELETE", "url": f"{resource_type}/{id}"}
    if if_match is not None:
        request["ifMatch"] = etag_of(if_match)
    return {"request": request}


def transaction_precondition(bundle: JsonObject) -> bool:
    return any(
        (e.get("request") or {}).get("ifMatch") or (e.get("request") or {}).get("ifNoneExist")
        for e in bundle.get("entry") or []
    )


# --- headers and client settings ------------------------------------------------------------


def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON, **(extra or {})}


def _timeout(settings: Settings) -> httpx.Timeout:
    return httpx.Timeout(
        settings.fhir_timeout_seconds, connect=min(5.0, settings.fhir_timeout_seconds)
    )


def _limits(settings: Settings) -> httpx.Limits:
    return httpx.Limits(
        max_connections=settings.fhir_max_connections,
        max_keepalive_connections=settings.fhir_max_connections,
    )
