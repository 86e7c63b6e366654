"""The attack suite: forged, stale and misdirected tokens, and patient/ scopes reaching elsewhere.

Each is refused with 401 (authentication) or 403 (authorisation) and an OperationOutcome.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.integration.smart.harness import (
    FHIR_JSON,
    app_launch,
    assert_outcome,
    bearer,
    register_app,
    seed_referral,
    system_token,
    unique,
)

pytestmark = pytest.mark.integration


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_for(live, **override) -> dict:
    now = int(time.time())
    base = {
        "iss": live.base,
        "aud": live.base,
        "sub": "x",
        "client_id": "x",
        "scope": "system/*.cruds",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "forged",
    }
    base.update(override)
    return base


def sign_with_server_key(live, claims: dict) -> str:
    key = live.smart.keys.private
    return jwt.encode(
        {"alg": "RS256", "kid": live.smart.keys.kid}, claims, key, algorithms=["RS256"]
    )


def read_patients(live, token: str) -> httpx.Response:
    return httpx.get(f"{live.base}/Patient", headers=bearer(token))


def test_no_token_is_401_with_www_authenticate(live):
    r = httpx.get(f"{live.base}/ServiceRequest")
    assert_outcome(r, 401, "login")
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_alg_none_is_401(live):
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims_for(live))}."
    assert_outcome(read_patients(live, token), 401, "login")


def test_hs256_signed_with_the_public_key_is_401(live):
    """The classic key-confusion forgery, built by hand (joserfc itself refuses to make it)."""
    public_pem = RSAKey.import_key(live.smart.keys.jwks()["keys"][0]).as_pem(private=False)
    signing_input = (
        f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': live.smart.keys.kid})}.{b64(claims_for(live))}"
    )
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert_outcome(read_patients(live, token), 401, "login")


def test_expired_and_not_yet_valid_tokens_are_401(live):
    real = system_token(live)
    jti = jwt.decode(real, live.smart.keys.key_set).claims["jti"]
    now = int(time.time())
    expired = sign_with_server_key(
        live, claims_for(live, jti=jti, iat=now - 900, nbf=now - 900, exp=now - 600)
    )
    assert_outcome(read_patients(live, expired), 401, "login")
    future = sign_with_server_key(
        live, claims_for(live, jti=jti, nbf=now + 600, iat=now + 600, exp=now + 900)
    )
    assert_outcome(read_patients(live, future), 401, "login")


def test_wrong_issuer_or_audience_is_401(live):
    real = system_token(live)
    jti = jwt.decode(real, live.smart.keys.key_set).claims["jti"]
    wrong_iss = sign_with_server_key(
        live, claims_for(live, jti=jti, iss="https://evil.example/fhir")
    )
    assert_outcome(read_patients(live, wrong_iss), 401, "login")
    wrong_aud = sign_with_server_key(
        live, claims_for(live, jti=jti, aud="https://other.example/fhir")
    )
    assert_outcome(read_patients(live, wrong_aud), 401, "login")


def test_unknown_kid_is_401(live):
    other = RSAKey.generate_key(2048, private=True)
    token = jwt.encode(
        {"alg": "RS256", "kid": "someone-else"}, claims_for(live), other, algorithms=["RS256"]
    )
    assert_outcome(read_patients(live, token), 401, "login")


def test_tampered_signature_and_tampered_claims_are_401(live):
    real = system_token(live, "system/Patient.rs")
    header, payload, signature = real.split(".")
    flipped = signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")
    assert_outcome(read_patients(live, f"{header}.{payload}.{flipped}"), 401, "login")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "system/*.cruds"
    assert_outcome(read_patients(live, f"{header}.{b64(claims)}.{signature}"), 401, "login")


def test_token_without_server_record_is_401_even_if_signed(live):
    """A signed token the server never issued (e.g. a leaked key used offline) is still refused."""
    token = sign_with_server_key(live, claims_for(live, jti="never-issued"))
    assert_outcome(read_patients(live, token), 401, "login")


def test_revoked_token_is_401(live):
    token = system_token(live, "system/Patient.rs")
    assert read_patients(live, token).status_code == 200
    live.smart.state.revoke(jwt.decode(token, live.smart.keys.key_set).claims["jti"])
    assert_outcome(read_patients(live, token), 401, "login")


def test_scope_escalation_read_token_cannot_write_or_read_other_types(live):
    token = system_token(live, "system/ServiceRequest.rs")
    r = httpx.post(
        f"{live.base}/Patient",
        content=json.dumps({"resourceType": "Patient"}),
        headers={**FHIR_JSON, **bearer(token)},
    )
    assert_outcome(r, 403, "forbidden")
    assert_outcome(httpx.get(f"{live.base}/Patient", headers=bearer(token)), 403, "forbidden")
    assert_outcome(httpx.get(f"{live.base}/_history", headers=bearer(token)), 403, "forbidden")


# --- cross-patient access with a patient/ scope ---------------------------------------------------
@pytest.fixture
def two_patients(live, launch_patient):
    a = seed_referral(live)
    b = seed_referral(live, ods="Y54321")
    app = unique("pat-app")
    register_app(live, app, scope="launch/patient openid fhirUser patient/*.cruds")
    launch_patient(live, a["Patient"])
    r = app_launch(live, app, "launch/patient openid fhirUser patient/*.cruds")
    assert r.status_code == 200, r.text
    assert r.json()["patient"] == a["Patient"]
    return r.json()["access_token"], a, b


def test_patient_token_reads_its_own_patient_and_referral(live, two_patients):
    token, a, _ = two_patients
    assert (
        httpx.get(f"{live.base}/Patient/{a['Patient']}", headers=bearer(token)).status_code == 200
    )
    sr = httpx.get(f"{live.base}/ServiceRequest/{a['ServiceRequest']}", headers=bearer(token))
    assert sr.status_code == 200


def _same_as_absent(live, token: str, path: str, real_id: str) -> None:
    """The answer for another patient's record is the answer for an id that does not exist."""
    hidden = httpx.get(f"{live.base}/{path}", headers=bearer(token))
    body = assert_outcome(hidden, 404, "not-found")
    absent_id = str(uuid.uuid4())
    absent = httpx.get(f"{live.base}/{path.replace(real_id, absent_id)}", headers=bearer(token))
    assert_outcome(absent, 404, "not-found")
    assert json.dumps(body).replace(real_id, "ID") == json.dumps(absent.json()).replace(
        absent_id, "ID"
    )


def test_cross_patient_by_id_is_404_as_if_absent_for_read_vread_and_history(live, two_patients):
    token, _, b = two_patients
    _same_as_absent(live, token, f"Patient/{b['Patient']}", b["Patient"])
    sr = b["ServiceRequest"]
    _same_as_absent(live, token, f"ServiceRequest/{sr}", sr)
    _same_as_absent(live, token, f"ServiceRequest/{sr}/_history/1", sr)
    _same_as_absent(live, token, f"ServiceRequest/{sr}/_history", sr)
    _same_as_absent(live, token, f"Patient/{b['Patient']}/_history", b["Patient"])


def test_cross_patient_deleted_record_is_404_not_410(live, two_patients):
    """A 410 would confirm that the other patient's record existed; the owner's side still gets 410."""
    token, a, b = two_patients
    admin = system_token(live)
    for ids in (a, b):
        r = httpx.delete(
            f"{live.base}/ServiceRequest/{ids['ServiceRequest']}", headers=bearer(admin)
        )
        assert r.status_code == 204, r.text
    sr = b["ServiceRequest"]
    _same_as_absent(live, token, f"ServiceRequest/{sr}", sr)
    _same_as_absent(live, token, f"ServiceRequest/{sr}/_history/2", sr)
    _same_as_absent(live, token, f"ServiceRequest/{sr}/_history", sr)
    own = httpx.get(f"{live.base}/ServiceRequest/{a['ServiceRequest']}", headers=bearer(token))
    assert_outcome(own, 410, "deleted")
    assert_outcome(
        httpx.get(f"{live.base}/ServiceRequest/{sr}", headers=bearer(admin)), 410, "deleted"
    )
    history = httpx.get(
        f"{live.base}/ServiceRequest/{a['ServiceRequest']}/_history", headers=bearer(token)
    )
    assert history.status_code == 200
    assert [e["resource"]["id"] for e in history.json()["entry"]] == [a["ServiceRequest"]]


def test_scope_that_does_not_cover_the_type_stays_403(live, launch_patient):
    """404 hides records, not scopes: a type the token has no scope for is still 403."""
    a, b = seed_referral(live), seed_referral(live)
    app = unique("sr-only-app")
    scope = "launch/patient patient/ServiceRequest.rs"
    register_app(live, app, scope=scope)
    launch_patient(live, a["Patient"])
    token = app_launch(live, app, scope).json()["access_token"]
    for patient in (a["Patient"], b["Patient"]):
        assert_outcome(
            httpx.get(f"{live.base}/Patient/{patient}", headers=bearer(token)), 403, "forbidden"
        )
    assert_outcome(
        httpx.get(f"{live.base}/Patient/{b['Patient']}/_history", headers=bearer(token)),
        403,
        "forbidden",
    )


def test_cross_patient_by_search_finds_nothing_of_the_other(live, two_patients):
    token, a, b = two_patients
    everything = httpx.get(f"{live.base}/ServiceRequest", headers=bearer(token)).json()
    assert [e["resource"]["id"] for e in everything["entry"]] == [a["ServiceRequest"]]
    explicit = httpx.get(
        f"{live.base}/ServiceRequest",
        params={"patient": f"Patient/{b['Patient']}"},
        headers=bearer(token),
    ).json()
    assert explicit["entry"] == []
    patients = httpx.get(f"{live.base}/Patient", headers=bearer(token)).json()
    assert [e["resource"]["id"] for e in patients["entry"]] == [a["Patient"]]
    history = httpx.get(f"{live.base}/ServiceRequest/_history", headers=bearer(token)).json()
    assert {e["resource"]["id"] for e in history["entry"]} == {a["ServiceRequest"]}


def test_cross_patient_by_include_leaks_nothing(live, two_patients):
    token, a, b = two_patients
    admin = system_token(live)
    # a referral of patient A that (wrongly or not) points its performer at patient B
    sr = httpx.get(
        f"{live.base}/ServiceRequest/{a['ServiceRequest']}", headers=bearer(admin)
    ).json()
    r = httpx.get(
        f"{live.base}/ServiceRequest",
        params={"_include": "ServiceRequest:requester"},
        headers=bearer(token),
    ).json()
    included = [
        e["resource"]["resourceType"] for e in r["entry"] if e["search"]["mode"] == "include"
    ]
    assert included == []  # PractitionerRole is outside the patient compartment
    assert sr["subject"]["reference"] == f"Patient/{a['Patient']}"
    r = httpx.get(
        f"{live.base}/ServiceRequest",
        params={"_include": "ServiceRequest:subject"},
        headers=bearer(token),
    ).json()
    ids = {e["resource"]["id"] for e in r["entry"]}
    assert b["Patient"] not in ids
    assert a["Patient"] in ids


def test_cross_patient_by_revinclude_leaks_nothing(live, two_patients):
    token, a, b = two_patients
    # two Provenances point at patient A's referral; the second is in patient B's compartment
    own, other = (
        live.repo.create(
            {
                "resourceType": "Provenance",
                "target": [
                    {"reference": f"ServiceRequest/{a['ServiceRequest']}"},
                    {"reference": f"Patient/{patient}"},
                ],
                "recorded": "2026-11-20T10:00:00+00:00",
                "agent": [{"who": {"reference": f"PractitionerRole/{a['PractitionerRole']}"}}],
            }
        ).id
        for patient in (a["Patient"], b["Patient"])
    )
    r = httpx.get(
        f"{live.base}/ServiceRequest",
        params={"_revinclude": "Provenance:target"},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    included = [
        (e["resource"]["resourceType"], e["resource"]["id"])
        for e in r.json()["entry"]
        if e["search"]["mode"] == "include"
    ]
    assert included == [("Provenance", own)]
    assert other not in r.text
    assert b["Patient"] not in r.text
    # from the patient itself: its referral only, never the other patient's
    r = httpx.get(
        f"{live.base}/Patient",
        params={"_revinclude": "ServiceRequest:subject"},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    ids = {e["resource"]["id"] for e in r.json()["entry"]}
    assert ids == {a["Patient"], a["ServiceRequest"]}
    # and a count reveals only what the token may see
    count = httpx.get(
        f"{live.base}/Provenance", params={"_summary": "count"}, headers=bearer(token)
    ).json()
    assert count["total"] == 1


def test_cross_patient_by_transaction_is_403_and_writes_nothing(live, two_patients):
    token, a, b = two_patients
    admin = system_token(live)
    before = httpx.get(f"{live.base}/ServiceRequest", headers=bearer(admin)).json()["total"]
    other_sr = httpx.get(
        f"{live.base}/ServiceRequest/{b['ServiceRequest']}", headers=bearer(admin)
    ).json()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**other_sr, "status": "revoked"},
                "request": {"method": "PUT", "url": f"ServiceRequest/{b['ServiceRequest']}"},
            },
            {"request": {"method": "GET", "url": f"Patient/{b['Patient']}"}},
            {"request": {"method": "DELETE", "url": f"ServiceRequest/{b['ServiceRequest']}"}},
        ],
    }
    r = httpx.post(live.base, content=json.dumps(bundle), headers={**FHIR_JSON, **bearer(token)})
    assert_outcome(r, 403, "forbidden")
    assert len(r.json()["issue"]) == 3
    after = httpx.get(
        f"{live.base}/ServiceRequest/{b['ServiceRequest']}", headers=bearer(admin)
    ).json()
    assert after["status"] == other_sr["status"]
    assert httpx.get(f"{live.base}/ServiceRequest", headers=bearer(admin)).json()["total"] == before
    # and writing a new resource for the other patient directly
    moved = {**other_sr}
    moved.pop("id")
    r = httpx.post(
        f"{live.base}/ServiceRequest",
        content=json.dumps(moved),
        headers={**FHIR_JSON, **bearer(token)},
    )
    assert_outcome(r, 403, "forbidden")
    # and moving one's own referral to the other patient by update
    own = httpx.get(
        f"{live.base}/ServiceRequest/{a['ServiceRequest']}", headers=bearer(token)
    ).json()
    own["subject"] = {"reference": f"Patient/{b['Patient']}"}
    r = httpx.put(
        f"{live.base}/ServiceRequest/{a['ServiceRequest']}",
        content=json.dumps(own),
        headers={**FHIR_JSON, **bearer(token)},
    )
    assert_outcome(r, 403, "forbidden")


def test_cross_patient_by_patch_is_refused_and_changes_nothing(live, two_patients):
    token, a, b = two_patients
    admin = system_token(live)
    patch_json = {**FHIR_JSON, "Content-Type": "application/json-patch+json"}
    # patching the other patient's referral: answered as if it were absent or forbidden
    r = httpx.patch(
        f"{live.base}/ServiceRequest/{b['ServiceRequest']}",
        content=json.dumps([{"op": "replace", "path": "/status", "value": "revoked"}]),
        headers={**patch_json, **bearer(token)},
    )
    assert r.status_code in (403, 404), r.text
    other = httpx.get(
        f"{live.base}/ServiceRequest/{b['ServiceRequest']}", headers=bearer(admin)
    ).json()
    assert other["status"] != "revoked"
    # moving one's own referral to the other patient by patch
    r = httpx.patch(
        f"{live.base}/ServiceRequest/{a['ServiceRequest']}",
        content=json.dumps(
            [{"op": "replace", "path": "/subject/reference", "value": f"Patient/{b['Patient']}"}]
        ),
        headers={**patch_json, **bearer(token)},
    )
    assert_outcome(r, 403, "forbidden")
    own = httpx.get(
        f"{live.base}/ServiceRequest/{a['ServiceRequest']}", headers=bearer(admin)
    ).json()
    assert own["subject"]["reference"] == f"Patient/{a['Patient']}"


def test_patient_token_cannot_validate_or_read_audit(live, two_patients):
    token, _, b = two_patients
    admin = system_token(live)
    other_sr = httpx.get(
        f"{live.base}/ServiceRequest/{b['ServiceRequest']}", headers=bearer(admin)
    ).json()
    r = httpx.post(
        f"{live.base}/ServiceRequest/$validate",
        content=json.dumps(other_sr),
        headers={**FHIR_JSON, **bearer(token)},
    )
    assert_outcome(r, 403, "forbidden")
    r = httpx.get(f"{live.base}/AuditEvent", headers=bearer(token)).json()
    assert r["entry"] == []  # AuditEvent is outside the patient compartment
