"""The Repository protocol both stores implement, and conditional operations built once on top.

A store persists and finds; it never decides whether a resource is valid (that is the pipeline's job).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from adapter.errors import Gone, NotFound, PreconditionFailed
from adapter.fhir.types import JsonObject
from adapter.issue import Issue


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as stored. `resource` includes `id` and `meta.versionId/lastUpdated`."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    resource: JsonObject
    deleted: bool = False

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One parsed search parameter, e.g. name="identifier", modifier=None, values=("sys|val",).

    Repeated parameters are ANDed (separate SearchParams); comma-separated values are ORed.
    """

    name: str
    values: tuple[str, ...]
    modifier: str | None = None


@dataclass(frozen=True, slots=True)
class SearchQuery:
    params: tuple[SearchParam, ...] = ()
    count: int = 20
    offset: int = 0
    total: bool = True
    sort: tuple[str, ...] = ()  # e.g. ("-_lastUpdated",)


@dataclass(frozen=True, slots=True)
class SearchPage:
    resources: list[StoredResource]
    total: int | None
    has_next: bool


@dataclass(slots=True)
class HistoryPage:
    versions: list[StoredResource] = field(default_factory=list)
    total: int = 0
    has_next: bool = False


#: The search parameters every store must support (issue #2); more are added per resource type.
COMMON_SEARCH_PARAMS: tuple[str, ...] = (
    "_id",
    "_lastUpdated",
    "identifier",
    "patient",
    "subject",
    "status",
)


class Repository(Protocol):
    """Synchronous repository. Every method may raise NotFound, Gone, PreconditionFailed or Conflict.

    `unit_of_work()` yields a repository whose writes commit together or not at all; transaction
    Bundles, conditional creates and the outbox use it.
    """

    def create(self, resource: JsonObject, *, id: str | None = None) -> StoredResource: ...

    def read(self, resource_type: str, id: str) -> StoredResource: ...

    def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource: ...

    def update(
        self, resource: JsonObject, *, if_match: int | None = None
    ) -> tuple[StoredResource, bool]:
        """Update (or create with a client id). Returns (stored, created). Stale if_match -> 412."""
        ...

    def delete(
        self, resource_type: str, id: str, *, if_match: int | None = None
    ) -> StoredResource | None: ...

    def search(self, resource_type: str, query: SearchQuery) -> SearchPage: ...

    def history(
        self, resource_type: str | None, id: str | None, *, count: int, offset: int
    ) -> HistoryPage: ...

    def count(self, resource_type: str | None = None) -> int: ...

    def unit_of_work(self) -> AbstractContextManager[Repository]: ...

    def supported_search_params(self, resource_type: str) -> Sequence[str]: ...


def current_or_none(repo: Repository, resource_type: str, id: str) -> StoredResource | None:
    """The current version, or None when there is none (never stored, or deleted)."""
    try:
        return repo.read(resource_type, id)
    except (NotFound, Gone):
        return None


def resource_lookup(repo: Repository) -> Callable[[str, str], JsonObject | None]:
    """(type, id) -> the current resource or None: what validation contexts and access checks
    resolve references with."""

    def lookup(resource_type: str, id: str) -> JsonObject | None:
        current = current_or_none(repo, resource_type, id)
        return None if current is None else current.resource

    return lookup


def find_one_or_none(
    repo: Repository, resource_type: str, params: Sequence[SearchParam]
) -> StoredResource | None:
    """Conditional match: None for no match, the match for one, 412 for several (R4 http.html)."""
    page = repo.search(resource_type, SearchQuery(params=tuple(params), count=2, total=False))
    if len(page.resources) > 1:
        raise PreconditionFailed(
            [
                Issue(
                    "error",
                    "multiple-matches",
                    f"Conditional criteria match more than one {resource_type}",
                )
            ]
        )
    return page.resources[0] if page.resources else None


def conditional_create(
    repo: Repository, resource: JsonObject, criteria: Sequence[SearchParam]
) -> tuple[StoredResource, bool]:
    """Create unless the criteria already match. Returns (stored, created)."""
    existing = find_one_or_none(repo, str(resource["resourceType"]), criteria)
    if existing is not None:
        return existing, False
    return repo.create(resource), True


def iter_pages(
    repo: Repository, resource_type: str, query: SearchQuery
) -> Iterator[StoredResource]:
    offset = query.offset
    while True:
        page = repo.search(
            resource_type,
            SearchQuery(
                params=query.params, count=query.count, offset=offset, total=False, sort=query.sort
            ),
        )
        yield from page.resources
        if not page.has_next:
            return
        offset += query.count
