"""Client authentication at the token endpoints: SMART's private_key_jwt client assertions.

authlib verifies RFC 7523 assertions; `SmartClientAssertion` adds what SMART Backend Services
asks for: RS384/ES384 only, a `kid` that names a registered key, `jku` only if it is the registered
JWKS URL, `exp` within `client_assertion_max_seconds`, and a jti replay cache in SQL
(`AuthState.use_jti`). `CLIENT_AUTH_METHODS` lists every method the app-facing endpoints accept.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from adapter.auth.clients import RegisteredClient
from adapter.auth.oauth_http import SmartOAuthRequest

if TYPE_CHECKING:
    from adapter.auth.server import SmartAuthorizationServer

ASSERTION_ALGORITHMS: Final = ("RS384", "ES384")
CLIENT_AUTH_METHODS: Final = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
]


class SmartClientAssertion(JWTBearerClientAssertion):  # type: ignore[misc]
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, server: SmartAuthorizationServer):
        super().__init__(validate_jti=True, leeway=server.settings.clock_skew_seconds)
        self.server = server
        self._request: SmartOAuthRequest | None = None

    def __call__(self, query_client: Any, request: SmartOAuthRequest) -> Any:
        self._request = request
        return super().__call__(query_client, request)

    def get_audiences(self) -> list[str]:
        base = self._request.http.fhir_base if self._request is not None else ""
        return [f"{base}/auth/token"]

    def resolve_client_public_key(self, client: RegisteredClient) -> KeySet:
        if client.jwks:
            return KeySet.import_key_set(__import__("json").loads(client.jwks))
        if client.jwks_uri:
            try:
                return self.server.jwks_cache.get(client.jwks_uri)
            except Exception as exc:
                raise InvalidClientError(
                    description="The client's JWKS could not be fetched"
                ) from exc
        raise InvalidClientError(description="The client has no registered keys")

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            header = jws.extract_compact(assertion.encode("ascii")).headers()
        except (JoseError, UnicodeError) as exc:
            raise InvalidClientError(description="Malformed client assertion") from exc
        if header.get("alg") not in ASSERTION_ALGORITHMS:
            raise InvalidClientError(description="Client assertion alg must be RS384 or ES384")
        if not header.get("kid"):
            raise InvalidClientError(description="Client assertion header needs a kid")
        client = self._request.client if self._request is not None else None
        if header.get("jku") and (client is None or header["jku"] != client.jwks_uri):
            raise InvalidClientError(description="jku does not match the registered JWKS URL")
        keys = resolve_key if isinstance(resolve_key, KeySet) else KeySet([resolve_key])
        if all(k.kid != header["kid"] for k in keys.keys):
            raise InvalidClientError(description="Unknown kid in client assertion")
        try:
            token = jwt.decode(assertion, keys, algorithms=list(ASSERTION_ALGORITHMS))
        except JoseError as exc:
            raise InvalidClientError(description="Client assertion signature is invalid") from exc
        claims: dict[str, Any] = dict(token.claims)
        self.verify_claims(token.claims)
        limit = time.time() + self.server.settings.client_assertion_max_seconds + self.leeway
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] > limit:
            raise InvalidClientError(
                description="Client assertion exp is more than 5 minutes ahead"
            )
        return claims

    def validate_jti(self, claims: Any, jti: str) -> bool:
        return self.server.state.use_jti(str(claims["iss"]), str(jti), int(claims["exp"]))
