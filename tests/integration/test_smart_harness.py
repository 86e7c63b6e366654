"""Shared harness of the SMART integration tests: a real uvicorn server on a loopback port, real keys.

Other test_smart_*.py modules import the fixtures and helpers from here. The discovery checks
(Inferno smart_discovery_stu2_2) live here too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import uvicorn
from joserfc.jwk import ECKey, RSAKey

from adapter.api.app import create_app
from adapter.auth.devclient import client_assertion, public_jwks_json
from adapter.auth.service import SmartServices, build_smart_services
from adapter.auth.settings import AuthSettings
from adapter.settings import Settings
from adapter.wiring import build_services
from tests.support.referrals import NHS, referral_bundle

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json"}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REDIRECT = "http://127.0.0.1:9/callback"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    base: str
    smart: SmartServices
    app: object

    @property
    def token_url(self) -> str:
        return f"{self.base}/auth/token"


def start_server(
    settings: Settings, tmp_path: Path, **auth_overrides
) -> tuple[LiveServer, uvicorn.Server, threading.Thread]:
    port = free_port()
    settings = settings.model_copy(
        update={"auth_required": True, "public_base_url": f"http://127.0.0.1:{port}/fhir"}
    )
    auth = AuthSettings(
        signing_key_path=tmp_path / "server-key.json",
        dev_auto_approve=True,
        demo_key_path=tmp_path / "demo-key.json",
        **auth_overrides,
    )
    services = build_services(settings)
    app = create_app(settings, services=services)
    smart = build_smart_services(settings, auth)
    app.state.smart = smart
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}/fhir", smart, app), server, thread


@pytest.fixture
def sqlite_settings(tmp_path) -> Settings:
    """Most auth tests need only SQLite: a fresh file per test."""
    return Settings(database_url=f"sqlite:///{tmp_path / 'smart.sqlite3'}", auto_migrate=True)


def _live(settings: Settings, tmp_path: Path):
    live, server, thread = start_server(settings, tmp_path)
    try:
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        live.smart.close()


@pytest.fixture
def live(sqlite_settings, tmp_path):
    yield from _live(sqlite_settings, tmp_path)


@pytest.fixture
def live_db(settings, tmp_path):
    """The same, on the parametrised conftest database (SQLite and PostgreSQL)."""
    yield from _live(settings, tmp_path)


# --- clients and tokens -----------------------------------------------------------------------
def register_backend(
    live: LiveServer,
    client_id: str = "backend-1",
    *,
    kind: str = "RSA",
    scope: str = "system/*.cruds",
) -> RSAKey | ECKey:
    key: RSAKey | ECKey
    if kind == "EC":
        key = ECKey.generate_key("P-384", private=True)
    else:
        key = RSAKey.generate_key(2048, private=True)
    key = type(key).import_key({**key.as_dict(private=True), "kid": key.thumbprint()})
    live.smart.registry.add(client_id, kind="backend", scope=scope, jwks=public_jwks_json(key))
    return key


def backend_token_response(
    live: LiveServer,
    key,
    client_id: str = "backend-1",
    scope: str = "system/*.cruds",
    **assertion_kwargs,
) -> httpx.Response:
    assertion = client_assertion(
        key, client_id=client_id, token_url=live.token_url, **assertion_kwargs
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
    if live.smart.registry.get("system-admin") is None:
        key = register_backend(live, "system-admin", scope="system/*.cruds")
        live._admin_key = key  # type: ignore[attr-defined]
    r = backend_token_response(live, live._admin_key, "system-admin", scope)  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post_referral(live: LiveServer, token: str, nhs: str = "9990000018", **kwargs) -> dict:
    r = httpx.post(
        live.base,
        content=json.dumps(referral_bundle(nhs, **kwargs)),
        headers={**FHIR_JSON, **bearer(token)},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    locations = [e["response"]["location"] for e in r.json()["entry"]]
    return {loc.split("/")[0]: loc.split("/")[1] for loc in locations}


def seed_referral(live: LiveServer, nhs: str = "9990000018", ods: str = "Y12345") -> dict:
    """Test data written straight to the store (not through policy), so that the auth tests do not
    depend on the clinical rule packs: a Patient, a PractitionerRole and a ServiceRequest."""
    repo = live.app.state.services.repo  # type: ignore[attr-defined]
    patient = repo.create(
        {"resourceType": "Patient", "identifier": [{"system": NHS, "value": nhs}]}
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
    client_id: str = "app-1",
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


def app_launch(live: LiveServer, client_id: str, scope: str, **kwargs) -> httpx.Response:
    """A full standalone launch: authorize (auto-approved) then code exchange; returns the token response."""
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


# --- Inferno smart_discovery_stu2_2 -------------------------------------------------------------
REQUIRED_DISCOVERY_FIELDS = (
    "authorization_endpoint",
    "token_endpoint",
    "capabilities",
    "grant_types_supported",
    "code_challenge_methods_supported",
)


def test_well_known_endpoint_is_json_with_every_required_field(live):
    r = httpx.get(f"{live.base}/.well-known/smart-configuration", headers={"Accept": "text/html"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["access-control-allow-origin"] == "*"
    config = r.json()
    for name in REQUIRED_DISCOVERY_FIELDS:
        assert config[name], name
    assert isinstance(config["authorization_endpoint"], str)
    assert isinstance(config["token_endpoint"], str)
    for name in ("capabilities", "grant_types_supported", "code_challenge_methods_supported"):
        assert isinstance(config[name], list)
        assert all(isinstance(x, str) for x in config[name])
    assert "authorization_code" in config["grant_types_supported"]
    assert "client_credentials" in config["grant_types_supported"]
    for name in (
        "authorization_endpoint",
        "token_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
        "jwks_uri",
    ):
        assert config[name].startswith("http://127.0.0.1:"), name  # absolute URLs


def test_pkce_methods_advertise_s256_and_never_plain(live):
    config = httpx.get(f"{live.base}/.well-known/smart-configuration").json()
    assert config["code_challenge_methods_supported"] == ["S256"]


def test_sso_openid_connect_brings_issuer_and_jwks_uri_and_rs256_openid_configuration(live):
    config = httpx.get(f"{live.base}/.well-known/smart-configuration").json()
    assert "sso-openid-connect" in config["capabilities"]
    assert isinstance(config["issuer"], str)
    assert isinstance(config["jwks_uri"], str)
    oidc = httpx.get(f"{config['issuer']}/.well-known/openid-configuration").json()
    for name in (
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    ):
        assert oidc[name], name
    assert "RS256" in oidc["id_token_signing_alg_values_supported"]
    jwks = httpx.get(config["jwks_uri"]).json()
    assert jwks["keys"]
    assert all("d" not in k for k in jwks["keys"])


def test_asymmetric_capability_comes_with_rs384_or_es384(live):
    config = httpx.get(f"{live.base}/.well-known/smart-configuration").json()
    assert "client-confidential-asymmetric" in config["capabilities"]
    assert {"RS384", "ES384"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])


def test_capability_statement_carries_the_same_oauth_uris(live):
    r = httpx.get(f"{live.base}/metadata")  # no token: metadata stays open
    assert r.status_code == 200
    config = httpx.get(f"{live.base}/.well-known/smart-configuration").json()
    security = r.json()["rest"][0]["security"]
    ext = next(e for e in security["extension"] if e["url"].endswith("oauth-uris"))
    uris = {e["url"]: e["valueUri"] for e in ext["extension"]}
    assert uris["authorize"] == config["authorization_endpoint"]
    assert uris["token"] == config["token_endpoint"]
