"""Stores: the embedded SQL store, and (issue #7) a remote FHIR server through the outbox."""

from __future__ import annotations

from adapter.store.repository import (
    HistoryPage,
    Repository,
    SearchPage,
    SearchParam,
    SearchQuery,
    StoredResource,
    conditional_create,
    find_one_or_none,
)

__all__ = [
    "HistoryPage",
    "Repository",
    "SearchPage",
    "SearchParam",
    "SearchQuery",
    "StoredResource",
    "conditional_create",
    "find_one_or_none",
]
