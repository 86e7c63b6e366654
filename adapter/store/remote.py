"""The HTTP backing store: any FHIR R4 server at `FHIR_BASE_URL`, behind the `Repository` protocol.

`RemoteFhirRepository` (sync, pooled `httpx.Client`) serves reads and direct writes; `AsyncFhirClient`
(pooled `httpx.AsyncClient`) is what the outbox delivers with. Both send requests built by the same
helpers and run them inside `backend_errors`, the one context manager that turns httpx errors and
backend answers into our error family and evens out backend quirks:

- a stale version is 412 (R4); HAPI JPA answers 409 (`HAPI-0989`) -> PreconditionFailed when we sent
  a precondition or the outcome says the version conflicts;
- invalid content is 400 (structural) or 422 (profile, invariant, business rule); HAPI's repository
  validator answers 412 and some servers answer 400 for profile failures -> sorted by issue code;
- 429 and 5xx keep the server's Retry-After; timeouts, resets and refused connections are 503.

Authentication: none, a static bearer token, or SMART Backend Services (`client_credentials` with a
`private_key_jwt` assertion signed with joserfc), see `build_auth`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Generator, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import quote

import httpx

from adapter.errors import (
    AdapterError,
    Conflict,
    ConformanceError,
    Gone,
    InputError,
    NotFound,
    PreconditionFailed,
    TooManyRequests,
    UpstreamUnavailable,
)
from adapter.fhir import jsonio
from adapter.fhir.types import JsonObject
from adapter.issue import Issue, IssueCode
from adapter.settings import Settings
from adapter.store.repository import (
    COMMON_SEARCH_PARAMS,
    HistoryPage,
    SearchPage,
    SearchQuery,
    StoredResource,
)

log = logging.getLogger(__name__)

FHIR_JSON: Final = "application/fhir+json"
#: Issue codes that mean "valid JSON, but breaks a profile or rule": our 422, whatever status came.
_PROFILE_CODES: Final = frozenset({"invariant", "code-invalid", "business-rule", "extension"})
_ISSUE_CODES: Final = frozenset(IssueCode.__args__)  # type: ignore[attr-defined]  # Literal members
_CLIENT_ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


# --- errors -----------------------------------------------------------------------------------


class _BackendStatus(Exception):
    """Internal: the backend answered with an error status; `backend_errors` maps it."""

    def __init__(self, response: httpx.Response):
        super().__init__(response.status_code)
        self.response = response


def check_status(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise _BackendStatus(response)
    return response


def outcome_issues(response: httpx.Response) -> list[Issue]:
    """Our Issues from the backend's OperationOutcome; a generic one when there is none."""
    issues: list[Issue] = []
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        for raw in body.get("issue") or []:
            if not isinstance(raw, dict):
                continue
            severity = raw.get("severity")
            code = raw.get("code")
            issue_code = cast(IssueCode, code) if code in _ISSUE_CODES else "processing"
            text = (
                (raw.get("details") or {}).get("text") or raw.get("diagnostics") or "backend issue"
            )
            expression = raw.get("expression") or raw.get("location") or [None]
            issues.append(
                Issue(
                    severity
                    if severity in ("fatal", "error", "warning", "information")
                    else "error",
                    issue_code,
                    f"Backing server: {text}"[:500],
                    expression=expression[0]
                    if isinstance(expression, list) and expression
                    else None,
                )
            )
    if not issues:
        issues.append(
            Issue("error", "processing", f"Backing server answered HTTP {response.status_code}")
        )
    return issues


def _is_version_conflict(issues: list[Issue]) -> bool:
    return any(
        "version" in i.text.lower() or "HAPI-0989" in i.text or i.code == "conflict" for i in issues
    )


def _retry_after(response: httpx.Response) -> dict[str, str]:
    value = response.headers.get("Retry-After")
    return {"Retry-After": value} if value else {}


def map_status(response: httpx.Response, *, sent_precondition: bool) -> AdapterError:
    """The one table from a backend status (and its outcome) to our error family."""
    status = response.status_code
    issues = outcome_issues(response)
    blocking_codes = {i.code for i in issues if i.severity in ("fatal", "error")}
    is_profile_failure = bool(blocking_codes) and blocking_codes <= _PROFILE_CODES
    if status in (409, 412) and (
        sent_precondition or (status == 409 and _is_version_conflict(issues))
    ):
        return PreconditionFailed(issues)
    if status == 409:
        return Conflict(issues)
    if status in (400, 412, 422) and (status == 422 or is_profile_failure or status == 412):
        return ConformanceError(issues)
    if status == 400:
        return InputError(issues)
    if status == 404:
        return NotFound(issues)
    if status == 410:
        return Gone(issues)
    if status == 429:
        return TooManyRequests(issues, headers=_retry_after(response))
    if status in (401, 403):
        text = f"Backing server refused our credentials (HTTP {status})"
        return UpstreamUnavailable([Issue("error", "security", text)])
    return UpstreamUnavailable(issues, headers=_retry_after(response))


def answered_by_server(error: AdapterError) -> bool:
    """True when the backing server answered with this error status (its headers are its own);
    False for timeouts, resets and refused connections, whose Retry-After we made up."""
    return isinstance(error.__cause__, _BackendStatus)


@contextmanager
def backend_errors(*, sent_precondition: bool = False) -> Iterator[None]:
    """Maps httpx errors and backend error answers into our family; nothing foreign escapes."""
    try:
        yield
    except _BackendStatus as exc:
        raise map_status(exc.response, sent_precondition=sent_precondition) from exc
    except httpx.TimeoutException as exc:
        raise UpstreamUnavailable(
            [Issue("error", "timeout", f"Backing server timed out ({type(exc).__name__})")],
            headers={"Retry-After": "5"},
        ) from exc
    except (httpx.TransportError, httpx.DecodingError, httpx.TooManyRedirects) as exc:
        raise UpstreamUnavailable(
            [Issue("error", "transient", f"Backing server unreachable ({type(exc).__name__})")],
            headers={"Retry-After": "5"},
        ) from exc
    except ValueError as exc:  # an answer that is not JSON where JSON was due
        raise UpstreamUnavailable(
            [Issue("error", "processing", "Backing server answered with malformed JSON")]
        ) from exc


# --- authentication ---------------------------------------------------------------------------


class StaticBearer(httpx.Auth):
    def __init__(self, token: str):
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class ClientCredentialsJwt(httpx.Auth):
    """SMART Backend Services: a signed assertion buys an access token, cached until shortly before
    it expires; a 401 refreshes it once. Works with sync and async clients."""

    requires_response_body = True

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        private_key_pem: bytes,
        scope: str,
        kid: str | None = None,
        alg: str = "RS384",
    ):
        from joserfc.jwk import import_key

        self.token_url = token_url
        self.client_id = client_id
        self.scope = scope
        self.kid = kid
        self.alg = alg
        self._key = import_key(private_key_pem, "EC" if alg.startswith("ES") else "RSA")
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def assertion(self) -> str:
        from joserfc import jwt

        now = int(time.time())
        header: dict[str, Any] = {"alg": self.alg, "typ": "JWT"}
        if self.kid:
            header["kid"] = self.kid
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(header, claims, self._key, algorithms=[self.alg])

    def _token_request(self) -> httpx.Request:
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": _CLIENT_ASSERTION_TYPE,
            "client_assertion": self.assertion(),
        }
        return httpx.Request(
            "POST", self.token_url, data=form, headers={"Accept": "application/json"}
        )

    def _take_token(self, response: httpx.Response) -> None:
        with backend_errors():
            body = check_status(response).json()
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise UpstreamUnavailable(
                [Issue("error", "security", "Token endpoint gave no access_token")]
            )
        self._token = token
        self._expires_at = time.monotonic() + float(body.get("expires_in", 300)) - 30

    def _needs_token(self) -> bool:
        return self._token is None or time.monotonic() >= self._expires_at

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        for attempt in range(2):
            if attempt or self._needs_token():
                self._take_token((yield self._token_request()))
            request.headers["Authorization"] = f"Bearer {self._token}"
            response = yield request
            if response.status_code != 401:
                return

    # httpx drives `auth_flow` for both clients; the lock only guards sync callers' token refresh.
    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        with self._lock:
            yield from self.auth_flow(request)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self.auth_flow(request)
        response: httpx.Response | None = None
        try:
            while True:
                outgoing = flow.send(response) if response is not None else next(flow)
                response = yield outgoing
        except StopIteration:
            return


def build_auth(settings: Settings) -> httpx.Auth | None:
    """None, a static bearer token, or client_credentials + private_key_jwt, from Settings."""
    if settings.fhir_auth == "bearer":
        if settings.fhir_bearer_token is None:
            raise InputError("fhir_auth=bearer needs ADAPTER_FHIR_BEARER_TOKEN")
        return StaticBearer(settings.fhir_bearer_token.get_secret_value())
    if settings.fhir_auth == "client_credentials":
        if not (
            settings.fhir_token_url and settings.fhir_client_id and settings.fhir_private_key_path
        ):
            raise InputError(
                "fhir_auth=client_credentials needs token URL, client id and private key path"
            )
        return ClientCredentialsJwt(
            token_url=settings.fhir_token_url,
            client_id=settings.fhir_client_id,
            private_key_pem=Path(settings.fhir_private_key_path).read_bytes(),
            scope=settings.fhir_scope,
            kid=settings.fhir_key_id,
        )
    return None


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


def _without_meta_version(resource: JsonObject) -> JsonObject:
    """The backend keeps its own versions; our meta.versionId/lastUpdated would only confuse it."""
    body = dict(resource)
    meta = body.get("meta")
    if isinstance(meta, dict):
        rest = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        if rest:
            body["meta"] = rest
        else:
            body.pop("meta")
    return body


def transaction_precondition(bundle: JsonObject) -> bool:
    return any(
        (e.get("request") or {}).get("ifMatch") or (e.get("request") or {}).get("ifNoneExist")
        for e in bundle.get("entry") or []
    )


# --- the clients ------------------------------------------------------------------------------


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
        body = _without_meta_version(resource)
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
        body = _without_meta_version(resource)
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
        body = _without_meta_version(resource)
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
