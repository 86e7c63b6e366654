"""Type aliases for raw FHIR JSON. `Any` never crosses a module boundary: raw JSON is `JsonObject`."""

from __future__ import annotations

from typing import Any, TypeAlias

JsonObject: TypeAlias = dict[str, Any]
JsonValue: TypeAlias = Any
