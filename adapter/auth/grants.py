"""The OAuth grants the token endpoint runs, as SMART App Launch 2.2 narrows them.

Authorization code with S256-only PKCE and an `aud` check, refresh with rotation (a reused refresh
token revokes its family), and client credentials for SMART Backend Services (private_key_jwt only,
scopes within the client's registration). The token bodies of app grants are built by
`SmartAuthorizationServer.app_token_response`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    grants,
)
from authlib.oauth2.rfc7636 import CodeChallenge

from adapter.auth.client_auth import CLIENT_AUTH_METHODS
from adapter.auth.clients import RegisteredClient
from adapter.auth.oauth_http import NO_STORE, SmartOAuthRequest
from adapter.auth.scopes import narrow_scopes
from adapter.auth.state import StoredCode, StoredToken

if TYPE_CHECKING:
    from adapter.auth.server import SmartAuthorizationServer


# --- PKCE: S256 only, always ----------------------------------------------------------------
class S256Only(CodeChallenge):  # type: ignore[misc]
    """SMART: servers SHALL support S256 and SHALL NOT support `plain`; every app uses PKCE."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: Final = ["S256"]
    CODE_CHALLENGE_METHODS: Final = {"S256": CodeChallenge.CODE_CHALLENGE_METHODS["S256"]}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError(
                "PKCE is required: send code_challenge with method S256", redirect_uri=redirect_uri
            )
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError(
                "code_challenge_method must be S256 ('plain' is not supported)",
                redirect_uri=redirect_uri,
            )
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        code = grant.request.authorization_code
        if code is not None and not code.code_challenge:
            raise InvalidRequestError("The authorization request had no PKCE code_challenge")
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'")
        super().validate_code_verifier(grant, result)


# --- grants ----------------------------------------------------------------------------------
def _context_of(user: Any) -> dict[str, Any]:
    return dict(user) if isinstance(user, dict) else {}


class SmartAuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    server: SmartAuthorizationServer
    request: SmartOAuthRequest

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        data = self.request.payload.data
        aud = data.get("aud")
        if aud is None or aud.rstrip("/") != self.request.http.fhir_base:
            raise InvalidRequestError(
                "'aud' must be this FHIR server's base URL",
                redirect_uri=redirect_uri,
                state=data.get("state"),
            )
        return redirect_uri

    def save_authorization_code(self, code: str, request: SmartOAuthRequest) -> None:
        data = request.payload.data
        self.server.state.save_code(
            code,
            client_id=request.client.client_id,
            redirect_uri=data.get("redirect_uri"),
            scope=request.scope or "",
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            nonce=data.get("nonce"),
            context=_context_of(request.user),
            lifetime_seconds=self.server.settings.authorization_code_seconds,
        )

    def query_authorization_code(self, code: str, client: RegisteredClient) -> StoredCode | None:
        return self.server.state.take_code(code, client.client_id)

    def delete_authorization_code(self, authorization_code: StoredCode) -> None:
        """Already consumed by `take_code`."""

    def authenticate_user(self, authorization_code: StoredCode) -> dict[str, Any]:
        return authorization_code.context or {"anonymous": True}

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        code: StoredCode = self.request.authorization_code
        body = self.server.app_token_response(
            self.request, self.request.client, code.scope, code.context, nonce=code.nonce
        )
        return 200, body, NO_STORE


class SmartRefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    server: SmartAuthorizationServer
    request: SmartOAuthRequest

    def authenticate_refresh_token(self, refresh_token: str) -> StoredToken | None:
        token = self.server.state.get_refresh_token(refresh_token)
        if token is not None and token.is_revoked():
            self.server.refresh_token_reused(token)
            return None
        if token is None or token.is_expired():
            return None
        return token

    def authenticate_user(self, refresh_token: StoredToken) -> dict[str, Any]:
        return refresh_token.context or {"anonymous": True}

    def revoke_old_credential(self, refresh_token: StoredToken) -> None:
        """Done by `create_token_response` before anything is minted (see `use_refresh_token`)."""

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Rotation: the presented token is used up first, then a new access token and a new
        refresh token (same family, the original scope: RFC 6749 §6) are issued."""
        token: StoredToken = self.request.refresh_token
        if not self.server.state.use_refresh_token(token.token_id):
            self.server.refresh_token_reused(token)  # lost a race with another use of it
            raise InvalidGrantError()
        scope = self.request.payload.scope or token.scope
        context = {k: v for k, v in token.context.items() if k != "sub"}
        body = self.server.app_token_response(
            self.request,
            self.request.client,
            scope,
            context,
            nonce=None,
            rotated=token,
        )
        return 200, body, NO_STORE


class SmartClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]  # noqa: RUF012 - authlib reads this list
    server: SmartAuthorizationServer
    request: SmartOAuthRequest

    def validate_requested_scope(self) -> None:
        requested = (self.request.payload.scope or "").split()
        if not requested:
            raise InvalidScopeError("scope is required")
        granted = narrow_scopes(" ".join(requested), self.request.client.scope).split()
        if set(granted) != set(requested):
            raise InvalidScopeError("Requested scopes exceed what this client is registered for")

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: RegisteredClient = self.request.client
        scope = " ".join(dict.fromkeys((self.request.payload.scope or "").split()))
        lifetime = self.server.settings.backend_access_token_seconds
        minted = self.server.issuer.access_token(
            issuer=self.server.issuer_for(self.request.http.fhir_base),
            audience=self.request.http.fhir_base,
            client_id=client.client_id,
            scope=scope,
            lifetime_seconds=lifetime,
            context={},
        )
        body = {
            "access_token": minted.value,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope,
        }
        return 200, body, NO_STORE
