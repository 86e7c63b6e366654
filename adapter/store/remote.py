"""The HTTP backing store: any FHIR R4 server at `FHIR_BASE_URL`, behind the `Repository` protocol.

`RemoteFhirRepository` (sync, pooled `httpx.Client`) serves reads and direct writes; `AsyncFhirClient`
(pooled `httpx.AsyncClient`) is what the outbox delivers with. This module holds the two clients.
Both send requests built by the same helpers (`remote_requests`: bodies, headers, search parameters,
transaction Bundle entries, and reading answers back as `StoredResource`s) and run them inside
`backend_errors` (`remote_errors`), the one context manager that turns httpx errors and backend
answers into our error family and evens out backend quirks (409 vs 412). Authentication (none, a
static bearer token, or SMART Backend Services) is built by `build_auth` (`remote_auth`). The names
listed in `__all__` stay importable from here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx

from adapter.errors import (
    InputError,
    UpstreamUnavailable,
)
from adapter.fhir.meta import without_store_meta
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.settings import Settings
from adapter.store.remote_auth import ClientCredentialsJwt, StaticBearer, build_auth
from adapter.store.remote_errors import (
    answered_by_server,
    backend_errors,
    check_status,
    map_status,
    outcome_issues,
)
from adapter.store.remote_requests import (
    FHIR_JSON,
    _body,
    _entries,
    _has_next,
    _headers,
    _limits,
    _search_params,
    _timeout,
    delete_entry,
    etag_of,
    put_entry,
    stored_from,
    transaction_bundle,
    transaction_precondition,
)
from adapter.store.repository import (
    COMMON_SEARCH_PARAMS,
    HistoryPage,
    SearchPage,
    SearchQuery,
    StoredResource,
)

# Names other modules import from here, besides the clients defined below.
__all__ = [
    "FHIR_JSON",
    "AsyncFhirClient",
    "ClientCredentialsJwt",
    "RemoteFhirRepository",
    "StaticBearer",
    "answered_by_server",
    "backend_errors",
    "build_auth",
    "check_status",
    "delete_entry",
    "etag_of",
    "map_status",
    "outcome_issues",
    "put_entry",
    "stored_from",
    "transaction_bundle",
    "transaction_precondition",
]

log = logging.getLogger(__name__)


class AsyncFhirClient:
    """What the outbox delivers with: one pooled AsyncClient per worker."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        timeout: httpx.Timeout | None = None,
        limits: httpx.Limits | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            auth=auth,
            timeout=timeout or httpx.Timeout(10.0),
            limits=limits or httpx.Limits(max_connections=20),
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> AsyncFhirClient:
        if not settings.fhir_base_url:
            raise InputError("backend=remote needs FHIR_BASE_URL")
        return cls(
            settings.fhir_base_url,
            auth=build_auth(settings),
            timeout=_timeout(settings),
            limits=_limits(settings),
        )

    async def transaction(self, bundle: JsonObject) -> JsonObject:
        with backend_errors(sent_precondition=transaction_precondition(bundle)):
            response = await self._client.post("", content=_body(bundle), headers=_headers())
            result: JsonObject = check_status(response).json()
        return result

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass(slots=True)
class _Buffered:
    entries: list[JsonObject] = field(default_factory=list)


class RemoteFhirRepository:
    """The Repository protocol over HTTP. Reads go straight to the server; `unit_of_work()` buffers
    writes and sends them as one transaction Bundle on exit (all or nothing at the server)."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        timeout: httpx.Timeout | None = None,
        limits: httpx.Limits | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            auth=auth,
            timeout=timeout or httpx.Timeout(10.0),
            limits=limits or httpx.Limits(max_connections=20),
            transport=transport,
        )
        self._buffer: _Buffered | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteFhirRepository:
        if not settings.fhir_base_url:
            raise InputError("backend=remote needs FHIR_BASE_URL")
        return cls(
            settings.fhir_base_url,
            auth=build_auth(settings),
            timeout=_timeout(settings),
            limits=_limits(settings),
        )

    def close(self) -> None:
        self._client.close()

    def _send(
        self,
        method: str,
        url: str,
        *,
        body: JsonObject | None = None,
        params: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        sent_precondition: bool = False,
    ) -> httpx.Response:
        with backend_errors(sent_precondition=sent_precondition):
            response = self._client.request(
                method,
                url,
                content=_body(body) if body is not None else None,
                params=tuple(params) if params else None,
                headers=_headers(headers),
            )
            return check_status(response)

    def _resource(self, response: httpx.Response) -> StoredResource:
        with backend_errors():
            if not response.content:  # Prefer: return=minimal servers; read it back
                location = response.headers.get("Location", "")
                return self._read_location(location)
            return stored_from(response.json(), response)

    def _read_location(self, location: str) -> StoredResource:
        """Only the path after the base matters: some servers (sekmet) put a configured, not the
        bound, host into Location."""
        parts = location.split("/_history/")[0].rstrip("/").split("/")
        if len(parts) < 2:
            raise UpstreamUnavailable(
                [Issue("error", "processing", "Write answer without a Location")]
            )
        return self.read(parts[-2], parts[-1])

    # -- writes --

    def create(self, resource: JsonObject, *, id: str | None = None) -> StoredResource:
        """With an id: `PUT Type/id` (client-assigned, idempotent); without: `POST Type`."""
        body = without_store_meta(resource)
        if self._buffer is not None:
            body["id"] = id or str(body.get("id") or uuid.uuid4())
            self._buffer.entries.append(put_entry(body))
            return stored_from({**body, "meta": {"versionId": "1"}})
        if id is not None:
            body["id"] = id
            return self._resource(self._send("PUT", f"{body['resourceType']}/{id}", body=body))
        body.pop("id", None)
        return self._resource(self._send("POST", str(body["resourceType"]), body=body))

    def create_if_none_exist(
        self, resource: JsonObject, criteria: str
    ) -> tuple[StoredResource, bool]:
        """Server-side conditional create (`If-None-Exist`): (stored, created). Atomic at the server,
        unlike `repository.conditional_create`, which searches first."""
        body = without_store_meta(resource)
        body.pop("id", None)
        response = self._send(
            "POST",
            str(body["resourceType"]),
            body=body,
            headers={"If-None-Exist": criteria},
            sent_precondition=True,
        )
        return self._resource(response), response.status_code == 201

    def update(
        self, resource: JsonObject, *, if_match: int | None = None
    ) -> tuple[StoredResource, bool]:
        body = without_store_meta(resource)
        if self._buffer is not None:
            self._buffer.entries.append(put_entry(body, if_match=if_match))
            return stored_from(
                {**body, "meta": {"versionId": str((if_match or 0) + 1)}}
            ), if_match is None
        headers = {"If-Match": etag_of(if_match)} if if_match is not None else None
        response = self._send(
            "PUT",
            f"{body['resourceType']}/{body['id']}",
            body=body,
            headers=headers,
            sent_precondition=if_match is not None,
        )
        return self._resource(response), response.status_code == 201

    def delete(
        self, resource_type: str, id: str, *, if_match: int | None = None
    ) -> StoredResource | None:
        if self._buffer is not None:
            self._buffer.entries.append(delete_entry(resource_type, id, if_match=if_match))
            return None
        headers = {"If-Match": etag_of(if_match)} if if_match is not None else None
        self._send(
            "DELETE",
            f"{resource_type}/{id}",
            headers=headers,
            sent_precondition=if_match is not None,
        )
        return None

    def transaction(self, bundle: JsonObject) -> JsonObject:
        response = self._send(
            "POST", "", body=bundle, sent_precondition=transaction_precondition(bundle)
        )
        with backend_errors():
            result: JsonObject = response.json()
        return result

    def unit_of_work(self) -> AbstractContextManager[RemoteFhirRepository]:
        return self._unit_of_work()

    @contextmanager
    def _unit_of_work(self) -> Iterator[RemoteFhirRepository]:
        if self._buffer is not None:
            yield self
            return
        unit = RemoteFhirRepository.__new__(RemoteFhirRepository)
        unit.base_url, unit._client, unit._buffer = self.base_url, self._client, _Buffered()
        yield unit
        if unit._buffer.entries:
            self.transaction(transaction_bundle(unit._buffer.entries))

    # -- reads --

    def read(self, resource_type: str, id: str) -> StoredResource:
        response = self._send("GET", f"{resource_type}/{quote(id, safe='')}")
        with backend_errors():
            return stored_from(response.json(), response)

    def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource:
        response = self._send("GET", f"{resource_type}/{quote(id, safe='')}/_history/{version_id}")
        with backend_errors():
            return stored_from(response.json(), response)

    def search(self, resource_type: str, query: SearchQuery) -> SearchPage:
        response = self._send("GET", resource_type, params=_search_params(query))
        with backend_errors():
            bundle = response.json()
        resources = [stored_from(r) for r in _entries(bundle)]
        total = bundle.get("total") if query.total else None
        return SearchPage(resources, total if isinstance(total, int) else None, _has_next(bundle))

    def history(
        self, resource_type: str | None, id: str | None, *, count: int, offset: int
    ) -> HistoryPage:
        path = "/".join(p for p in (resource_type, id) if p) + "/_history"
        params = [("_count", str(count))] + ([("_offset", str(offset))] if offset else [])
        response = self._send("GET", path.lstrip("/"), params=params)
        with backend_errors():
            bundle = response.json()
        versions = [stored_from(r) for r in _entries(bundle, mode=None)]
        total = bundle.get("total")
        return HistoryPage(
            versions, total if isinstance(total, int) else len(versions), _has_next(bundle)
        )

    def count(self, resource_type: str | None = None) -> int:
        if resource_type is None:
            raise InputError("Counting every type is not supported on a remote server")
        response = self._send(
            "GET", resource_type, params=[("_summary", "count"), ("_total", "accurate")]
        )
        with backend_errors():
            total = response.json().get("total")
        return int(total) if isinstance(total, int) else 0

    def supported_search_params(self, resource_type: str) -> Sequence[str]:  # noqa: ARG002 - protocol
        return COMMON_SEARCH_PARAMS
