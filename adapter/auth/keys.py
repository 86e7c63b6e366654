"""Key material: the server's RSA signing key, and JWKS fetched from clients or external issuers.

The signing key is a private JWK file, created on first use with mode 0600 (in the git-ignored
.dev-keys/ by default); several workers starting together agree on one file (O_EXCL create).
Remote JWKS are cached for at most `jwks_cache_seconds`, and never longer than their
Cache-Control max-age allows.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from joserfc.jwk import ECKey, KeySet, RSAKey

_MAX_AGE = re.compile(r"max-age=(\d+)")


def load_or_create_private_jwk(
    path: Path, *, kind: str = "RSA", alg: str | None = None
) -> RSAKey | ECKey:
    """Reads a private JWK from `path`, or generates one there (RSA 2048 or EC P-384).

    `alg` is stamped into a new key (RS256 for the server, RS384 for a SMART client by default).
    """
    if not path.exists():
        key: RSAKey | ECKey
        if kind == "EC":
            key = ECKey.generate_key("P-384", private=True)
        else:
            key = RSAKey.generate_key(2048, private=True)
        data = key.as_dict(private=True)
        data["kid"] = key.thumbprint()
        data["alg"] = alg or ("ES384" if kind == "EC" else "RS256")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker won the race; read its key below
        else:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle)
    for _ in range(50):
        text = path.read_text()
        if text.strip():
            break
        time.sleep(0.02)  # the winner of the race is still writing
    data = json.loads(text)
    loaded: RSAKey | ECKey = (ECKey if data.get("kty") == "EC" else RSAKey).import_key(data)
    return loaded


def public_jwk(key: RSAKey | ECKey) -> dict[str, Any]:
    data: dict[str, Any] = key.as_dict(private=False)
    for name in ("kid", "alg"):
        if key.get(name):
            data[name] = key.get(name)
    data["use"] = "sig"
    return data


class ServerKeys:
    """The embedded server's signing key. Access and ID tokens are RS256 (Inferno asserts RS256)."""

    algorithm = "RS256"

    def __init__(self, path: Path):
        key = load_or_create_private_jwk(path)
        if not isinstance(key, RSAKey):
            raise ValueError(f"{path}: the server signing key must be RSA")
        self.private = key
        self.kid: str = str(key.kid or key.thumbprint())
        self.key_set = KeySet([RSAKey.import_key(public_jwk(key))])

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(self.private)]}


class RemoteJwksCache:
    """Fetches JWKS by URL (clients' `jwks_uri`, an external issuer's), honouring Cache-Control."""

    def __init__(self, max_age_seconds: int, *, client: httpx.Client | None = None):
        self._max_age = max_age_seconds
        self._client = client
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, KeySet]] = {}

    def get(self, url: str, *, refresh: bool = False) -> KeySet:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(url)
        if hit is not None and hit[0] > now and not refresh:
            return hit[1]
        client = self._client or httpx.Client(timeout=5.0, follow_redirects=False)
        try:
            response = client.get(url, headers={"Accept": "application/json"})
        finally:
            if self._client is None:
                client.close()
        response.raise_for_status()
        key_set = KeySet.import_key_set(response.json())
        age = self._max_age
        cache_control = response.headers.get("cache-control", "")
        if "no-store" in cache_control or "no-cache" in cache_control:
            age = 0
        elif match := _MAX_AGE.search(cache_control):
            age = min(age, int(match.group(1)))
        with self._lock:
            self._cache[url] = (now + age, key_set)
        return key_set
