"""Helpers of the SMART integration tests: one real uvicorn server shared by many tests, real keys.

Servers are started once per session (see conftest.py), so tests keep apart by what they create:
each registers its own clients (`unique(...)` ids), seeds its own Patients and ServiceRequests,
and reads back only those. Nothing here fakes the protocol: tokens are real JWTs signed with real
keys, requests go over real HTTP on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import uvicorn
from joserfc.jwk import ECKey, RSAKey

from adapter.api.app import create_app
from adapter.auth.devclient import client_assertion, public_jwks_json
from adapter.auth.service import SmartServices, build_smart_services
from adapter.auth.settings import AuthSettings
from adapter.settings import Settings
from adapter.wiring import build_services
from tests.support.referrals import NHS, nhs_number

FHIR_JSON = {"Content-Type": "application/fhir+json"}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REDIRECT = "http://127.0.0.1:9/callback"
ADMIN_CLIENT = "system-admin"
_NHS_COUNTER = [1000]  # well clear of the numbers other test modules use
_KEYS: dict[tuple[str, str], RSAKey | ECKey] = {}


def unique(prefix: str) -> str:
    """A client (or other) id no other test of the session uses."""
    return f"{prefix}-{secrets.token_hex(4)}"


def unique_nhs() -> str:
    """A valid 999-range NHS number no other SMART test of the session uses."""
    _NHS_COUNTER[0] += 1
    return nhs_number(_NHS_COUNTER[0])


def key(name: str = "client", kind: str = "RSA") -> RSAKey | ECKey:
    """A private key with kid = thumbprint, made once per session per (name, kind): RSA 2048
    generation costs ~0.1 s, and a key may be registered for any number of clients."""
    if (name, kind) not in _KEYS:
        fresh: RSAKey | ECKey = (
            ECKey.generate_key("P-384", private=True)
            if kind == "EC"
            else RSAKey.generate_key(2048, private=True)
        )
        _KEYS[(name, kind)] = type(fresh).import_key(
            {**fresh.as_dict(private=True), "kid": fresh.thumbprint()}
        )
    return _KEYS[(name, kind)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    base: str
    smart: SmartServices
    app: Any
    server: uvicorn.Server
    thread: threading.Thread
    _admin_key: RSAKey | ECKey | None = field(default=None, repr=False)

    @property
    def token_url(self) -> str:
        return f"{self.base}/auth/token"

    @property
    def repo(self) -> Any:
        return self.app.state.services.repo

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.smart.close()


def start_server(settings: Settings, key_dir: Path, **auth_overrides: Any) -> LiveServer:
    """The real app with auth on, in uvicorn on a free loopback port, in a daemon thread."""
    port = free_port()
    settings = settings.model_copy(
        update={"auth_required": True, "public_base_url": f"http://127.0.0.1:{port}/fhir"}
    )
    auth = AuthSettings(
        signing_key_path=key_dir / "server-key.json",
        dev_auto_approve=True,
        demo_key_path=key_dir / "demo-key.json",
        **auth_overrides,
    )
    app = create_app(settings, services=build_services(settings))
    smart = build_smart_services(settings, auth)
    app.state.smart = smart
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}/fhir", smart, app, server, thread)


# --- clients and tokens -------------------------------------------------------------------------
def register_backend(
    live: LiveServer,
    client_id: str,
    *,
    kind: str = "RSA",
    scope: str = "system/*.cruds",
    key_name: str = "client",
) -> RSAKey | ECKey:
    private = key(key_name, kind)
    live.smart.registry.add(client_id, kind="backend", scope=scope, jwks=public_jwks_json(private))
    return private


def backend_token_response(
    live: LiveServer,
    private: RSAKey | ECKey,
    client_id: str,
    scope: str = "system/*.cruds",
    **assertion_kwargs: Any,
) -> httpx.Response:
    assertion = client_assertion(
        private, client_id=client_id, token_url=live.token_url, **assertion_kwargs
    )
    return httpx.post(
        live.token_url,
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )


def system_token(live: LiveServer, scope: str = "system/*.cruds") -> str:
    """A token of the session's admin backend client (registered again if a test emptied the DB)."""
    if live.smart.registry.get(ADMIN_CLIENT) is None:
        live._admin_key = register_backend(live, ADMIN_CLIENT, key_name="admin")
    r = backend_token_response(live, key("admin"), ADMIN_CLIENT, scope)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def seed_referral(live: LiveServer, nhs: str | None = None, ods: str = "Y12345") -> dict[str, str]:
    """Test data written straight to the store (not through policy), so that the auth tests do not
    depend on the clinical rule packs: a new Patient, a PractitionerRole and a ServiceRequest."""
    repo = live.repo
    patient = repo.create(
        {"resourceType": "Patient", "identifier": [{"system": NHS, "value": nhs or unique_nhs()}]}
    )
    role = repo.create(
        {
            "resourceType": "PractitionerRole",
            "identifier": [
                {"system": "https://fhir.nhs.uk/Id/sds-role-profile-id", "value": f"role-{ods}"}
            ],
        }
    )
    sr = repo.create(
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": f"Patient/{patient.id}"},
            "requester": {"reference": f"PractitionerRole/{role.id}"},
        }
    )
    return {"Patient": patient.id, "PractitionerRole": role.id, "ServiceRequest": sr.id}


def register_app(
    live: LiveServer,
    client_id: str,
    *,
    scope: str,
    secret: str | None = None,
    redirect_uri: str = REDIRECT,
) -> None:
    live.smart.registry.add(
        client_id, kind="app", scope=scope, redirect_uris=(redirect_uri,), secret=secret
    )


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    return verifier, challenge


def authorize(
    live: LiveServer,
    client_id: str,
    scope: str,
    *,
    state: str = "st-1",
    challenge: str | None = None,
    method: str | None = "S256",
    aud: str | None = None,
    launch: str | None = None,
    redirect_uri: str = REDIRECT,
) -> httpx.Response:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "aud": aud or live.base,
    }
    if challenge is not None:
        params["code_challenge"] = challenge
    if method is not None:
        params["code_challenge_method"] = method
    if launch is not None:
        params["launch"] = launch
    return httpx.get(f"{live.base}/auth/authorize", params=params, follow_redirects=False)


def callback_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    query = parse_qs(urlparse(response.headers["location"]).query)
    return {k: v[0] for k, v in query.items()}


def app_launch(live: LiveServer, client_id: str, scope: str, **kwargs: Any) -> httpx.Response:
    """A full standalone launch: authorize (auto-approved) then code exchange; the token response."""
    verifier, challenge = pkce()
    params = callback_params(authorize(live, client_id, scope, challenge=challenge, **kwargs))
    assert "code" in params, params
    return httpx.post(
        live.token_url,
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )


def refresh(live: LiveServer, client_id: str, refresh_token: str, **extra: str) -> httpx.Response:
    return httpx.post(
        live.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
            **extra,
        },
    )


def assert_outcome(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    body: dict[str, Any] = r.json()
    assert body["resourceType"] == "OperationOutcome"
    if code:
        assert body["issue"][0]["code"] == code
    return body


def json_body(resource: dict[str, Any]) -> str:
    return json.dumps(resource)
