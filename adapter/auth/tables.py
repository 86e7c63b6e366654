"""SQL tables of the embedded authorisation server: the client registry and the server's state.

Created only by migration 0002 (`adapter/store/migrations/versions/0002_smart_clients.py`). State
lives in SQL (not process memory) so that it survives restarts and is shared by several workers:
a jti is refused by whichever worker sees it second, because the insert hits the primary key.
Times are epoch seconds (integers), which compare the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

AUTH_METADATA: Final = sa.MetaData()

CLIENT_TABLE: Final = sa.Table(
    "smart_client",
    AUTH_METADATA,
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("name", sa.Text(), nullable=False),
    #: "backend" (client_credentials) or "app" (authorization_code)
    sa.Column("kind", sa.String(16), nullable=False),
    #: "private_key_jwt", "client_secret_basic", "client_secret_post" or "none" (public app)
    sa.Column("auth_method", sa.String(32), nullable=False),
    sa.Column("secret_hash", sa.Text(), nullable=True),
    sa.Column("jwks", sa.Text(), nullable=True),
    sa.Column("jwks_uri", sa.Text(), nullable=True),
    sa.Column("redirect_uris", sa.Text(), nullable=False),
    sa.Column("scope", sa.Text(), nullable=False),
    sa.Column("created_at", sa.BigInteger(), nullable=False),
)

CODE_TABLE: Final = sa.Table(
    "smart_authorization_code",
    AUTH_METADATA,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("redirect_uri", sa.Text(), nullable=True),
    sa.Column("scope", sa.Text(), nullable=False),
    sa.Column("code_challenge", sa.Text(), nullable=True),
    sa.Column("code_challenge_method", sa.String(16), nullable=True),
    sa.Column("nonce", sa.Text(), nullable=True),
    #: JSON: patient, encounter, fhirUser, need_patient_banner...
    sa.Column("context", sa.Text(), nullable=False),
    sa.Column("expires_at", sa.BigInteger(), nullable=False),
)

TOKEN_TABLE: Final = sa.Table(
    "smart_token",
    AUTH_METADATA,
    #: access tokens: the JWT's jti; refresh tokens: sha256 of the opaque value
    sa.Column("token_id", sa.String(128), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("scope", sa.Text(), nullable=False),
    sa.Column("context", sa.Text(), nullable=False),
    sa.Column("issued_at", sa.BigInteger(), nullable=False),
    sa.Column("expires_at", sa.BigInteger(), nullable=False),
    sa.Column("revoked", sa.Boolean(), nullable=False),
    #: the refresh token an access token came with (revoking one revokes the family)
    sa.Column("family", sa.String(128), nullable=True),
    sa.Index("ix_smart_token_family", "family"),
)

JTI_TABLE: Final = sa.Table(
    "smart_assertion_jti",
    AUTH_METADATA,
    sa.Column("issuer", sa.String(128), primary_key=True),
    sa.Column("jti", sa.String(255), primary_key=True),
    sa.Column("expires_at", sa.BigInteger(), nullable=False),
)

LAUNCH_TABLE: Final = sa.Table(
    "smart_launch",
    AUTH_METADATA,
    sa.Column("launch_id", sa.String(64), primary_key=True),
    sa.Column("context", sa.Text(), nullable=False),
    sa.Column("expires_at", sa.BigInteger(), nullable=False),
)

AUTH_TABLES: Final = (CLIENT_TABLE, CODE_TABLE, TOKEN_TABLE, JTI_TABLE, LAUNCH_TABLE)
