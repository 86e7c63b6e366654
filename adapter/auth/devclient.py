"""Backend-services client side: build a signed client assertion, and the demo client's key.

Used by `adapter clients token` (the README demo), and by tests, which need real JWTs: the
assertion is RS384 or ES384, `iss` = `sub` = client_id, `aud` = the token endpoint, `exp` within
five minutes and a random `jti` (SMART client-confidential-asymmetric).
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from adapter.auth.keys import load_or_create_private_jwk, public_jwk


def client_assertion(
    key: RSAKey | ECKey,
    *,
    client_id: str,
    token_url: str,
    lifetime_seconds: int = 240,
    jti: str | None = None,
    extra_header: dict[str, Any] | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    alg = "ES384" if isinstance(key, ECKey) else "RS384"
    now = int(time.time())
    header = {"alg": alg, "kid": key.kid or key.thumbprint(), "typ": "JWT", **(extra_header or {})}
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": now + lifetime_seconds,
        "iat": now,
        "jti": jti or secrets.token_urlsafe(16),
        **(extra_claims or {}),
    }
    return jwt.encode(header, claims, key, algorithms=[alg])


def demo_key(path: Path) -> RSAKey | ECKey:
    """The demo backend client's private key, generated on first run (RSA; signs RS384)."""
    key = load_or_create_private_jwk(path, alg="RS384")
    return key


def public_jwks_json(key: RSAKey | ECKey) -> str:
    data = public_jwk(key)
    data["alg"] = "ES384" if isinstance(key, ECKey) else "RS384"
    return json.dumps({"keys": [data]})
