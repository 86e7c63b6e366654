"""One OAuth exchange, framework-free: what the web layer hands the authorisation server.

`adapter/api/routers/smart.py` builds an `OAuthHttpRequest` from HTTP; authlib reads it through
`SmartOAuthRequest`; an `OAuthResponse` (RFC 6749 error JSON or a token body, with `NO_STORE`
headers on token responses) goes back. Nothing here imports FastAPI.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request

NO_STORE: Final = [
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
]


@dataclass(slots=True)
class OAuthHttpRequest:
    """What the web layer hands us: method, absolute URL, headers, query and form values."""

    method: str
    url: str
    headers: Mapping[str, str]
    query: list[tuple[str, str]] = field(default_factory=list)
    form: list[tuple[str, str]] = field(default_factory=list)
    #: The FHIR base URL this request arrived at (the `aud` of tokens, the issuer by default).
    fhir_base: str = ""


@dataclass(frozen=True, slots=True)
class OAuthResponse:
    status: int
    body: Any
    headers: list[tuple[str, str]]


class _Payload(OAuth2Payload):  # type: ignore[misc]  # authlib is untyped
    def __init__(self, items: list[tuple[str, str]]):
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in items:
            self._datalist[key].append(value)
        self._data = {k: v[0] for k, v in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class SmartOAuthRequest(OAuth2Request):  # type: ignore[misc]  # authlib is untyped
    def __init__(self, http: OAuthHttpRequest):
        super().__init__(http.method, http.url, headers=http.headers)
        self.http = http
        self.payload = _Payload(http.query + http.form)
        self._args = dict(http.query)
        self._form = dict(http.form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form
