"""`Pipeline`: judging, and the single-resource writes (create, update, patch, delete).

Bundles are written by `bundles.BundleWriter`, which the Pipeline holds and delegates to; the
package docstring (`adapter/pipeline/__init__.py`) says what the road as a whole guarantees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapter.clock import Clock, SystemClock
from adapter.context import ConformanceStage, PolicyStage, ValidationContext
from adapter.errors import (
    AdapterError,
    ConformanceError,
    InputError,
    PolicyViolation,
    PreconditionFailed,
)
from adapter.fhir import jsonio
from adapter.fhir.identifiers import normalise_identifier_systems
from adapter.fhir.parse import structural_issues
from adapter.fhir.patch import apply_json_patch, parse_json_patch
from adapter.fhir.references import parse_reference
from adapter.fhir.resource_types import SUPPORTED
from adapter.fhir.search import parse_query_string
from adapter.fhir.source_event import event_of, superseded_issue
from adapter.fhir.types import JsonObject
from adapter.issue import Issue, has_blocking
from adapter.pipeline.bundles import BundleWriter
from adapter.pipeline.entries import new_id
from adapter.pipeline.hooks import WriteHook, call_hook
from adapter.store.conditional import (
    lock_criteria,
    superseded_current,
    unchanged_current,
)
from adapter.store.repository import (
    Repository,
    StoredResource,
    find_one_or_none,
    resource_lookup,
)

log = logging.getLogger("adapter.pipeline")


@dataclass(slots=True)
class WriteResult:
    stored: StoredResource | None
    created: bool
    #: Non-blocking issues (warnings, information) to show the caller.
    issues: list[Issue] = field(default_factory=list)
    status: int = 200


class Pipeline:
    """Judges and writes. Built once per app; safe to share between threads."""

    def __init__(
        self,
        repo: Repository,
        conformance: ConformanceStage,
        policy: PolicyStage,
        *,
        clock: Clock | None = None,
        packs: tuple[str, ...] = (),
        check_store_references: bool = True,
    ):
        self.repo = repo
        self.conformance = conformance
        self.policy = policy
        self.clock = clock or SystemClock()
        self.packs = packs
        self.check_store_references = check_store_references
        self._bundles = BundleWriter(self)

    # -- judging ---------------------------------------------------------------------------
    def context(self, **kwargs: Any) -> ValidationContext:
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("packs", self.packs)
        kwargs.setdefault("store_lookup", resource_lookup(self.repo))
        kwargs.setdefault("check_store_references", self.check_store_references)
        return ValidationContext(**kwargs)

    def prepare(self, resource: JsonObject) -> list[Issue]:
        """Normalises what we safely can before judging, and says so (never silently)."""
        return self.normalised(resource, normalise_identifier_systems(resource))

    @staticmethod
    def normalised(resource: JsonObject, changed: int) -> list[Issue]:
        if changed:
            return [
                Issue(
                    "information",
                    "informational",
                    f"{changed} identifier system(s) rewritten to their canonical NHS spelling",
                    expression=str(resource.get("resourceType")),
                )
            ]
        return []

    def judge(
        self, resource: JsonObject, ctx: ValidationContext
    ) -> tuple[list[Issue], list[Issue]]:
        """Returns (structural issues, conformance + policy issues). Structural errors stop the rest."""
        structural = structural_issues(resource)
        if has_blocking(structural):
            return structural, []
        rt = resource.get("resourceType")
        if rt not in SUPPORTED and ctx.mode != "validate":
            return [
                Issue(
                    "error",
                    "not-supported",
                    f"Resource type {rt} is not held by this adapter",
                    expression="resourceType",
                )
            ], []
        issues = self.conformance.validate(resource, ctx)
        issues += self.policy.evaluate(resource, ctx)
        return structural, issues

    def validate(
        self, resource: JsonObject, *, profiles: tuple[str, ...] = (), mode: str = "validate"
    ) -> list[Issue]:
        """$validate: every issue, never raises for invalid content."""
        resource = jsonio.copy_json(resource)
        issues = self.prepare(resource)
        if resource.get("resourceType") == "Bundle" and resource.get("type") in (
            "transaction",
            "batch",
            "message",
            "document",
            "collection",
        ):
            ctx = self.context(bundle=resource, profiles=profiles, mode=mode)
            structural = structural_issues(resource)
            if has_blocking(structural):
                return issues + structural
            for i, _, res in ctx.bundle_resources():
                ctx.entry_index = i
                s, rest = self.judge(res, ctx)
                issues += [x.rebased(f"Bundle.entry[{i}].resource") for x in s + rest]
            return issues
        ctx = self.context(profiles=profiles, mode=mode)
        s, rest = self.judge(resource, ctx)
        return issues + s + rest

    @staticmethod
    def raise_if_blocking(structural: list[Issue], judged: list[Issue]) -> None:
        if has_blocking(structural):
            raise InputError(structural + judged)
        conformance_blocking = [i for i in judged if i.is_blocking and i.rule is None]
        if conformance_blocking:
            raise ConformanceError(judged)
        if has_blocking(judged):
            raise PolicyViolation(judged)

    def provenance_for(
        self, resource: JsonObject, issues: list[Issue], ctx: ValidationContext
    ) -> JsonObject | None:
        hook = getattr(self.policy, "overrides_provenance", None)
        if hook is None:
            return None
        result: JsonObject | None = hook(resource, issues, ctx)
        return result

    # -- single-resource writes ---------------------------------------------------------------
    def create(
        self,
        resource: JsonObject,
        *,
        if_none_exist: str | None = None,
        on_write: WriteHook | None = None,
    ) -> WriteResult:
        resource = jsonio.copy_json(resource)
        rt = str(resource.get("resourceType"))
        info = self.prepare(resource)
        resource.pop("id", None)  # R4: the server assigns the id on create
        resource["id"] = new_id()
        ctx = self.context(mode="create")
        structural, judged = self.judge(resource, ctx)
        self.raise_if_blocking(structural, judged)
        with self.repo.unit_of_work() as uow:
            if if_none_exist:
                criteria = parse_query_string(if_none_exist).params
                lock_criteria(uow, rt, criteria)
                existing = find_one_or_none(uow, rt, criteria)
                if existing is not None:
                    return WriteResult(existing, created=False, issues=[], status=200)
            stored = uow.create(resource, id=resource["id"])
            prov = self.provenance_for(stored.resource, judged, ctx)
            if prov is not None:
                uow.create(prov)
            call_hook(uow, on_write, rt, stored.id, 201)
        return WriteResult(stored, created=True, issues=info + structural + judged, status=201)

    def update(
        self,
        resource_type: str,
        id: str,
        resource: JsonObject,
        *,
        if_match: int | None = None,
        on_write: WriteHook | None = None,
    ) -> WriteResult:
        resource = jsonio.copy_json(resource)
        if resource.get("resourceType") != resource_type:
            raise InputError(
                [
                    Issue(
                        "error",
                        "invalid",
                        "resourceType does not match the URL",
                        expression="resourceType",
                    )
                ]
            )
        if resource.get("id") != id:
            raise InputError(
                [
                    Issue(
                        "error",
                        "invalid",
                        "Resource id must be present and match the URL",
                        expression=f"{resource_type}.id",
                    )
                ]
            )
        info = self.prepare(resource)
        previous = resource_lookup(self.repo)(resource_type, id)
        ctx = self.context(mode="update", previous=previous)
        structural, judged = self.judge(resource, ctx)
        self.raise_if_blocking(structural, judged)
        with self.repo.unit_of_work() as uow:
            superseded = superseded_current(uow, resource)
            if superseded is not None:  # an older source event than the stored one's
                current, held = superseded
                issue = superseded_issue(
                    f"{resource_type}/{id}", held, event_of(resource), f"{resource_type}.meta"
                )
                return WriteResult(
                    current, created=False, issues=[*info, *judged, issue], status=200
                )
            unchanged = unchanged_current(uow, resource, if_match)
            if unchanged is not None:
                return WriteResult(unchanged, created=False, issues=info + judged, status=200)
            stored, created = uow.update(resource, if_match=if_match)
            prov = self.provenance_for(stored.resource, judged, ctx)
            if prov is not None:
                uow.create(prov)
            call_hook(uow, on_write, resource_type, id, 201 if created else 200)
        return WriteResult(
            stored,
            created=created,
            issues=info + structural + judged,
            status=201 if created else 200,
        )

    def patch(
        self,
        resource_type: str,
        id: str,
        operations: Any,
        *,
        if_match: int | None = None,
        on_write: WriteHook | None = None,
        authorise: Callable[[JsonObject], None] | None = None,
    ) -> WriteResult:
        """R4 `patch` with a JSON Patch document (RFC 6902): applied to the current version, then
        judged and written as an update, so the result passes every stage an update passes.

        The update is conditional on the version the patch was applied to: a concurrent write in
        between answers 412 when the client sent If-Match, and is re-read and re-applied (at most
        three times) when it did not, so no write is ever lost under a patch. `authorise` sees the
        patched resource before it is judged (the caller's access checks on the new content)."""
        document = parse_json_patch(operations)
        for _attempt in range(3):
            current = self.repo.read(resource_type, id)  # NotFound 404, Gone 410
            if if_match is not None and if_match != current.version_id:
                raise PreconditionFailed(
                    [
                        Issue(
                            "error",
                            "conflict",
                            f"If-Match version {if_match} is stale: the {resource_type} "
                            f"is at version {current.version_id}",
                        )
                    ]
                )
            patched = apply_json_patch(document, current.resource, resource_type, id)
            if authorise is not None:  # e.g. a patient-scoped token may not move it elsewhere
                authorise(patched)
            try:
                return self.update(
                    resource_type, id, patched, if_match=current.version_id, on_write=on_write
                )
            except PreconditionFailed:
                if if_match is not None:
                    raise
                log.info("patch target changed under a concurrent write; re-applying")
        raise PreconditionFailed(
            [Issue("error", "conflict", "The resource kept changing under concurrent writes")]
        )

    def delete(
        self,
        resource_type: str,
        id: str,
        *,
        if_match: int | None = None,
        on_write: WriteHook | None = None,
    ) -> WriteResult:
        with self.repo.unit_of_work() as uow:
            stored = uow.delete(resource_type, id, if_match=if_match)
            if stored is not None:
                call_hook(uow, on_write, resource_type, id, 204)
        return WriteResult(stored, created=False, status=204 if stored is None else 200)

    # -- Bundles (adapter/pipeline/bundles.py) ------------------------------------------------
    def process_bundle(
        self, bundle: JsonObject, *, on_write: WriteHook | None = None
    ) -> JsonObject:
        """A transaction (`on_write` runs in its unit of work) or a batch (each entry its own unit
        of work; `on_write` is not used: the caller records the batch after it)."""
        return self._bundles.process_bundle(bundle, on_write=on_write)

    def transaction(self, bundle: JsonObject, *, on_write: WriteHook | None = None) -> JsonObject:
        """All or nothing; conditional matches re-taken under lock (`BundleWriter.transaction`)."""
        return self._bundles.transaction(bundle, on_write=on_write)

    def transaction_batch(self, bundles: Sequence[JsonObject]) -> list[JsonObject | AdapterError]:
        """Many transaction Bundles in one commit, each all or nothing (bulk ingest)."""
        return self._bundles.transaction_batch(bundles)

    def batch(self, bundle: JsonObject) -> JsonObject:
        """Each entry on its own: one failing entry does not stop the others."""
        return self._bundles.batch(bundle)


def references_in(resource: JsonObject) -> Iterator[str]:
    """Literal references of a resource (used by the API for _include and compartments)."""
    from adapter.fhir.references import iter_references

    for _, ref in iter_references(resource, str(resource.get("resourceType"))):
        value = str(ref["reference"])
        if parse_reference(value).kind in ("relative", "absolute"):
            yield value
