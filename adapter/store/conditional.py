"""Conditional writes on any Repository: locks for conditional criteria, and no-op detection.

- `lock_criteria` serialises conditional creates/updates on the same criteria (a PostgreSQL
  advisory lock through `Repository.lock`; SQLite units of work already hold the write lock), so
  two re-deliveries of one referral cannot both see "no match" and both create.
  `conditional_lock_keys` lists a batch's criteria in one sorted order, so batches cannot deadlock.
- `unchanged_current` answers the current version when an update would change nothing (as HAPI
  does): re-sent feeds then add no versions.
- `superseded_current` answers the current version when an update is stamped with an older source
  event of the same sender than it (`fhir/source_event.py`): a replayed message writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from adapter.errors import AdapterError
from adapter.fhir.meta import same_json, without_store_meta
from adapter.fhir.search import parse_query_string
from adapter.fhir.source_event import SourceEvent, event_of, superseding
from adapter.fhir.types import JsonObject
from adapter.store.repository import Repository, SearchParam, StoredResource, current_or_none

#: "Not read yet": the current version must be read under the unit of work.
NOT_READ: Final = object()


def lock_key(resource_type: str, criteria: Sequence[SearchParam]) -> str:
    return (
        resource_type
        + "?"
        + "&".join(
            f"{p.name}{':' + p.modifier if p.modifier else ''}={','.join(sorted(p.values))}"
            for p in sorted(criteria, key=lambda p: (p.name, p.modifier or "", p.values))
        )
    )


def lock_criteria(uow: Repository, resource_type: str, criteria: Sequence[SearchParam]) -> None:
    lock = getattr(uow, "lock", None)
    if callable(lock):
        lock(lock_key(resource_type, criteria))


def conditional_lock_keys(bundles: Sequence[JsonObject]) -> list[str]:
    """Every conditional create/update criterion in the Bundles, as sorted, distinct lock keys.
    Malformed entries are skipped here: they fail later, when the pipeline parses the entries."""
    keys: set[str] = set()
    for bundle in bundles:
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        for raw in entries if isinstance(entries, list) else ():
            request = raw.get("request") if isinstance(raw, dict) else None
            if not isinstance(request, dict):
                continue
            method = str(request.get("method", "")).upper()
            url = str(request.get("url", ""))
            if method == "POST" and isinstance(request.get("ifNoneExist"), str):
                resource_type, query = url.split("?", 1)[0].strip("/"), request["ifNoneExist"]
            elif method == "PUT" and "?" in url:
                resource_type, query = url.split("?", 1)
                resource_type = resource_type.strip("/")
            else:
                continue
            try:
                keys.add(lock_key(resource_type, parse_query_string(query).params))
            except AdapterError:
                continue
    return sorted(keys)


def unchanged_current(
    repo: Repository,
    resource: JsonObject,
    if_match: int | None,
    known: StoredResource | object | None = NOT_READ,
) -> StoredResource | None:
    """The current version when an update would change nothing (a no-op, as HAPI does): re-sent
    feeds then add no versions. A stale If-Match is still a 412, so this answers None then.
    `known` is the current version already read on this unit of work's connection, if any."""
    current = (
        current_or_none(repo, str(resource["resourceType"]), str(resource["id"]))
        if known is NOT_READ
        else known
    )
    if not isinstance(current, StoredResource):
        return None
    if if_match is not None and if_match != current.version_id:
        return None
    held, sent = without_store_meta(current.resource), without_store_meta(resource)
    if held == sent or same_json(sent, held):  # `==` first: the usual answer, at C speed
        return current
    return None


def superseded_current(
    repo: Repository, resource: JsonObject, known: StoredResource | object | None = NOT_READ
) -> tuple[StoredResource, SourceEvent] | None:
    """(The current version, its source event) when `resource` is stamped with an older event of
    the same sender, so the update must not be written; None otherwise. An unstamped resource is
    never read for. `known` as in `unchanged_current`."""
    if event_of(resource) is None:
        return None
    current = (
        current_or_none(repo, str(resource["resourceType"]), str(resource["id"]))
        if known is NOT_READ
        else known
    )
    if not isinstance(current, StoredResource):
        return None
    held = superseding(current.resource, resource)
    return None if held is None else (current, held)
