"""Access and ID tokens: minting (embedded server) and verification (embedded or external issuer).

Access tokens are RS256 JWTs carrying `scope`, `client_id` and the launch context; each one's `jti`
is recorded in `smart_token`, so revocation and introspection see it. Verification pins the
algorithms (never `none`, never HMAC), picks the key by `kid` from the issuer's JWKS only, and checks
`iss`, `aud`, `exp`, `nbf` and `iat` with a small leeway. Every failure is AccessDenied (401).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from adapter.auth.keys import RemoteJwksCache, ServerKeys
from adapter.auth.scopes import SmartGrant, parse_scopes
from adapter.auth.state import AuthState
from adapter.errors import AccessDenied
from adapter.issue import Issue

#: Launch context claims copied between token response, access token, introspection and grant.
CONTEXT_CLAIMS = (
    "patient",
    "encounter",
    "fhirUser",
    "fhirContext",
    "need_patient_banner",
    "smart_style_url",
    "intent",
    "tenant",
)


def _denied(text: str) -> AccessDenied:
    return AccessDenied(
        [Issue("error", "login", text)],
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


class TokenVerifier(Protocol):
    def verify(self, token: str, audience: str) -> SmartGrant: ...


@dataclass(frozen=True, slots=True)
class MintedToken:
    value: str
    jti: str
    issued_at: int
    expires_at: int


class TokenIssuer:
    def __init__(self, keys: ServerKeys, state: AuthState):
        self.keys = keys
        self.state = state

    def _sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": ServerKeys.algorithm, "kid": self.keys.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.keys.private, algorithms=[ServerKeys.algorithm])

    def access_token(
        self,
        *,
        issuer: str,
        audience: str,
        client_id: str,
        scope: str,
        lifetime_seconds: int,
        context: dict[str, Any],
        subject: str | None = None,
        family: str | None = None,
    ) -> MintedToken:
        now = int(time.time())
        jti = secrets.token_urlsafe(24)
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": subject or client_id,
            "client_id": client_id,
            "scope": scope,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_seconds,
            "jti": jti,
            **{k: v for k, v in context.items() if k in CONTEXT_CLAIMS},
        }
        value = self._sign(claims)
        self.state.record_token(
            jti,
            kind="access",
            client_id=client_id,
            scope=scope,
            context={**context, "sub": claims["sub"]},
            issued_at=now,
            expires_at=now + lifetime_seconds,
            family=family,
        )
        return MintedToken(value, jti, now, now + lifetime_seconds)

    def id_token(
        self,
        *,
        issuer: str,
        client_id: str,
        fhir_user: str,
        subject: str,
        nonce: str | None,
        lifetime_seconds: int,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "sub": subject[:255],
            "aud": client_id,
            "iat": now,
            "exp": now + lifetime_seconds,
            "fhirUser": fhir_user,
        }
        if nonce:
            claims["nonce"] = nonce
        return self._sign(claims)


def _unverified_claims(token: str) -> dict[str, Any]:
    try:
        obj = jws.extract_compact(token.encode("ascii"))
        claims = json.loads(obj.payload)
    except (JoseError, ValueError, UnicodeError) as exc:
        raise _denied("The bearer token is not a well-formed JWT") from exc
    if not isinstance(claims, dict):
        raise _denied("The bearer token is not a well-formed JWT")
    return claims


def _decode(
    token: str,
    keys: KeySet,
    algorithms: Sequence[str],
    *,
    issuer: str,
    audience: str | Sequence[str],
    leeway: int,
) -> dict[str, Any]:
    try:
        header = jws.extract_compact(token.encode("ascii")).headers()
    except (JoseError, UnicodeError) as exc:
        raise _denied("The bearer token is not a well-formed JWT") from exc
    if header.get("alg") not in algorithms:
        raise _denied(f"Token algorithm {header.get('alg')!r} is not accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or all(k.kid != kid for k in keys.keys):
        raise _denied("Token key id (kid) is unknown")
    try:
        decoded = jwt.decode(token, keys, algorithms=list(algorithms))
    except JoseError as exc:
        raise _denied("Token signature is invalid") from exc
    audiences = [audience] if isinstance(audience, str) else list(audience)
    registry = jwt.JWTClaimsRegistry(
        leeway=leeway,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "values": audiences},
        exp={"essential": True},
    )
    try:
        registry.validate(decoded.claims)
    except JoseError as exc:
        raise _denied(f"Token rejected: {exc.error}") from exc
    iat = decoded.claims.get("iat")
    if isinstance(iat, (int, float)) and iat > time.time() + leeway:
        raise _denied("Token rejected: issued in the future")
    claims: dict[str, Any] = dict(decoded.claims)
    return claims


def grant_from_claims(claims: dict[str, Any], *, token_id: str | None) -> SmartGrant:
    scope = claims.get("scope")
    if scope is None and isinstance(claims.get("scp"), list):
        scope = " ".join(str(s) for s in claims["scp"])
    scope_text = str(scope or "")
    patient = claims.get("patient")
    return SmartGrant(
        scopes=tuple(scope_text.split()),
        rules=parse_scopes(scope_text).rules,
        client_id=str(claims.get("client_id") or claims.get("azp") or claims.get("sub") or ""),
        subject=str(claims.get("sub")) if claims.get("sub") else None,
        patient=str(patient) if patient else None,
        encounter=str(claims["encounter"]) if claims.get("encounter") else None,
        fhir_user=str(claims["fhirUser"]) if claims.get("fhirUser") else None,
        issuer=str(claims.get("iss")),
        token_id=token_id,
    )


class LocalTokenVerifier:
    """Tokens of the embedded server: our key, our issuer, recorded and not revoked."""

    def __init__(
        self,
        keys: ServerKeys,
        state: AuthState,
        *,
        issuer: Callable[[str], str],
        leeway_seconds: int,
    ):
        self.keys = keys
        self.state = state
        self.issuer = issuer
        self.leeway = leeway_seconds

    def verify(self, token: str, audience: str) -> SmartGrant:
        claims = _decode(
            token,
            self.keys.key_set,
            [ServerKeys.algorithm],
            issuer=self.issuer(audience),
            audience=audience,
            leeway=self.leeway,
        )
        jti = claims.get("jti")
        record = self.state.get_token(str(jti)) if jti else None
        if record is None or record.kind != "access":
            raise _denied("Token is not known to this server")
        if record.revoked:
            raise _denied("Token has been revoked")
        return grant_from_claims(claims, token_id=str(jti))


class ExternalTokenVerifier:
    """Tokens of a configured external issuer (CIS2, Keycloak...), by its JWKS, with audience check."""

    def __init__(
        self,
        issuer: str,
        *,
        jwks: KeySet | None,
        jwks_uri: str | None,
        cache: RemoteJwksCache,
        audience: str | None,
        algorithms: Sequence[str],
        leeway_seconds: int,
    ):
        self.issuer = issuer
        self._jwks = jwks
        self._jwks_uri = jwks_uri
        self._cache = cache
        self._audience = audience
        self._algorithms = [a for a in algorithms if not a.startswith("HS") and a != "none"]
        self.leeway = leeway_seconds

    def _keys(self, refresh: bool = False) -> KeySet:
        if self._jwks is not None:
            return self._jwks
        if self._jwks_uri is None:
            raise _denied("No JWKS configured for the external issuer")
        try:
            return self._cache.get(self._jwks_uri, refresh=refresh)
        except Exception as exc:
            raise _denied("The external issuer's keys could not be fetched") from exc

    def verify(self, token: str, audience: str) -> SmartGrant:
        expected = self._audience or audience
        try:
            claims = _decode(
                token,
                self._keys(),
                self._algorithms,
                issuer=self.issuer,
                audience=expected,
                leeway=self.leeway,
            )
        except AccessDenied as exc:
            if "kid" not in str(exc) or self._jwks is not None:
                raise
            claims = _decode(
                token,
                self._keys(refresh=True),
                self._algorithms,
                issuer=self.issuer,
                audience=expected,
                leeway=self.leeway,
            )
        return grant_from_claims(claims, token_id=claims.get("jti"))


class IssuerRouter:
    """Picks the verifier by the token's (unverified) `iss`; the chosen verifier then checks it."""

    def __init__(self, local: LocalTokenVerifier, external: ExternalTokenVerifier | None):
        self.local = local
        self.external = external

    def verify(self, token: str, audience: str) -> SmartGrant:
        claims = _unverified_claims(token)
        if self.external is not None and claims.get("iss") == self.external.issuer:
            return self.external.verify(token, audience)
        return self.local.verify(token, audience)
