"""RemoteFhirRepository against httpx.MockTransport: the one error mapping and its quirks."""

from __future__ import annotations

import json

import httpx
import pytest

from adapter.errors import (
    Conflict,
    ConformanceError,
    InputError,
    NotFound,
    PreconditionFailed,
    TooManyRequests,
    UpstreamUnavailable,
)
from adapter.store.remote import RemoteFhirRepository, StaticBearer

BASE = "http://backend.test/fhir"


def outcome(code: str, text: str = "problem") -> dict:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }


def repo_answering(
    status: int, body: dict | None = None, headers: dict | None = None, seen: list | None = None
) -> RemoteFhirRepository:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, json=body, headers=headers)

    return RemoteFhirRepository(
        BASE, transport=httpx.MockTransport(handler), auth=StaticBearer("t0k")
    )


PATIENT = {"resourceType": "Patient", "id": "p1"}


@pytest.mark.parametrize(
    ("status", "body", "if_match", "expected"),
    [
        (412, outcome("conflict"), 3, PreconditionFailed),
        (409, outcome("processing", "HAPI-0989: not the current version"), 3, PreconditionFailed),
        (409, outcome("conflict", "version conflict"), None, PreconditionFailed),
        (409, outcome("duplicate", "exists"), None, Conflict),
        (400, outcome("structure"), None, InputError),
        (400, outcome("invariant"), None, ConformanceError),
        (412, outcome("business-rule"), None, ConformanceError),
        (422, outcome("code-invalid"), None, ConformanceError),
        (404, outcome("not-found"), None, NotFound),
        (503, None, None, UpstreamUnavailable),
        (500, outcome("exception"), None, UpstreamUnavailable),
    ],
)
def test_backend_status_maps_to_our_family(status, body, if_match, expected):
    repo = repo_answering(status, body)
    with pytest.raises(expected) as caught:
        repo.update(PATIENT, if_match=if_match)
    assert caught.value.status == expected.status
    assert caught.value.issues


def test_409_and_412_for_a_stale_version_both_become_412():
    for s in (409, 412):
        with pytest.raises(PreconditionFailed) as caught:
            repo_answering(s, outcome("conflict")).update(PATIENT, if_match=1)
        assert caught.value.status == 412
        assert caught.value.issues[0].code == "conflict"


def test_429_keeps_retry_after_and_bearer_is_sent():
    seen: list[httpx.Request] = []
    repo = repo_answering(429, outcome("throttled"), {"Retry-After": "7"}, seen)
    with pytest.raises(TooManyRequests) as caught:
        repo.read("Patient", "p1")
    assert caught.value.headers["Retry-After"] == "7"
    assert seen[0].headers["Authorization"] == "Bearer t0k"


def test_connection_errors_and_timeouts_are_503():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    for handler, code in ((refuse, "transient"), (slow, "timeout")):
        repo = RemoteFhirRepository(BASE, transport=httpx.MockTransport(handler))
        with pytest.raises(UpstreamUnavailable) as caught:
            repo.read("Patient", "p1")
        assert caught.value.issues[0].code == code
        assert caught.value.headers["Retry-After"]


def test_unit_of_work_sends_one_transaction_bundle_with_if_match():
    seen: list[httpx.Request] = []
    repo = repo_answering(
        200, {"resourceType": "Bundle", "type": "transaction-response", "entry": []}, seen=seen
    )
    with repo.unit_of_work() as uow:
        uow.create({"resourceType": "Patient"}, id="a")
        uow.update({"resourceType": "Patient", "id": "b", "meta": {"versionId": "4"}}, if_match=4)
        uow.delete("Patient", "c")
    assert len(seen) == 1
    bundle = json.loads(seen[0].content)
    assert bundle["type"] == "transaction"
    assert [e["request"]["method"] for e in bundle["entry"]] == ["PUT", "PUT", "DELETE"]
    assert bundle["entry"][1]["request"]["ifMatch"] == 'W/"4"'
    assert "meta" not in bundle["entry"][1]["resource"]


def test_client_credentials_signs_an_assertion_and_reuses_the_token():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from joserfc import jwt
    from joserfc.jwk import import_key

    from adapter.store.remote import ClientCredentialsJwt

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tokens: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
            claims = jwt.decode(
                form["client_assertion"], import_key(pem, "RSA"), algorithms=["RS384"]
            ).claims
            assert claims["iss"] == claims["sub"] == "adapter"
            assert form["grant_type"] == "client_credentials"
            tokens.append("tok")
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 300})
        assert request.headers["Authorization"] == "Bearer tok"
        return httpx.Response(
            200, json={"resourceType": "Patient", "id": "p1", "meta": {"versionId": "2"}}
        )

    auth = ClientCredentialsJwt(
        token_url="http://backend.test/token",
        client_id="adapter",
        private_key_pem=pem,
        scope="system/*.write",
    )
    repo = RemoteFhirRepository(BASE, transport=httpx.MockTransport(handler), auth=auth)
    assert repo.read("Patient", "p1").version_id == 2
    assert repo.read("Patient", "p1").version_id == 2
    assert tokens == ["tok"]
