"""FHIR JSON responses: application/fhir+json, decimal-preserving serialisation."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from adapter.fhir import jsonio

FHIR_JSON = "application/fhir+json"


class FhirResponse(Response):
    media_type = f"{FHIR_JSON}; charset=utf-8"

    def __init__(self, content: Any, status_code: int = 200, headers: dict[str, str] | None = None):
        super().__init__(content=content, status_code=status_code, headers=headers)

    def render(self, content: Any) -> bytes:
        if content is None:
            return b""
        return jsonio.dumps(content).encode("utf-8")
