"""The endpoints that act on a token already issued: RFC 7662 introspection, RFC 7009 revocation.

SMART lets a caller introspect with a bearer token instead of client credentials, and lets any
authenticated caller introspect any token. Revoking a refresh token revokes its whole family.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from adapter.auth.client_auth import CLIENT_AUTH_METHODS
from adapter.auth.oauth_http import SmartOAuthRequest
from adapter.auth.state import StoredToken
from adapter.auth.tokens import CONTEXT_CLAIMS
from adapter.errors import AccessDenied

if TYPE_CHECKING:
    from adapter.auth.server import SmartAuthorizationServer


class _BearerCaller:
    """The caller of introspection, authenticated by a bearer token instead of client credentials."""

    def __init__(self, client_id: str):
        self.client_id = client_id

    def get_client_id(self) -> str:
        return self.client_id


class SmartIntrospection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]  # noqa: RUF012
    server: SmartAuthorizationServer

    def authenticate_endpoint_client(self, request: SmartOAuthRequest) -> Any:
        auth = str(
            request.headers.get("Authorization") or request.headers.get("authorization") or ""
        )
        if auth.lower().startswith("bearer "):
            try:
                grant = self.server.verify_bearer(auth[7:].strip(), request.http.fhir_base)
            except AccessDenied as exc:
                raise InvalidClientError(
                    status_code=401, description="Invalid bearer token"
                ) from exc
            request.client = _BearerCaller(grant.client_id or "")
            return request.client
        return super().authenticate_endpoint_client(request)

    def query_token(self, token_string: str, token_type_hint: str | None) -> StoredToken | None:  # noqa: ARG002 - authlib's signature
        return self.server.lookup_token(token_string)

    def check_permission(self, token: StoredToken, client: Any, request: Any) -> bool:  # noqa: ARG002 - authlib's signature
        return True  # SMART: an authenticated caller may introspect any token

    def introspect_token(self, token: StoredToken) -> dict[str, Any]:
        out: dict[str, Any] = {
            "active": True,
            "scope": token.scope,
            "client_id": token.client_id,
            "exp": token.expires_at,
            "iat": token.issued_at,
            "token_type": "Bearer" if token.kind == "access" else "refresh_token",
        }
        for name in (*CONTEXT_CLAIMS, "sub", "iss"):
            if token.context.get(name) is not None:
                out[name] = token.context[name]
        return out


class SmartRevocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS
    server: SmartAuthorizationServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> StoredToken | None:  # noqa: ARG002 - authlib's signature
        return self.server.lookup_token(token_string)

    def revoke_token(self, token: StoredToken, request: Any) -> None:  # noqa: ARG002 - authlib's signature
        """A refresh token takes its whole family with it (RFC 7009 §2.1: and its access tokens)."""
        if token.kind == "refresh":
            self.server.state.revoke_family(token)
        else:
            self.server.state.revoke(token.token_id)
