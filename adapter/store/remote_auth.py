"""Authentication of the remote store to its FHIR server: none, a static bearer token, or SMART
Backend Services (`client_credentials` with a `private_key_jwt` assertion signed with joserfc).

`build_auth` chooses one from `Settings`; the result is an `httpx.Auth` for both clients.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncGenerator, Generator
from pathlib import Path
from typing import Any, Final

import httpx

from adapter.errors import (
    InputError,
    UpstreamUnavailable,
)
from adapter.issue import Issue
from adapter.settings import Settings
from adapter.store.remote_errors import backend_errors, check_status

_CLIENT_ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


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
