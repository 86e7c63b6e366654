"""CORS for browser SMART apps: preflights on /fhir/* and the OAuth endpoints, by allow-list only."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.smart.harness import bearer, seed_referral, system_token

pytestmark = pytest.mark.integration
APP_ORIGIN = "https://app.example.nhs.uk"
OTHER_ORIGIN = "https://evil.example"


@pytest.fixture
def allowed(live) -> Iterator[None]:
    """The shared server with APP_ORIGIN on its allow-list, for one test."""
    live.smart.auth.cors_allowed_origins = [APP_ORIGIN]
    yield
    live.smart.auth.cors_allowed_origins = []


def preflight(live, path: str, origin: str, method: str = "POST") -> httpx.Response:
    return httpx.options(
        f"{live.base}{path}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


PATHS = ["/ServiceRequest", "/Patient/some-id", "/", "/auth/token", "/auth/introspect"]


@pytest.mark.parametrize("path", PATHS)
def test_by_default_no_origin_is_allowed(live, path):
    r = preflight(live, path, APP_ORIGIN)
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers


def test_by_default_responses_carry_no_allow_origin_except_public_documents(live):
    token = system_token(live, "system/ServiceRequest.rs")
    r = httpx.get(f"{live.base}/ServiceRequest", headers={**bearer(token), "Origin": APP_ORIGIN})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
    form = {"grant_type": "client_credentials", "scope": "system/*.rs"}
    token_r = httpx.post(f"{live.base}/auth/token", data=form, headers={"Origin": APP_ORIGIN})
    assert token_r.status_code in (400, 401)
    assert "access-control-allow-origin" not in token_r.headers
    for public in ("/.well-known/smart-configuration", "/auth/jwks"):
        doc = httpx.get(f"{live.base}{public}", headers={"Origin": OTHER_ORIGIN})
        assert doc.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("path", PATHS)
def test_an_allowed_origin_passes_the_preflight(live, allowed, path):
    r = preflight(live, path, APP_ORIGIN)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed_headers = r.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers
    assert "content-type" in allowed_headers
    assert "access-control-allow-credentials" not in r.headers  # bearer tokens, not cookies
    assert int(r.headers["access-control-max-age"]) > 0


def test_an_origin_not_on_the_list_is_refused_even_when_others_are_allowed(live, allowed):
    r = preflight(live, "/ServiceRequest", OTHER_ORIGIN)
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers
    disallowed_header = httpx.options(
        f"{live.base}/ServiceRequest",
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-something-else",
        },
    )
    assert disallowed_header.status_code == 400


def test_an_allowed_origin_reads_the_answer_and_its_headers(live, allowed):
    ids = seed_referral(live)
    token = system_token(live, "system/ServiceRequest.rs")
    r = httpx.get(
        f"{live.base}/ServiceRequest/{ids['ServiceRequest']}",
        headers={**bearer(token), "Origin": APP_ORIGIN},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "Origin" in r.headers["vary"]
    exposed = r.headers["access-control-expose-headers"].lower()
    assert "etag" in exposed
    assert "location" in exposed
    # a refusal is readable too, so the app can show the OperationOutcome
    denied = httpx.get(f"{live.base}/ServiceRequest", headers={"Origin": APP_ORIGIN})
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "www-authenticate" in denied.headers["access-control-expose-headers"].lower()
    other = httpx.get(f"{live.base}/ServiceRequest", headers={"Origin": OTHER_ORIGIN})
    assert "access-control-allow-origin" not in other.headers
