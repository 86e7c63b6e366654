"""What a judging stage (conformance, policy) may know besides the resource itself.

The pipeline builds one ValidationContext per unit of work. Stages read time from `clock`, resolve
references through `resolve()` (the Bundle first, then the store through a read-only callable the
pipeline injects) and never import the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from adapter.clock import Clock, SystemClock
from adapter.fhir.references import parse_reference
from adapter.fhir.types import JsonObject
from adapter.issue import Issue

#: (resource_type, id) -> the stored resource JSON, or None. Injected by the pipeline.
StoreLookup = Callable[[str, str], JsonObject | None]


@dataclass(slots=True)
class ValidationContext:
    clock: Clock = field(default_factory=SystemClock)
    #: The Bundle the resource travels in (after urn:uuid rewriting), if any.
    bundle: JsonObject | None = None
    #: Index of the resource inside `bundle.entry`, if any.
    entry_index: int | None = None
    #: Profiles asked for explicitly ($validate?profile=, meta.profile is read by the validator).
    profiles: tuple[str, ...] = ()
    #: Policy packs in force for this unit of work (configuration; the policy stage may add by data).
    packs: tuple[str, ...] = ()
    #: "create", "update", "delete" or "validate".
    mode: str = "create"
    store_lookup: StoreLookup | None = None
    #: Whether references outside the Bundle must exist in the store.
    check_store_references: bool = False
    #: The previous stored version on update (policy rules about transitions read it).
    previous: JsonObject | None = None
    #: Free-form facts the caller supplies (e.g. the authenticated role for "who may do what").
    facts: Mapping[str, str] = field(default_factory=dict)

    def bundle_resources(self) -> Iterator[tuple[int, str | None, JsonObject]]:
        """(index, fullUrl, resource) for every entry of the Bundle that carries a resource."""
        if not self.bundle:
            return
        for i, entry in enumerate(self.bundle.get("entry") or []):
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                yield i, entry.get("fullUrl"), entry["resource"]

    def resolve(self, reference: str) -> JsonObject | None:
        """Resolves a literal reference: Bundle fullUrl, then Type/id inside the Bundle, then the store."""
        for _, full_url, res in self.bundle_resources():
            if full_url == reference:
                return res
        parsed = parse_reference(reference)
        if parsed.kind in ("relative", "absolute") and parsed.resource_type and parsed.id:
            for _, full_url, res in self.bundle_resources():
                if res.get("resourceType") == parsed.resource_type and res.get("id") == parsed.id:
                    return res
                if full_url and full_url.endswith(f"/{parsed.resource_type}/{parsed.id}"):
                    return res
            if self.store_lookup is not None:
                return self.store_lookup(parsed.resource_type, parsed.id)
        return None


class ConformanceStage(Protocol):
    """R4 + profiles. Returns every issue found; never raises for invalid content."""

    def validate(self, resource: JsonObject, ctx: ValidationContext) -> list[Issue]: ...


class PolicyStage(Protocol):
    """Service policy packs. Every issue carries a RuleRef with its seed citation."""

    def evaluate(self, resource: JsonObject, ctx: ValidationContext) -> list[Issue]: ...


class OverrideAware(Protocol):
    """Optional extra of a PolicyStage: a Provenance recording MUST-rule overrides used on a write.

    The pipeline stores the returned Provenance in the same unit of work as the resource.
    """

    def overrides_provenance(
        self, resource: JsonObject, issues: list[Issue], ctx: ValidationContext
    ) -> JsonObject | None: ...
