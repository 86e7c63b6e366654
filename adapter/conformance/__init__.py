"""Conformance: R4 core rules plus our profiles in profiles/. Judges; never persists."""

from __future__ import annotations

from adapter.conformance.validator import ConformanceValidator

__all__ = ["ConformanceValidator"]
