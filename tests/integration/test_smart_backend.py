# ruff: noqa: F811  (pytest fixtures are imported from test_smart_harness)
"""SMART Backend Services (Inferno backend_services_authorization) and the CLI-registered client."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from joserfc.jwk import RSAKey
from typer.testing import CliRunner

from adapter.auth.devclient import client_assertion
from tests.integration.test_smart_harness import (  # noqa: F401 - fixtures
    ASSERTION_TYPE,
    FHIR_JSON,
    backend_token_response,
    bearer,
    live,
    live_db,
    register_backend,
    sqlite_settings,
)
from tests.support.referrals import NHS, referral_bundle

pytestmark = pytest.mark.integration


def oauth_error(r: httpx.Response, *codes: int) -> str:
    assert r.status_code in codes, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    assert "resourceType" not in r.json()  # RFC 6749 error JSON, not an OperationOutcome
    return str(r.json()["error"])


@pytest.mark.parametrize("kind", ["RSA", "EC"])
def test_valid_request_with_rs384_or_es384_assertion_gets_a_bearer_token(live, kind):
    key = register_backend(live, kind=kind, scope="system/ServiceRequest.rs system/Patient.rs")
    r = backend_token_response(live, key, scope="system/ServiceRequest.rs")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"].lower() == "bearer"
    assert isinstance(body["expires_in"], int)
    assert body["expires_in"] <= 300
    assert body["scope"] == "system/ServiceRequest.rs"
    assert "no-store" in r.headers["cache-control"]
    assert "no-cache" in r.headers["pragma"]
    found = httpx.get(f"{live.base}/ServiceRequest", headers=bearer(body["access_token"]))
    assert found.status_code == 200


def test_invalid_grant_type_is_400(live):
    key = register_backend(live)
    assertion = client_assertion(key, client_id="backend-1", token_url=live.token_url)
    r = httpx.post(
        live.token_url,
        data={
            "grant_type": "not_a_grant",
            "scope": "system/*.rs",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )
    assert oauth_error(r, 400) == "unsupported_grant_type"


def test_invalid_client_assertion_type_is_400_or_401(live):
    key = register_backend(live)
    assertion = client_assertion(key, client_id="backend-1", token_url=live.token_url)
    r = httpx.post(
        live.token_url,
        data={
            "grant_type": "client_credentials",
            "scope": "system/*.rs",
            "client_assertion_type": "not_an_assertion_type",
            "client_assertion": assertion,
        },
    )
    assert oauth_error(r, 400, 401) == "invalid_client"


def test_assertion_signed_by_another_key_is_400_or_401(live):
    register_backend(live)
    stranger = RSAKey.generate_key(2048, private=True)
    stranger = RSAKey.import_key({**stranger.as_dict(private=True), "kid": "stranger"})
    r = backend_token_response(live, stranger)
    assert oauth_error(r, 400, 401) == "invalid_client"


def test_replayed_assertion_jti_is_refused(live):
    key = register_backend(live)
    assert backend_token_response(live, key, jti="once-only").status_code == 200
    assert (
        oauth_error(backend_token_response(live, key, jti="once-only"), 400, 401)
        == "invalid_client"
    )


def test_assertion_with_wrong_audience_or_long_expiry_is_refused(live):
    key = register_backend(live)
    assertion = client_assertion(key, client_id="backend-1", token_url="https://elsewhere/token")
    r = httpx.post(
        live.token_url,
        data={
            "grant_type": "client_credentials",
            "scope": "system/*.rs",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )
    assert oauth_error(r, 400, 401) == "invalid_client"
    assert (
        oauth_error(backend_token_response(live, key, lifetime_seconds=3600), 400, 401)
        == "invalid_client"
    )
    assert (
        oauth_error(backend_token_response(live, key, lifetime_seconds=-120), 400, 401)
        == "invalid_client"
    )


def test_assertion_with_rs256_is_refused_smart_requires_rs384_or_es384(live):
    from joserfc import jwt

    key = register_backend(live)
    now = int(time.time())
    assertion = jwt.encode(
        {"alg": "RS256", "kid": key.kid},
        {
            "iss": "backend-1",
            "sub": "backend-1",
            "aud": live.token_url,
            "exp": now + 60,
            "jti": "rs256",
        },
        key,
        algorithms=["RS256"],
    )
    r = httpx.post(
        live.token_url,
        data={
            "grant_type": "client_credentials",
            "scope": "system/*.rs",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )
    assert oauth_error(r, 400, 401) == "invalid_client"


def test_unknown_client_and_unknown_kid_are_refused(live):
    key = register_backend(live)
    assert (
        oauth_error(backend_token_response(live, key, client_id="nobody"), 400, 401)
        == "invalid_client"
    )
    other = RSAKey.import_key({**key.as_dict(private=True), "kid": "not-registered"})
    assert oauth_error(backend_token_response(live, other), 400, 401) == "invalid_client"


def test_scope_beyond_registration_is_invalid_scope(live):
    key = register_backend(live, scope="system/ServiceRequest.rs")
    r = backend_token_response(live, key, scope="system/ServiceRequest.rs system/Patient.cruds")
    assert oauth_error(r, 400) == "invalid_scope"
    r = backend_token_response(live, key, scope="system/ServiceRequest.cruds")
    assert oauth_error(r, 400) == "invalid_scope"


def test_client_jwks_by_url_is_fetched(live):
    """JWKS by URL: the server fetches it (served here by the facade's own JWKS route of another key)."""
    key = RSAKey.generate_key(2048, private=True)
    key = RSAKey.import_key({**key.as_dict(private=True), "kid": key.thumbprint()})
    from adapter.auth.devclient import public_jwks_json

    jwks = json.loads(public_jwks_json(key))
    server_jwks = httpx.get(f"{live.base}/auth/jwks").json()
    assert server_jwks["keys"]
    # A tiny JWKS host on another loopback port
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(jwks).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "max-age=60")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    host = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=host.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{host.server_address[1]}/jwks.json"
        live.smart.registry.add("by-url", kind="backend", scope="system/*.rs", jwks_uri=url)
        r = backend_token_response(live, key, client_id="by-url", scope="system/*.rs")
        assert r.status_code == 200, r.text
    finally:
        host.shutdown()


def test_cli_registered_backend_client_gets_a_token_and_posts_a_referral(
    live_db, tmp_path, monkeypatch
):
    from adapter.cli import app

    key = RSAKey.generate_key(2048, private=True)
    key = RSAKey.import_key({**key.as_dict(private=True), "kid": key.thumbprint()})
    private_path = tmp_path / "gp-feed.jwk.json"
    private_path.write_text(json.dumps(key.as_dict(private=True)))
    from adapter.auth.devclient import public_jwks_json

    jwks_path = tmp_path / "gp-feed.jwks.json"
    jwks_path.write_text(public_jwks_json(key))
    settings = live_db.smart.settings
    monkeypatch.setenv("ADAPTER_DATABASE_URL", settings.database_url)
    if settings.database_schema:
        monkeypatch.setenv("ADAPTER_DATABASE_SCHEMA", settings.database_schema)
    runner = CliRunner()
    added = runner.invoke(
        app,
        [
            "clients",
            "add",
            "gp-feed",
            "--kind",
            "backend",
            "--jwks",
            str(jwks_path),
            "--scope",
            "system/ServiceRequest.cruds system/Patient.cruds system/*.rs system/*.c",
        ],
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["clients", "list"])
    assert "gp-feed" in listed.output
    got = runner.invoke(
        app,
        [
            "clients",
            "token",
            "--base-url",
            live_db.base,
            "--client-id",
            "gp-feed",
            "--key",
            str(private_path),
            "--scope",
            "system/*.rs system/*.c",
        ],
    )
    assert got.exit_code == 0, got.output
    token = got.output.strip().splitlines()[-1]
    r = httpx.post(
        live_db.base,
        content=json.dumps(referral_bundle("9990000018")),
        headers={**FHIR_JSON, **bearer(token)},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    found = httpx.get(
        f"{live_db.base}/ServiceRequest",
        params={"subject:identifier": f"{NHS}|9990000018"},
        headers=bearer(token),
    ).json()
    assert found["total"] == 1
    audit = httpx.get(f"{live_db.base}/AuditEvent", headers=bearer(token)).json()
    assert audit["total"] >= 2
    event = audit["entry"][0]["resource"]
    assert event["agent"][0]["who"]["identifier"]["value"] == "gp-feed"
    assert "9990000018" not in json.dumps(audit)  # no clinical content in the audit trail
    removed = runner.invoke(app, ["clients", "remove", "gp-feed"])
    assert removed.exit_code == 0
