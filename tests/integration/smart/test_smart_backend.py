"""SMART Backend Services (Inferno backend_services_authorization) and the CLI-registered client.

Each test registers its own client (a `unique` id) on the session's server; the tests where the
database matters (the jti replay cache, the client registry of the CLI) run on both backends.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from typer.testing import CliRunner

from adapter.auth.devclient import client_assertion, public_jwks_json
from tests.integration.smart.harness import (
    ASSERTION_TYPE,
    FHIR_JSON,
    backend_token_response,
    bearer,
    key,
    register_backend,
    unique,
    unique_nhs,
)
from tests.support.referrals import NHS, referral_bundle

pytestmark = pytest.mark.integration


def oauth_error(r: httpx.Response, *codes: int) -> str:
    assert r.status_code in codes, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    assert "resourceType" not in r.json()  # RFC 6749 error JSON, not an OperationOutcome
    return str(r.json()["error"])


def post_assertion(live, assertion: str, **overrides: str) -> httpx.Response:
    data = {
        "grant_type": "client_credentials",
        "scope": "system/*.rs",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        **overrides,
    }
    return httpx.post(live.token_url, data=data)


@pytest.mark.parametrize("kind", ["RSA", "EC"])
def test_valid_request_with_rs384_or_es384_assertion_gets_a_bearer_token(live, kind):
    client = unique("backend")
    private = register_backend(
        live, client, kind=kind, scope="system/ServiceRequest.rs system/Patient.rs"
    )
    r = backend_token_response(live, private, client, scope="system/ServiceRequest.rs")
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
    client = unique("backend")
    private = register_backend(live, client)
    assertion = client_assertion(private, client_id=client, token_url=live.token_url)
    r = post_assertion(live, assertion, grant_type="not_a_grant")
    assert oauth_error(r, 400) == "unsupported_grant_type"


def test_invalid_client_assertion_type_is_400_or_401(live):
    client = unique("backend")
    private = register_backend(live, client)
    assertion = client_assertion(private, client_id=client, token_url=live.token_url)
    r = post_assertion(live, assertion, client_assertion_type="not_an_assertion_type")
    assert oauth_error(r, 400, 401) == "invalid_client"


def test_assertion_signed_by_another_key_is_400_or_401(live):
    client = unique("backend")
    register_backend(live, client)
    stranger = RSAKey.import_key({**key("stranger").as_dict(private=True), "kid": "stranger"})
    r = backend_token_response(live, stranger, client)
    assert oauth_error(r, 400, 401) == "invalid_client"


def test_replayed_assertion_jti_is_refused(live_db):
    """The replay cache is a table (a primary key on issuer + jti): on both backends."""
    client = unique("backend")
    private = register_backend(live_db, client)
    assert backend_token_response(live_db, private, client, jti="once-only").status_code == 200
    again = backend_token_response(live_db, private, client, jti="once-only")
    assert oauth_error(again, 400, 401) == "invalid_client"


def test_assertion_with_wrong_audience_or_long_expiry_is_refused(live):
    client = unique("backend")
    private = register_backend(live, client)
    assertion = client_assertion(private, client_id=client, token_url="https://elsewhere/token")
    assert oauth_error(post_assertion(live, assertion), 400, 401) == "invalid_client"
    assert (
        oauth_error(backend_token_response(live, private, client, lifetime_seconds=3600), 400, 401)
        == "invalid_client"
    )
    assert (
        oauth_error(backend_token_response(live, private, client, lifetime_seconds=-120), 400, 401)
        == "invalid_client"
    )


def test_assertion_with_rs256_is_refused_smart_requires_rs384_or_es384(live):
    client = unique("backend")
    private = register_backend(live, client)
    now = int(time.time())
    assertion = jwt.encode(
        {"alg": "RS256", "kid": private.kid},
        {"iss": client, "sub": client, "aud": live.token_url, "exp": now + 60, "jti": "rs256"},
        private,
        algorithms=["RS256"],
    )
    assert oauth_error(post_assertion(live, assertion), 400, 401) == "invalid_client"


def test_unknown_client_and_unknown_kid_are_refused(live):
    client = unique("backend")
    private = register_backend(live, client)
    assert (
        oauth_error(backend_token_response(live, private, unique("nobody")), 400, 401)
        == "invalid_client"
    )
    other = RSAKey.import_key({**private.as_dict(private=True), "kid": "not-registered"})
    assert oauth_error(backend_token_response(live, other, client), 400, 401) == "invalid_client"


def test_scope_beyond_registration_is_invalid_scope(live):
    client = unique("backend")
    private = register_backend(live, client, scope="system/ServiceRequest.rs")
    r = backend_token_response(
        live, private, client, scope="system/ServiceRequest.rs system/Patient.cruds"
    )
    assert oauth_error(r, 400) == "invalid_scope"
    r = backend_token_response(live, private, client, scope="system/ServiceRequest.cruds")
    assert oauth_error(r, 400) == "invalid_scope"


def test_client_jwks_by_url_is_fetched(live):
    """JWKS by URL: the server fetches it from a tiny JWKS host on another loopback port."""
    private = key("by-url")
    jwks = json.loads(public_jwks_json(private))

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
        client = unique("by-url")
        live.smart.registry.add(client, kind="backend", scope="system/*.rs", jwks_uri=url)
        r = backend_token_response(live, private, client, scope="system/*.rs")
        assert r.status_code == 200, r.text
    finally:
        host.shutdown()
        host.server_close()


def test_cli_registered_backend_client_gets_a_token_and_posts_a_referral(
    live_db, tmp_path, monkeypatch
):
    from adapter.cli import app

    private = key("gp-feed")
    private_path = tmp_path / "gp-feed.jwk.json"
    private_path.write_text(json.dumps(private.as_dict(private=True)))
    jwks_path = tmp_path / "gp-feed.jwks.json"
    jwks_path.write_text(public_jwks_json(private))
    settings = live_db.smart.settings
    monkeypatch.setenv("ADAPTER_DATABASE_URL", settings.database_url)
    if settings.database_schema:
        monkeypatch.setenv("ADAPTER_DATABASE_SCHEMA", settings.database_schema)
    client = unique("gp-feed")
    runner = CliRunner()
    added = runner.invoke(
        app,
        [
            "clients",
            "add",
            client,
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
    assert client in listed.output
    got = runner.invoke(
        app,
        [
            "clients",
            "token",
            "--base-url",
            live_db.base,
            "--client-id",
            client,
            "--key",
            str(private_path),
            "--scope",
            "system/*.rs system/*.c",
        ],
    )
    assert got.exit_code == 0, got.output
    token = got.output.strip().splitlines()[-1]
    nhs = unique_nhs()
    r = httpx.post(
        live_db.base,
        content=json.dumps(referral_bundle(nhs)),
        headers={**FHIR_JSON, **bearer(token)},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    found = httpx.get(
        f"{live_db.base}/ServiceRequest",
        params={"subject:identifier": f"{NHS}|{nhs}"},
        headers=bearer(token),
    ).json()
    assert found["total"] == 1
    audit = httpx.get(
        f"{live_db.base}/AuditEvent",
        params={"_sort": "-_lastUpdated", "_count": "50"},
        headers=bearer(token),
    ).json()
    ours = [
        e["resource"]
        for e in audit["entry"]
        if e["resource"]["agent"][0]["who"]["identifier"]["value"] == client
    ]
    assert len(ours) >= 2  # the transaction and the search, at least
    assert {e["subtype"][0]["code"] for e in ours} >= {"transaction", "search"}
    assert nhs not in json.dumps(audit)  # no clinical content in the audit trail
    removed = runner.invoke(app, ["clients", "remove", client])
    assert removed.exit_code == 0
