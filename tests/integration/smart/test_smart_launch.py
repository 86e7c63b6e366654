"""App launch (Inferno smart_stu2_2 groups 1, 2 and 4): PKCE, state, token response, ID token,
refresh, introspection, revocation, EHR launch; and the real `fhirclient` library doing a launch.

Each test registers its own app (a `unique` client id) and seeds its own patient on the session's
server; the tests of code and refresh-token state run on both database backends."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.integration.smart.harness import (
    REDIRECT,
    app_launch,
    authorize,
    bearer,
    callback_params,
    pkce,
    refresh,
    register_app,
    seed_referral,
    system_token,
    unique,
)

pytestmark = pytest.mark.integration
SCOPE = "launch/patient openid fhirUser offline_access patient/ServiceRequest.rs patient/Patient.rs"


@dataclass
class PatientApp:
    """A registered app and the seeded referral its standalone launches get as patient context."""

    client_id: str
    ids: dict[str, str]

    def __getitem__(self, resource_type: str) -> str:
        return self.ids[resource_type]


def _patient_app(server, launch_patient) -> PatientApp:
    ids = seed_referral(server)
    launch_patient(server, ids["Patient"])
    client_id = unique("app")
    register_app(server, client_id, scope=SCOPE)
    return PatientApp(client_id, ids)


@pytest.fixture
def patient_app(live, launch_patient) -> PatientApp:
    return _patient_app(live, launch_patient)


@pytest.fixture
def patient_app_db(live_db, launch_patient) -> PatientApp:
    """The same on the parametrised database (SQLite and PostgreSQL): codes and refresh tokens."""
    return _patient_app(live_db, launch_patient)


def test_code_is_received_with_state_echoed(live, patient_app):
    _, challenge = pkce()
    params = callback_params(
        authorize(live, patient_app.client_id, SCOPE, challenge=challenge, state="xyz-123")
    )
    assert params["state"] == "xyz-123"
    assert "code" in params
    assert "error" not in params


@pytest.mark.parametrize(
    ("challenge", "method"), [("x" * 43, "plain"), ("x" * 43, None), (None, None)]
)
def test_pkce_plain_or_missing_is_refused(live, patient_app, challenge, method):
    params = callback_params(
        authorize(live, patient_app.client_id, SCOPE, challenge=challenge, method=method)
    )
    assert params["error"] == "invalid_request"
    assert params["state"] == "st-1"


def test_wrong_code_verifier_is_invalid_grant(live, patient_app):
    _, challenge = pkce()
    params = callback_params(authorize(live, patient_app.client_id, SCOPE, challenge=challenge))
    r = httpx.post(
        live.token_url,
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": REDIRECT,
            "client_id": patient_app.client_id,
            "code_verifier": pkce()[0],
        },
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"


def test_wrong_aud_is_refused(live, patient_app):
    _, challenge = pkce()
    params = callback_params(
        authorize(
            live,
            patient_app.client_id,
            SCOPE,
            challenge=challenge,
            aud="https://other.example/fhir",
        )
    )
    assert params["error"] == "invalid_request"


def test_unknown_redirect_uri_is_not_redirected_to(live, patient_app):
    _, challenge = pkce()
    r = authorize(
        live,
        patient_app.client_id,
        SCOPE,
        challenge=challenge,
        redirect_uri="https://evil.example/cb",
    )
    assert r.status_code == 400
    assert "location" not in r.headers


def test_token_response_body_and_headers(live, patient_app):
    r = app_launch(live, patient_app.client_id, SCOPE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"].lower() == "bearer"
    assert isinstance(body["expires_in"], int)
    assert set(body["scope"].split()) == set(SCOPE.split())
    assert body["patient"] == patient_app["Patient"]
    assert isinstance(body["access_token"], str)
    assert "refresh_token" in body
    assert "no-store" in r.headers["cache-control"]
    assert "no-cache" in r.headers["pragma"]


def test_code_is_single_use(live_db, patient_app_db):
    live, patient_app = live_db, patient_app_db
    verifier, challenge = pkce()
    params = callback_params(authorize(live, patient_app.client_id, SCOPE, challenge=challenge))
    data = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": REDIRECT,
        "client_id": patient_app.client_id,
        "code_verifier": verifier,
    }
    assert httpx.post(live.token_url, data=data).status_code == 200
    again = httpx.post(live.token_url, data=data)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_id_token_is_rs256_with_required_claims_and_resolvable_fhir_user(live, patient_app):
    body = app_launch(live, patient_app.client_id, SCOPE).json()
    config = httpx.get(f"{live.base}/.well-known/smart-configuration").json()
    keys = KeySet.import_key_set(httpx.get(config["jwks_uri"]).json())
    token = jwt.decode(body["id_token"], keys, algorithms=["RS256"])
    assert token.header["alg"] == "RS256"
    assert token.header["kid"]
    claims = token.claims
    assert claims["iss"] == config["issuer"]
    assert claims["aud"] == patient_app.client_id
    assert claims["exp"] > time.time()
    assert claims["iat"] <= time.time() + 5
    assert 0 < len(claims["sub"]) <= 255
    assert claims["fhirUser"].startswith(live.base)
    assert claims["fhirUser"].split("/")[-2] in (
        "Practitioner",
        "Patient",
        "PractitionerRole",
        "RelatedPerson",
        "Person",
    )


@pytest.mark.parametrize("narrower", [None, "patient/ServiceRequest.rs"])
def test_refresh_gives_a_token_with_same_or_narrower_scopes(live_db, patient_app_db, narrower):
    live, patient_app = live_db, patient_app_db
    first = app_launch(live, patient_app.client_id, SCOPE).json()
    data = {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
        "client_id": patient_app.client_id,
    }
    if narrower:
        data["scope"] = narrower
    r = httpx.post(live.token_url, data=data)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["scope"].split()) <= set(SCOPE.split())
    assert "no-store" in r.headers["cache-control"]
    assert "no-cache" in r.headers["pragma"]
    assert body["patient"] == patient_app["Patient"]
    read = httpx.get(
        f"{live.base}/ServiceRequest/{patient_app['ServiceRequest']}",
        headers=bearer(body["access_token"]),
    )
    assert read.status_code == 200
    assert body["refresh_token"] != first["refresh_token"]  # rotated
    wider = refresh(live, patient_app.client_id, body["refresh_token"], scope="patient/*.cruds")
    assert wider.status_code == 400
    assert wider.json()["error"] == "invalid_scope"
    # the successor keeps the original scope (RFC 6749 §6), even after a narrower refresh
    again = refresh(live, patient_app.client_id, body["refresh_token"])
    assert again.status_code == 200, again.text
    assert set(again.json()["scope"].split()) == set(SCOPE.split())


def test_refresh_rotates_and_reuse_of_a_rotated_token_revokes_the_family(live_db, patient_app_db):
    live, app = live_db, patient_app_db
    first = app_launch(live, app.client_id, SCOPE).json()
    second = refresh(live, app.client_id, first["refresh_token"])
    assert second.status_code == 200, second.text
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"]
    third = refresh(live, app.client_id, second["refresh_token"]).json()
    sr = f"{live.base}/ServiceRequest/{app['ServiceRequest']}"
    assert httpx.get(sr, headers=bearer(third["access_token"])).status_code == 200
    caller = system_token(live, "system/Patient.rs")

    def active(token: str) -> bool:
        r = httpx.post(
            f"{live.base}/auth/introspect", data={"token": token}, headers=bearer(caller)
        )
        assert r.status_code == 200
        return bool(r.json()["active"])

    assert not active(first["refresh_token"])  # used once: no longer valid
    assert active(third["refresh_token"])
    # someone kept a copy of the first refresh token and tries it: refused, and the family dies
    replay = refresh(live, app.client_id, first["refresh_token"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert not active(third["refresh_token"])
    for body in (first, second, third):
        assert not active(body["access_token"])
    assert httpx.get(sr, headers=bearer(third["access_token"])).status_code == 401
    latest = refresh(live, app.client_id, third["refresh_token"])
    assert latest.json()["error"] == "invalid_grant"
    # a new launch starts a new family, untouched by the old one's revocation
    fresh = app_launch(live, app.client_id, SCOPE).json()
    assert refresh(live, app.client_id, fresh["refresh_token"]).status_code == 200


def test_introspection_active_and_inactive(live, patient_app):
    body = app_launch(live, patient_app.client_id, SCOPE).json()
    caller = system_token(live, "system/Patient.rs")
    r = httpx.post(
        f"{live.base}/auth/introspect", data={"token": body["access_token"]}, headers=bearer(caller)
    )
    assert r.status_code == 200
    info = r.json()
    assert info["active"] is True
    assert info["client_id"] == patient_app.client_id
    assert set(info["scope"].split()) == set(body["scope"].split())
    assert abs(info["exp"] - (time.time() + body["expires_in"])) < 60
    assert info["patient"] == body["patient"]
    id_claims = jwt.decode(body["id_token"], live.smart.keys.key_set).claims
    assert info["fhirUser"] in id_claims["fhirUser"]
    assert info["iss"] == id_claims["iss"]
    bad = httpx.post(
        f"{live.base}/auth/introspect", data={"token": "not-a-token"}, headers=bearer(caller)
    )
    assert bad.status_code == 200
    assert bad.json() == {"active": False}
    anonymous = httpx.post(f"{live.base}/auth/introspect", data={"token": body["access_token"]})
    assert anonymous.status_code in (400, 401)


def test_revocation_makes_the_refresh_token_and_its_access_tokens_inactive(live_db, patient_app_db):
    live, patient_app = live_db, patient_app_db
    first = app_launch(live, patient_app.client_id, SCOPE).json()
    refreshed = httpx.post(
        live.token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": patient_app.client_id,
            "refresh_token": first["refresh_token"],
        },
    ).json()
    r = httpx.post(
        f"{live.base}/auth/revoke",
        data={"token": first["refresh_token"], "client_id": patient_app.client_id},
    )
    assert r.status_code == 200
    again = httpx.post(
        live.token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": patient_app.client_id,
            "refresh_token": first["refresh_token"],
        },
    )
    assert again.json()["error"] == "invalid_grant"
    read = httpx.get(
        f"{live.base}/Patient/{patient_app['Patient']}", headers=bearer(refreshed["access_token"])
    )
    assert read.status_code == 401


def test_ehr_launch_carries_the_launch_context(live):
    admin = system_token(live)
    ids = seed_referral(live)
    scope = "launch openid fhirUser patient/ServiceRequest.rs"
    ehr_app = unique("ehr-app")
    register_app(live, ehr_app, scope=scope)
    launch = httpx.post(
        f"{live.base}/auth/launch",
        headers=bearer(admin),
        json={"patient": ids["Patient"], "fhirUser": "Practitioner/clinician-7"},
    )
    assert launch.status_code == 201, launch.text
    r = app_launch(live, ehr_app, scope, launch=launch.json()["launch"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["patient"] == ids["Patient"]
    claims = jwt.decode(body["id_token"], live.smart.keys.key_set).claims
    assert claims["fhirUser"].endswith("Practitioner/clinician-7")
    bogus = callback_params(authorize(live, ehr_app, scope, challenge=pkce()[1], launch="bogus"))
    assert bogus["error"] == "invalid_request"


def test_fhirclient_completes_a_launch_and_reads_a_service_request(live, patient_app):
    """The real fhirclient 4.4: discovery from CapabilityStatement.rest.security, authorize with
    PKCE, code exchange, then a read through its own HTTP (requests)."""
    from fhirclient import client
    from fhirclient.models.servicerequest import ServiceRequest

    smart = client.FHIRClient(
        settings={
            "app_id": patient_app.client_id,
            "api_base": live.base,
            "redirect_uri": REDIRECT,
            "scope": SCOPE,
        }
    )
    url = smart.authorize_url
    assert url.startswith(f"{live.base}/auth/authorize")
    query = parse_qs(urlparse(url).query)
    if "aud" not in query:  # fhirclient sends aud; keep the check honest if it ever stops
        url += f"&aud={live.base}"
    redirected = httpx.get(url, follow_redirects=False)
    assert redirected.status_code == 302, redirected.text
    smart.handle_callback(redirected.headers["location"])
    assert smart.ready
    assert smart.patient_id == patient_app["Patient"]
    sr = ServiceRequest.read(patient_app["ServiceRequest"], smart.server)
    assert sr.id == patient_app["ServiceRequest"]
    assert sr.subject.reference == f"Patient/{patient_app['Patient']}"
