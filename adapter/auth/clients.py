"""The client registry: apps (redirect URIs, allowed scopes) and backend services (a JWKS or its URL).

`RegisteredClient` is authlib's `ClientMixin` for the grants in `server.py`; `ClientRegistry`
reads and writes the `smart_client` table, and is what `adapter clients add|list|remove` uses.
Client secrets are stored as salted PBKDF2 hashes, never in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Final, Literal

import sqlalchemy as sa
from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy.engine import Engine

from adapter.auth.scopes import narrow_scopes, parse_scopes
from adapter.auth.tables import CLIENT_TABLE
from adapter.store.sql import write_engine

ClientKind = Literal["backend", "app"]
AuthMethod = Literal["private_key_jwt", "client_secret_basic", "client_secret_post", "none"]
_PBKDF2_ROUNDS: Final = 200_000


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, _PBKDF2_ROUNDS)
    return f"pbkdf2-sha256${_PBKDF2_ROUNDS}${salt.hex()}${digest.hex()}"


def secret_matches(secret: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        _, rounds, salt, digest = stored.split("$")
    except ValueError:
        return False
    candidate = hashlib.pbkdf2_hmac("sha256", secret.encode(), bytes.fromhex(salt), int(rounds))
    return hmac.compare_digest(candidate.hex(), digest)


@dataclass(frozen=True, slots=True)
class RegisteredClient(ClientMixin):  # type: ignore[misc]  # authlib is untyped
    client_id: str
    name: str
    kind: ClientKind
    auth_method: AuthMethod
    scope: str
    redirect_uris: tuple[str, ...] = ()
    jwks: str | None = None
    jwks_uri: str | None = None
    secret_hash: str | None = field(default=None, repr=False)
    created_at: int = 0

    # --- authlib ClientMixin -------------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        return narrow_scopes(scope, self.scope)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secret_matches(client_secret, self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:  # noqa: ARG002
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return self.kind == "app" and response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        if self.kind == "backend":
            return grant_type == "client_credentials"
        return grant_type in ("authorization_code", "refresh_token")

    # --- ours ------------------------------------------------------------------------------
    @property
    def is_public(self) -> bool:
        return self.auth_method == "none"

    def summary(self) -> dict[str, object]:
        return {
            "client_id": self.client_id,
            "name": self.name,
            "kind": self.kind,
            "auth_method": self.auth_method,
            "scope": self.scope,
            "redirect_uris": list(self.redirect_uris),
            "jwks_uri": self.jwks_uri,
            "has_inline_jwks": self.jwks is not None,
        }


class ClientRegistryError(ValueError):
    """A registration that cannot be right (no key for a backend client, bad scope...)."""


def _row_to_client(row: sa.Row[object]) -> RegisteredClient:
    m = row._mapping
    return RegisteredClient(
        client_id=m["client_id"],
        name=m["name"],
        kind=m["kind"],
        auth_method=m["auth_method"],
        scope=m["scope"],
        redirect_uris=tuple(json.loads(m["redirect_uris"])),
        jwks=m["jwks"],
        jwks_uri=m["jwks_uri"],
        secret_hash=m["secret_hash"],
        created_at=m["created_at"],
    )


class ClientRegistry:
    def __init__(self, engine: Engine):
        self._engine = engine
        self._write = write_engine(engine)

    def get(self, client_id: str) -> RegisteredClient | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(CLIENT_TABLE).where(CLIENT_TABLE.c.client_id == client_id)
            ).first()
        return _row_to_client(row) if row is not None else None

    def list(self) -> list[RegisteredClient]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(CLIENT_TABLE).order_by(CLIENT_TABLE.c.client_id)).all()
        return [_row_to_client(r) for r in rows]

    def add(
        self,
        client_id: str,
        *,
        kind: ClientKind,
        scope: str,
        name: str | None = None,
        auth_method: AuthMethod | None = None,
        jwks: str | None = None,
        jwks_uri: str | None = None,
        redirect_uris: tuple[str, ...] = (),
        secret: str | None = None,
        replace: bool = False,
    ) -> RegisteredClient:
        parsed = parse_scopes(scope)
        if parsed.unknown:
            raise ClientRegistryError(f"unknown or malformed scopes: {' '.join(parsed.unknown)}")
        if auth_method is None:
            auth_method = (
                "private_key_jwt"
                if kind == "backend"
                else ("client_secret_basic" if secret else "none")
            )
        if kind == "backend" and auth_method != "private_key_jwt":
            raise ClientRegistryError("backend clients authenticate with private_key_jwt")
        if auth_method == "private_key_jwt" and not (jwks or jwks_uri):
            raise ClientRegistryError(
                "private_key_jwt needs --jwks (inline JSON/file) or --jwks-uri"
            )
        if jwks is not None:
            loaded = json.loads(jwks)
            if "keys" not in loaded:
                loaded = {"keys": [loaded]}
            if any("d" in k for k in loaded["keys"]):
                raise ClientRegistryError(
                    "the JWKS contains a private key; register the public key only"
                )
            jwks = json.dumps(loaded)
        if kind == "app" and not redirect_uris:
            raise ClientRegistryError("apps need at least one --redirect-uri")
        if auth_method.startswith("client_secret") and not secret:
            raise ClientRegistryError(f"{auth_method} needs a secret")
        client = RegisteredClient(
            client_id=client_id,
            name=name or client_id,
            kind=kind,
            auth_method=auth_method,
            scope=scope,
            redirect_uris=tuple(redirect_uris),
            jwks=jwks,
            jwks_uri=jwks_uri,
            secret_hash=hash_secret(secret) if secret else None,
            created_at=int(time.time()),
        )
        values = {
            "client_id": client.client_id,
            "name": client.name,
            "kind": client.kind,
            "auth_method": client.auth_method,
            "secret_hash": client.secret_hash,
            "jwks": client.jwks,
            "jwks_uri": client.jwks_uri,
            "redirect_uris": json.dumps(list(client.redirect_uris)),
            "scope": client.scope,
            "created_at": client.created_at,
        }
        with self._write.begin() as conn:
            exists = conn.execute(
                sa.select(CLIENT_TABLE.c.client_id).where(CLIENT_TABLE.c.client_id == client_id)
            ).first()
            if exists is not None and not replace:
                raise ClientRegistryError(f"client {client_id!r} already exists")
            if exists is not None:
                conn.execute(sa.delete(CLIENT_TABLE).where(CLIENT_TABLE.c.client_id == client_id))
            conn.execute(sa.insert(CLIENT_TABLE).values(**values))
        return client

    def remove(self, client_id: str) -> bool:
        with self._write.begin() as conn:
            result = conn.execute(
                sa.delete(CLIENT_TABLE).where(CLIENT_TABLE.c.client_id == client_id)
            )
        return bool(result.rowcount)
