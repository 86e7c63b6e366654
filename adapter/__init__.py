"""FHIR R4 interoperability adapter for UK community mental health services."""

from __future__ import annotations

__version__ = "0.1.0"

from adapter.errors import AdapterError
from adapter.settings import Settings


def create_app(settings: Settings | None = None):  # type: ignore[no-untyped-def]
    """The FastAPI app (imported lazily, so that nothing below `api` drags FastAPI in)."""
    from adapter.api.app import create_app as _create_app

    return _create_app(settings)


__all__ = ["AdapterError", "Settings", "__version__", "create_app"]
