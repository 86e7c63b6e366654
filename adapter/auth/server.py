"""The embedded SMART authorisation server: authlib's grants and endpoints, wired framework-free.

authlib supplies the protocol machinery (RFC 6749 code, refresh and client-credentials grants,
RFC 7636 PKCE, RFC 7523 client assertions, RFC 7662 introspection, RFC 7009 revocation); this module
supplies what SMART App Launch 2.2 adds: S256-only PKCE, `aud` checking, launch context in the
code and the token response, RS256 ID tokens with `fhirUser`, RS384/ES384 assertions with a jti
replay cache in SQL, and scope narrowing against each client's registration. The web layer
(`adapter/api/routers/smart.py`) turns HTTP into `OAuthHttpRequest` and back; nothing here imports
FastAPI.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from authlib.oauth2.rfc6749 import (
    AccessDeniedError,
    AuthorizationServer,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Payload,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from adapter.auth.clients import ClientRegistry, RegisteredClient
from adapter.auth.keys import RemoteJwksCache
from adapter.auth.scopes import narrow_scopes, parse_scopes
from adapter.auth.settings import AuthSettings
from adapter.auth.state import AuthState, StoredCode, StoredToken, digest
from adapter.auth.tokens import CONTEXT_CLAIMS, TokenIssuer
from adapter.errors import AccessDenied

log = logging.getLogger(__name__)

NO_STORE: Final = [
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
]
ASSERTION_ALGORITHMS: Final = ("RS384", "ES384")
CLIENT_AUTH_METHODS: Final = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
]


# --- framework-neutral request ---------------------------------------------------------------
@dataclass(slots=True)
class OAuthHttpRequest:
    """What the web layer hands us: method, absolute URL, headers, query and form values."""

    method: str
    url: str
    headers: Mapping[str, str]
    query: list[tuple[str, str]] = field(default_factory=list)
    form: list[tuple[str, str]] = field(default_factory=list)
    #: The FHIR base URL this request arrived at (the `aud` of tokens, the issuer by default).
    fhir_base: str = ""


@dataclass(frozen=True, slots=True)
class OAuthResponse:
    status: int
    body: Any
    headers: list[tuple[str, str]]


class _Payload(OAuth2Payload):  # type: ignore[misc]  # authlib is untyped
    def __init__(self, items: list[tuple[str, str]]):
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in items:
            self._datalist[key].append(value)
        self._data = {k: v[0] for k, v in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class SmartOAuthRequest(OAuth2Request):  # type: ignore[misc]  # authlib is untyped
    def __init__(self, http: OAuthHttpRequest):
        super().__init__(http.method, http.url, headers=http.headers)
        self.http = http
        self.payload = _Payload(http.query + http.form)
        self._args = dict(http.query)
        self._form = dict(http.form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


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


# --- client assertions (private_key_jwt) -------------------------------------------------------
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


# --- introspection and revocation ---------------------------------------------------------------
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


# --- the server --------------------------------------------------------------------------------
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


__all__ = [
    "AccessDeniedError",
    "OAuthHttpRequest",
    "OAuthResponse",
    "SmartAuthorizationServer",
]
