"""`SmartServices`: the authorisation parts built once per app from Settings and AuthSettings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from joserfc.jwk import KeySet
from sqlalchemy.engine import Engine

from adapter.audit import AuditFailures
from adapter.auth.clients import ClientRegistry
from adapter.auth.keys import RemoteJwksCache, ServerKeys
from adapter.auth.scopes import SmartGrant
from adapter.auth.server import SmartAuthorizationServer
from adapter.auth.settings import AuthSettings
from adapter.auth.state import AuthState
from adapter.auth.tokens import ExternalTokenVerifier, IssuerRouter, LocalTokenVerifier, TokenIssuer
from adapter.settings import Settings


@dataclass(slots=True)
class SmartServices:
    settings: Settings
    auth: AuthSettings
    engine: Engine
    keys: ServerKeys
    state: AuthState
    registry: ClientRegistry
    issuer: TokenIssuer
    verifier: IssuerRouter
    server: SmartAuthorizationServer
    #: AuditEvents that could not be stored (each also logged at ERROR with a correlation id).
    audit_failures: AuditFailures = field(default_factory=AuditFailures)

    @property
    def audit_enabled(self) -> bool:
        return (
            self.settings.auth_required
            if self.auth.audit_enabled is None
            else self.auth.audit_enabled
        )

    def issuer_for(self, fhir_base: str) -> str:
        return (self.settings.issuer or fhir_base).rstrip("/")

    def verify(self, token: str, fhir_base: str) -> SmartGrant:
        return self.verifier.verify(token, fhir_base)

    def close(self) -> None:
        self.engine.dispose()


def build_smart_services(
    settings: Settings, auth: AuthSettings | None = None, *, engine: Engine | None = None
) -> SmartServices:
    from adapter.store.sql import build_engine

    auth = auth or AuthSettings()
    engine = engine or build_engine(settings.database_url, settings.database_schema)
    keys = ServerKeys(auth.signing_key_path)
    state = AuthState(engine)
    registry = ClientRegistry(engine)
    issuer = TokenIssuer(keys, state)
    cache = RemoteJwksCache(auth.jwks_cache_seconds)

    def issuer_for(base: str) -> str:
        return (settings.issuer or base).rstrip("/")

    local = LocalTokenVerifier(
        keys, state, issuer=issuer_for, leeway_seconds=auth.clock_skew_seconds
    )
    external = None
    if auth.external_issuer:
        external = ExternalTokenVerifier(
            auth.external_issuer,
            jwks=KeySet.import_key_set(json.loads(auth.external_jwks))
            if auth.external_jwks
            else None,
            jwks_uri=auth.external_jwks_uri,
            cache=cache,
            audience=auth.external_audience,
            algorithms=auth.external_algorithms,
            leeway_seconds=auth.clock_skew_seconds,
        )
    verifier = IssuerRouter(local, external)
    server = SmartAuthorizationServer(
        registry=registry,
        state=state,
        issuer=issuer,
        settings=auth,
        issuer_for=issuer_for,
        verify_bearer=local.verify,
        jwks_cache=cache,
    )
    return SmartServices(
        settings=settings,
        auth=auth,
        engine=engine,
        keys=keys,
        state=state,
        registry=registry,
        issuer=issuer,
        verifier=verifier,
        server=server,
    )
