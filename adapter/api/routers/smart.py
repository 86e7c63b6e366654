"""SMART on FHIR endpoints: discovery, authorize (with a minimal approval page), token, introspect,
revoke, JWKS, and EHR launch-context creation. The protocol lives in `adapter.auth.server`; this
router only translates HTTP. OAuth endpoints answer RFC 6749 error JSON, not OperationOutcome.
"""

from __future__ import annotations

import html
import secrets
from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error
from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from adapter.api.deps import BaseUrlDep
from adapter.api.routers import metadata
from adapter.api.security import SmartDep, current_grant
from adapter.auth.launch import Approval, LaunchContextError, resolve_context
from adapter.auth.server import OAuthHttpRequest, OAuthResponse
from adapter.auth.service import SmartServices
from adapter.errors import Forbidden
from adapter.fhir.types import JsonObject
from adapter.issue import Issue

router = APIRouter(tags=["smart"])
#: Public documents (discovery, JWKS) answer any origin; everything else follows the allow-list
#: of `adapter.api.cors` (token, introspection and revocation included).
CORS = {"Access-Control-Allow-Origin": "*"}

CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
]


def smart_configuration(base: str, issuer: str) -> JsonObject:
    return {
        "issuer": issuer,
        "jwks_uri": f"{base}/auth/jwks",
        "authorization_endpoint": f"{base}/auth/authorize",
        "token_endpoint": f"{base}/auth/token",
        "introspection_endpoint": f"{base}/auth/introspect",
        "revocation_endpoint": f"{base}/auth/revoke",
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": [
            "private_key_jwt",
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": [
            "openid",
            "fhirUser",
            "launch",
            "launch/patient",
            "launch/encounter",
            "offline_access",
            "online_access",
            "patient/*.cruds",
            "user/*.cruds",
            "system/*.cruds",
            "patient/*.read",
            "user/*.read",
            "system/*.read",
            "patient/*.write",
            "user/*.write",
            "system/*.write",
        ],
        "response_types_supported": ["code"],
        "capabilities": CAPABILITIES,
        "code_challenge_methods_supported": ["S256"],
    }


def _security_hook(cs: JsonObject, services: Any, base: str) -> None:  # noqa: ARG001 - hook signature
    """CapabilityStatement.rest.security with the oauth-uris extension (fhirclient reads it)."""
    cs["rest"][0]["security"] = {
        "cors": True,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ]
            }
        ],
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [
                    {"url": "authorize", "valueUri": f"{base}/auth/authorize"},
                    {"url": "token", "valueUri": f"{base}/auth/token"},
                    {"url": "introspect", "valueUri": f"{base}/auth/introspect"},
                    {"url": "revoke", "valueUri": f"{base}/auth/revoke"},
                ],
            }
        ],
    }


if _security_hook not in metadata.CAPABILITY_HOOKS:
    metadata.CAPABILITY_HOOKS.append(_security_hook)


@router.get("/.well-known/smart-configuration")
def well_known(smart: SmartDep, base: BaseUrlDep) -> JSONResponse:
    return JSONResponse(smart_configuration(base, smart.issuer_for(base)), headers=CORS)


@router.get("/.well-known/openid-configuration")
def openid_configuration(smart: SmartDep, base: BaseUrlDep) -> JSONResponse:
    body = {
        "issuer": smart.issuer_for(base),
        "authorization_endpoint": f"{base}/auth/authorize",
        "token_endpoint": f"{base}/auth/token",
        "jwks_uri": f"{base}/auth/jwks",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "fhirUser"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "fhirUser", "nonce"],
    }
    return JSONResponse(body, headers=CORS)


@router.get("/auth/jwks")
def jwks(smart: SmartDep) -> JSONResponse:
    return JSONResponse(smart.keys.jwks(), headers=CORS)


async def _oauth_request(request: Request, base: str) -> OAuthHttpRequest:
    form: list[tuple[str, str]] = []
    if request.method == "POST":
        data = await request.form()
        form = [(k, str(v)) for k, v in data.multi_items()]
    url = str(request.url)
    configured = request.app.state.services.settings.public_base_url
    if configured:  # behind a TLS proxy, authlib must see the public (https) URL
        url = base + url.split("/fhir", 1)[1] if "/fhir" in url else url
    return OAuthHttpRequest(
        method=request.method,
        url=url,
        headers=request.headers,
        query=list(request.query_params.multi_items()),
        form=form,
        fhir_base=base,
    )


def _respond(result: OAuthResponse) -> Response:
    headers = {k: v for k, v in result.headers if k.lower() != "content-type"}
    if result.status == 302:
        location = headers.pop("Location", headers.pop("location", ""))
        return RedirectResponse(location, status_code=302, headers=headers)
    return JSONResponse(
        result.body,
        status_code=result.status,
        headers={**headers, "Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def _error(smart: SmartServices, http: OAuthHttpRequest, error: OAuth2Error) -> Response:
    response: OAuthResponse = smart.server.handle_error_response(http, error)
    return _respond(response)


def _approve(
    smart: SmartServices, http: OAuthHttpRequest, grant: Any, approval: Approval
) -> Response:
    data = grant.request.payload.data
    try:
        context = resolve_context(
            state=smart.state,
            scope=grant.request.scope or "",
            launch=data.get("launch"),
            approval=approval,
        )
    except LaunchContextError as exc:
        return _error(
            smart,
            http,
            InvalidRequestError(str(exc), redirect_uri=grant.redirect_uri, state=data.get("state")),
        )
    result: OAuthResponse = smart.server.create_authorization_response(
        request=grant.request, grant_user=context, grant=grant
    )
    return _respond(result)


@router.api_route("/auth/authorize", methods=["GET", "POST"])
async def authorize(request: Request, smart: SmartDep, base: BaseUrlDep) -> Response:
    http = await _oauth_request(request, base)
    try:
        grant = smart.server.get_consent_grant(request=http)
    except OAuth2Error as error:
        return _error(smart, http, error)
    if smart.auth.dev_auto_approve:
        return _approve(smart, http, grant, Approval(smart.auth.dev_user, smart.auth.dev_patient))
    return HTMLResponse(_approval_page(base, http, grant), headers={"Cache-Control": "no-store"})


@router.post("/auth/authorize/approve")
async def approve(request: Request, smart: SmartDep, base: BaseUrlDep) -> Response:
    data = await request.form()
    params = [(k[2:], str(v)) for k, v in data.multi_items() if k.startswith("p_")]
    http = OAuthHttpRequest(
        method="GET",
        url=f"{base}/auth/authorize",
        headers=request.headers,
        query=params,
        fhir_base=base,
    )
    try:
        grant = smart.server.get_consent_grant(request=http)
    except OAuth2Error as error:
        return _error(smart, http, error)
    password = smart.auth.login_password
    supplied = str(data.get("password", ""))
    if (
        data.get("decision") != "approve"
        or password is None
        or not secrets.compare_digest(supplied.encode(), password.get_secret_value().encode())
    ):
        result: OAuthResponse = smart.server.create_authorization_response(
            request=grant.request, grant_user=None, grant=grant
        )
        return _respond(result)
    user = str(data.get("fhir_user") or smart.auth.dev_user)
    patient = str(data.get("patient") or "") or None
    return _approve(smart, http, grant, Approval(user, patient))


def _approval_page(base: str, http: OAuthHttpRequest, grant: Any) -> str:
    hidden = "".join(
        f'<input type="hidden" name="p_{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in http.query + http.form
    )
    scope = html.escape(grant.request.scope or "")
    client = html.escape(grant.request.client.name)
    needs_patient = "launch/patient" in (grant.request.scope or "").split()
    patient_field = (
        '<label>Patient id <input name="patient" required></label><br>' if needs_patient else ""
    )
    return f"""<!doctype html><html><head><title>Approve access</title></head><body>
<h1>{client} asks for access</h1><p>Scopes: <code>{scope}</code></p>
<form method="post" action="{html.escape(base)}/auth/authorize/approve">{hidden}
<label>Your fhirUser <input name="fhir_user" placeholder="Practitioner/id" required></label><br>
{patient_field}<label>Password <input name="password" type="password" required></label><br>
<button name="decision" value="approve">Approve</button>
<button name="decision" value="deny" formnovalidate>Deny</button></form></body></html>"""


@router.post("/auth/token")
async def token(request: Request, smart: SmartDep, base: BaseUrlDep) -> Response:
    http = await _oauth_request(request, base)
    result: OAuthResponse = smart.server.create_token_response(http)
    return _respond(result)


@router.post("/auth/introspect")
async def introspect(request: Request, smart: SmartDep, base: BaseUrlDep) -> Response:
    http = await _oauth_request(request, base)
    result: OAuthResponse = smart.server.create_endpoint_response("introspection", http)
    return _respond(result)


@router.post("/auth/revoke")
async def revoke(request: Request, smart: SmartDep, base: BaseUrlDep) -> Response:
    http = await _oauth_request(request, base)
    result: OAuthResponse = smart.server.create_endpoint_response("revocation", http)
    return _respond(result)


@router.post("/auth/launch")
async def create_launch(request: Request, smart: SmartDep) -> JSONResponse:
    """EHR launch: the EHR stores {patient, encounter?, fhirUser?} and passes the returned `launch`.

    With auth on, the caller needs a user/ or system/ token that may read the Patient.
    """
    body = await request.json()
    if not isinstance(body, dict) or not isinstance(body.get("patient"), str):
        return JSONResponse(
            {"error": "invalid_request", "error_description": "patient is required"},
            status_code=400,
        )
    grant = current_grant(request)
    if not grant.is_development and not any(
        r.context != "patient" for r in grant.rules_for("r", "Patient")
    ):
        raise Forbidden(
            [Issue("error", "forbidden", "Creating a launch needs user/ or system/ Patient read")]
        )
    context = {
        k: body[k]
        for k in (
            "patient",
            "encounter",
            "fhirUser",
            "intent",
            "smart_style_url",
            "need_patient_banner",
        )
        if body.get(k) is not None
    }
    launch = smart.state.save_launch(context, smart.auth.launch_context_seconds)
    return JSONResponse({"launch": launch}, status_code=201)
