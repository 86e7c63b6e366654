"""Deterministic resource ids: a hash of the resource type and its business identifier.

The same referral (UBRN), episode (visit number) or assessment id always yields the same id, so a
message delivered twice becomes a PUT of the same resource, never a second copy.
"""

from __future__ import annotations

import hashlib
from typing import Final

#: Bumping this would re-key every mapped resource: never change it for a deployed store.
ID_NAMESPACE: Final = "cmh-adapter/v1"


def deterministic_id(resource_type: str, *parts: str) -> str:
    """64 hex characters would exceed nothing (FHIR ids allow 64); we use 40 for readability."""
    text = "\x1f".join((ID_NAMESPACE, resource_type, *parts))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]
