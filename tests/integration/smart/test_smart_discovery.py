"""Discovery (Inferno smart_discovery_stu2_2): the well-known document, OpenID configuration,
JWKS and the CapabilityStatement's oauth-uris, on the session's shared server."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.integration


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
