"""The authorisation server's state in SQL: codes, issued tokens, assertion jtis, EHR launches.

Everything single-use is consumed with a DELETE (or guarded by a primary key on INSERT), so two
workers cannot both accept the same code or jti. Codes and refresh tokens are stored hashed.

Refresh tokens rotate: each use marks the presented token used (a conditional UPDATE, so two
workers cannot both use it) and a new one is issued in the same *family*. The family is named by
its first refresh token: later refresh tokens and every access token of the grant carry that id in
`family`, so revoking the family is one UPDATE. A used token presented again means that someone
kept a copy: the whole family is revoked (OAuth 2.0 Security BCP, RFC 9700 §4.14.2).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from adapter.auth.tables import CODE_TABLE, JTI_TABLE, LAUNCH_TABLE, TOKEN_TABLE
from adapter.store.sql import write_engine


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredCode:
    client_id: str
    redirect_uri: str | None
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    context: dict[str, Any]
    expires_at: int

    # authlib AuthorizationCodeMixin
    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass(frozen=True, slots=True)
class StoredToken:
    token_id: str
    kind: str
    client_id: str
    scope: str
    context: dict[str, Any]
    issued_at: int
    expires_at: int
    revoked: bool
    family: str | None

    # authlib TokenMixin
    def check_client(self, client: Any) -> bool:
        return bool(client is not None and client.get_client_id() == self.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_at - self.issued_at

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked

    @property
    def family_root(self) -> str:
        """The id naming this token's grant family (a refresh token's own id if it is the first)."""
        return self.family or self.token_id


def _token(row: sa.Row[Any]) -> StoredToken:
    m = row._mapping
    return StoredToken(
        token_id=m["token_id"],
        kind=m["kind"],
        client_id=m["client_id"],
        scope=m["scope"],
        context=json.loads(m["context"]),
        issued_at=m["issued_at"],
        expires_at=m["expires_at"],
        revoked=bool(m["revoked"]),
        family=m["family"],
    )


class AuthState:
    def __init__(self, engine: Engine):
        self._engine = engine
        self._write = write_engine(engine)

    # --- authorization codes -----------------------------------------------------------------
    def save_code(
        self,
        code: str,
        *,
        client_id: str,
        redirect_uri: str | None,
        scope: str,
        code_challenge: str | None,
        code_challenge_method: str | None,
        nonce: str | None,
        context: dict[str, Any],
        lifetime_seconds: int,
    ) -> None:
        with self._write.begin() as conn:
            conn.execute(
                sa.insert(CODE_TABLE).values(
                    code_hash=digest(code),
                    client_id=client_id,
                    redirect_uri=redirect_uri,
                    scope=scope,
                    code_challenge=code_challenge,
                    code_challenge_method=code_challenge_method,
                    nonce=nonce,
                    context=json.dumps(context),
                    expires_at=int(time.time()) + lifetime_seconds,
                )
            )

    def take_code(self, code: str, client_id: str) -> StoredCode | None:
        """Consumes the code (single use, even if the exchange then fails)."""
        key = digest(code)
        with self._write.begin() as conn:
            row = conn.execute(sa.select(CODE_TABLE).where(CODE_TABLE.c.code_hash == key)).first()
            if row is None:
                return None
            deleted = conn.execute(sa.delete(CODE_TABLE).where(CODE_TABLE.c.code_hash == key))
        m = row._mapping
        if deleted.rowcount != 1 or m["client_id"] != client_id or m["expires_at"] <= time.time():
            return None
        return StoredCode(
            client_id=m["client_id"],
            redirect_uri=m["redirect_uri"],
            scope=m["scope"],
            code_challenge=m["code_challenge"],
            code_challenge_method=m["code_challenge_method"],
            nonce=m["nonce"],
            context=json.loads(m["context"]),
            expires_at=m["expires_at"],
        )

    # --- tokens ---------------------------------------------------------------------------------
    def record_token(
        self,
        token_id: str,
        *,
        kind: str,
        client_id: str,
        scope: str,
        context: dict[str, Any],
        issued_at: int,
        expires_at: int,
        family: str | None = None,
    ) -> None:
        with self._write.begin() as conn:
            conn.execute(
                sa.insert(TOKEN_TABLE).values(
                    token_id=token_id,
                    kind=kind,
                    client_id=client_id,
                    scope=scope,
                    context=json.dumps(context),
                    issued_at=issued_at,
                    expires_at=expires_at,
                    revoked=False,
                    family=family,
                )
            )

    def get_token(self, token_id: str) -> StoredToken | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(TOKEN_TABLE).where(TOKEN_TABLE.c.token_id == token_id)
            ).first()
        return _token(row) if row is not None else None

    def get_refresh_token(self, value: str) -> StoredToken | None:
        token = self.get_token(digest(value))
        return token if token is not None and token.kind == "refresh" else None

    def revoke(self, token_id: str) -> None:
        """Revokes the token and every token whose family it names (for a family's first refresh
        token: the whole family). Revoking a later member alone: use `revoke_family`."""
        with self._write.begin() as conn:
            conn.execute(
                sa.update(TOKEN_TABLE)
                .where(TOKEN_TABLE.c.token_id == token_id)
                .values(revoked=True)
            )
            conn.execute(
                sa.update(TOKEN_TABLE).where(TOKEN_TABLE.c.family == token_id).values(revoked=True)
            )

    def use_refresh_token(self, token_id: str) -> bool:
        """Marks a live refresh token used (rotation). False if it was already used or revoked:
        the caller lost a race with another use, or is replaying a rotated token."""
        with self._write.begin() as conn:
            result = conn.execute(
                sa.update(TOKEN_TABLE)
                .where(
                    TOKEN_TABLE.c.token_id == token_id,
                    TOKEN_TABLE.c.kind == "refresh",
                    TOKEN_TABLE.c.revoked.is_(False),
                )
                .values(revoked=True)
            )
        return bool(result.rowcount == 1)

    def revoke_family(self, token: StoredToken) -> None:
        """Revokes every token of the grant `token` belongs to (refresh and access tokens)."""
        self.revoke(token.family_root)

    # --- client assertion replay cache ------------------------------------------------------
    def use_jti(self, issuer: str, jti: str, expires_at: int) -> bool:
        """True the first time (issuer, jti) is seen; False on a replay."""
        try:
            with self._write.begin() as conn:
                conn.execute(
                    sa.delete(JTI_TABLE).where(JTI_TABLE.c.expires_at < int(time.time()) - 3600)
                )
                conn.execute(
                    sa.insert(JTI_TABLE).values(issuer=issuer, jti=jti[:255], expires_at=expires_at)
                )
        except sa_exc.IntegrityError:
            return False
        return True

    # --- EHR launch contexts ----------------------------------------------------------------------
    def save_launch(self, context: dict[str, Any], lifetime_seconds: int) -> str:
        launch_id = secrets.token_urlsafe(24)
        with self._write.begin() as conn:
            conn.execute(
                sa.insert(LAUNCH_TABLE).values(
                    launch_id=launch_id,
                    context=json.dumps(context),
                    expires_at=int(time.time()) + lifetime_seconds,
                )
            )
        return launch_id

    def get_launch(self, launch_id: str) -> dict[str, Any] | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(LAUNCH_TABLE).where(LAUNCH_TABLE.c.launch_id == launch_id)
            ).first()
        if row is None or row._mapping["expires_at"] <= time.time():
            return None
        context: dict[str, Any] = json.loads(row._mapping["context"])
        return context

    def purge_expired(self) -> None:
        now = int(time.time())
        with self._write.begin() as conn:
            conn.execute(sa.delete(CODE_TABLE).where(CODE_TABLE.c.expires_at < now))
            conn.execute(sa.delete(LAUNCH_TABLE).where(LAUNCH_TABLE.c.expires_at < now))
            conn.execute(sa.delete(JTI_TABLE).where(JTI_TABLE.c.expires_at < now - 3600))
            conn.execute(sa.delete(TOKEN_TABLE).where(TOKEN_TABLE.c.expires_at < now - 86400))
