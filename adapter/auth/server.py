"""The embedded SMART authorisation server: authlib's grants and endpoints, wired framework-free.

authlib supplies the protocol machinery (RFC 6749 code, refresh and client-credentials grants,
RFC 7636 PKCE, RFC 7523 client assertions, RFC 7662 introspection, RFC 7009 revocation); SMART App
Launch 2.2 adds S256-only PKCE, `aud` checking, launch context in the code and the token response,
RS256 ID tokens with `fhirUser`, RS384/ES384 assertions with a jti replay cache in SQL, and scope
narrowing against each client's registration. This module registers those pieces and builds the
app token response; they live beside it:

- `oauth_http.py`: `OAuthHttpRequest` / `OAuthResponse`, the exchange with the web layer;
- `client_auth.py`: private_key_jwt client assertions;
- `grants.py`: authorization code (S256-only PKCE), refresh, client credentials;
- `token_endpoints.py`: introspection and revocation.

The web layer (`adapter/api/routers/smart.py`) turns HTTP into `OAuthHttpRequest` and back; nothing
here imports FastAPI. The names of those modules stay importable from here.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749 import AccessDeniedError, AuthorizationServer
from joserfc import jwt
from joserfc.errors import JoseError

from adapter.auth.client_auth import (
    ASSERTION_ALGORITHMS,
    CLIENT_AUTH_METHODS,
    SmartClientAssertion,
)
from adapter.auth.clients import ClientRegistry, RegisteredClient
from adapter.auth.grants import (
    S256Only,
    SmartAuthorizationCodeGrant,
    SmartClientCredentialsGrant,
    SmartRefreshTokenGrant,
)
from adapter.auth.keys import RemoteJwksCache
from adapter.auth.oauth_http import NO_STORE, OAuthHttpRequest, OAuthResponse, SmartOAuthRequest
from adapter.auth.scopes import parse_scopes
from adapter.auth.settings import AuthSettings
from adapter.auth.state import AuthState, StoredToken, digest
from adapter.auth.token_endpoints import SmartIntrospection, SmartRevocation
from adapter.auth.tokens import CONTEXT_CLAIMS, TokenIssuer

log = logging.getLogger(__name__)


class SmartAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(
        self,
        *,
        registry: ClientRegistry,
        state: AuthState,
        issuer: TokenIssuer,
        settings: AuthSettings,
        issuer_for: Callable[[str], str],
        verify_bearer: Callable[[str, str], Any],
        jwks_cache: RemoteJwksCache,
    ):
        super().__init__()
        self.registry = registry
        self.state = state
        self.issuer = issuer
        self.settings = settings
        self.issuer_for = issuer_for
        self.verify_bearer = verify_bearer
        self.jwks_cache = jwks_cache
        self.register_client_auth_method("private_key_jwt", SmartClientAssertion(self))
        self.register_grant(SmartAuthorizationCodeGrant, [S256Only(required=True)])
        self.register_grant(SmartRefreshTokenGrant)
        self.register_grant(SmartClientCredentialsGrant)
        self.register_endpoint(SmartIntrospection)
        self.register_endpoint(SmartRevocation)

    # authlib hooks
    def query_client(self, client_id: str) -> RegisteredClient | None:
        return self.registry.get(client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """Tokens are recorded as they are minted (see TokenIssuer)."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:  # noqa: ARG002 - authlib's signature
        log.debug("oauth signal %s", name)

    def create_oauth2_request(self, request: Any) -> SmartOAuthRequest:
        if isinstance(request, SmartOAuthRequest):
            return request
        return SmartOAuthRequest(request)

    def create_json_request(self, request: Any) -> Any:
        return self.create_oauth2_request(request)

    def handle_response(self, status: int, body: Any, headers: Any) -> OAuthResponse:
        return OAuthResponse(status, body, list(headers or []))

    # ours
    def lookup_token(self, value: str) -> StoredToken | None:
        """An access token (by its verified jti) or a refresh token (by hash); None if neither."""
        if value.count(".") == 2:
            try:
                decoded = jwt.decode(value, self.issuer.keys.key_set, algorithms=["RS256"])
            except JoseError:
                return None
            jti = decoded.claims.get("jti")
            token = self.state.get_token(str(jti)) if jti else None
            if token is not None:
                return StoredToken(
                    **{
                        **_as_dict(token),
                        "context": {**token.context, "iss": decoded.claims.get("iss")},
                    }
                )
            return None
        return self.state.get_refresh_token(value)

    def refresh_token_reused(self, token: StoredToken) -> None:
        """A used (or revoked) refresh token came back: revoke its family. Logged without any
        patient context: the client id and the family's internal id only."""
        self.state.revoke_family(token)
        log.warning(
            "refresh token reused: its family is revoked",
            extra={"client_id": token.client_id, "token_family": token.family_root[:12]},
        )

    def _new_refresh_token(
        self, client_id: str, scope: str, context: dict[str, Any], family: str | None
    ) -> tuple[str, str]:
        """Records a refresh token; returns its value and the id of its family."""
        refresh_value = secrets.token_urlsafe(32)
        token_id = digest(refresh_value)
        seconds = (
            self.settings.offline_refresh_token_seconds
            if "offline_access" in parse_scopes(scope).other
            else self.settings.online_refresh_token_seconds
        )
        now = int(time.time())
        self.state.record_token(
            token_id,
            kind="refresh",
            client_id=client_id,
            scope=scope,
            context=context,
            issued_at=now,
            expires_at=now + seconds,
            family=family,
        )
        return refresh_value, family or token_id

    def app_token_response(
        self,
        request: SmartOAuthRequest,
        client: RegisteredClient,
        scope: str,
        context: dict[str, Any],
        *,
        nonce: str | None,
        rotated: StoredToken | None = None,
    ) -> dict[str, Any]:
        """The token response of a code exchange, or of a refresh (`rotated`: the refresh token
        just used, whose successor keeps its scope and family)."""
        base = request.http.fhir_base
        issuer = self.issuer_for(base)
        scopes = parse_scopes(scope)
        lifetime = self.settings.app_access_token_seconds
        family: str | None = None
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": lifetime, "scope": scope}
        if rotated is not None:
            body["refresh_token"], family = self._new_refresh_token(
                client.client_id, rotated.scope, rotated.context, rotated.family_root
            )
        elif "offline_access" in scopes.other or "online_access" in scopes.other:
            body["refresh_token"], family = self._new_refresh_token(
                client.client_id, scope, context, None
            )
        token_context = {k: v for k, v in context.items() if k in CONTEXT_CLAIMS}
        minted = self.issuer.access_token(
            issuer=issuer,
            audience=base,
            client_id=client.client_id,
            scope=scope,
            lifetime_seconds=lifetime,
            context=token_context,
            subject=context.get("fhirUser"),
            family=family,
        )
        body["access_token"] = minted.value
        for name in (
            "patient",
            "encounter",
            "fhirContext",
            "need_patient_banner",
            "smart_style_url",
            "intent",
        ):
            if context.get(name) is not None:
                body[name] = context[name]
        if "openid" in scopes.other and context.get("fhirUser"):
            fhir_user = str(context["fhirUser"])
            body["id_token"] = self.issuer.id_token(
                issuer=issuer,
                client_id=client.client_id,
                fhir_user=fhir_user if "://" in fhir_user else f"{base}/{fhir_user}",
                subject=fhir_user,
                nonce=nonce,
                lifetime_seconds=lifetime,
            )
        return body


def _as_dict(token: StoredToken) -> dict[str, Any]:
    return {name: getattr(token, name) for name in token.__dataclass_fields__}


# The web layer and `service.py` use AccessDeniedError, OAuthHttpRequest, OAuthResponse and
# SmartAuthorizationServer; the other names moved out of this module and stay importable from it.
__all__ = [
    "ASSERTION_ALGORITHMS",
    "CLIENT_AUTH_METHODS",
    "NO_STORE",
    "AccessDeniedError",
    "OAuthHttpRequest",
    "OAuthResponse",
    "S256Only",
    "SmartAuthorizationCodeGrant",
    "SmartAuthorizationServer",
    "SmartClientAssertion",
    "SmartClientCredentialsGrant",
    "SmartIntrospection",
    "SmartOAuthRequest",
    "SmartRefreshTokenGrant",
    "SmartRevocation",
]
