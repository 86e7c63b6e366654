"""The only road to storage: prepare -> structural parse -> conformance -> policy -> store.

Every write (REST create/update/delete, transaction and batch Bundles, mapped feeds, CLI imports,
outbox replays) goes through `Pipeline`. A unit of work (one resource, or one transaction Bundle) is
judged whole *as it will be stored* (urn:uuid references rewritten, ids assigned) and is written
whole or not at all. Stages return issues; only this module decides to reject:

- structural errors (native, from the R4 core tables) -> InputError 400
- conformance errors (R4 rules, profiles)         -> ConformanceError 422
- policy errors (MUST rules, not overridden)      -> PolicyViolation 422
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from adapter.clock import Clock, SystemClock
from adapter.context import ConformanceStage, PolicyStage, ValidationContext
from adapter.errors import (
    AdapterError,
    Conflict,
    ConformanceError,
    InputError,
    PolicyViolation,
    PreconditionFailed,
)
from adapter.fhir import jsonio
from adapter.fhir.identifiers import normalise_identifier_systems
from adapter.fhir.parse import structural_issues
from adapter.fhir.patch import apply_json_patch, parse_json_patch
from adapter.fhir.prepare import prepared_copy
from adapter.fhir.references import parse_reference
from adapter.fhir.resource_types import SUPPORTED
from adapter.fhir.search import parse_query_string
from adapter.fhir.types import JsonObject
from adapter.issue import Issue, has_blocking
from adapter.outcome import operation_outcome
from adapter.store.conditional import (
    NOT_READ,
    conditional_lock_keys,
    lock_criteria,
    unchanged_current,
)
from adapter.store.repository import (
    Repository,
    StoredResource,
    current_or_none,
    find_one_or_none,
    resource_lookup,
)

log = logging.getLogger(__name__)

#: Bundle entry processing order required by R4 http.html#trules.
METHOD_ORDER: Final = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass(slots=True)
class WriteResult:
    stored: StoredResource | None
    created: bool
    #: Non-blocking issues (warnings, information) to show the caller.
    issues: list[Issue] = field(default_factory=list)
    status: int = 200


@dataclass(slots=True)
class _Entry:
    index: int
    method: str
    url: str
    resource: JsonObject | None
    full_url: str | None
    if_none_exist: str | None
    if_match: int | None
    target_type: str | None = None
    target_id: str | None = None
    skip_create: StoredResource | None = None  # conditional create matched
    conditional: str | None = None  # `PUT Type?criteria` (conditional update)
    matched_id: str | None = None  # what the conditional update matched while preparing
    issues: list[Issue] = field(default_factory=list)
    #: `ifNoneMatch: *` on a PUT: create only, 412 if the resource already exists (RFC 9110
    #: If-None-Match semantics). Settled by the store's primary key, so it holds under races.
    create_only: bool = False
    #: For a PUT prepared on the connection that writes (a bulk batch): the current version read
    #: while judging, or None if there is none. `NOT_READ` when it must be read again under the
    #: unit of work (a single transaction prepares on another connection).
    current: StoredResource | object | None = None


#: Called inside a write's unit of work, just before it commits, with the unit, the written
#: resource's type and id (a transaction: "Bundle", None) and the HTTP status: the API stores the
#: interaction's AuditEvent and marks its Idempotency-Key there, so a committed write always has
#: both, and if either cannot be stored the write is not made either. Not called when nothing is
#: written (a no-op update, a conditional create that matched).
WriteHook = Callable[[Repository, str, str | None, int], None]


def _on_write(
    uow: Repository, hook: WriteHook | None, rt: str, id: str | None, status: int
) -> None:
    if hook is not None:
        hook(uow, rt, id, status)


def parse_etag(value: str | None) -> int | None:
    """`W/"3"` or `"3"` or `3` -> 3. Anything else is a 400 (a precondition we cannot evaluate)."""
    if value is None or value == "":
        return None
    raw = value.strip()
    if raw.startswith("W/"):
        raw = raw[2:]
    raw = raw.strip('"')
    if not raw.isdigit():
        raise InputError(
            [
                Issue(
                    "error",
                    "value",
                    'If-Match must be a version ETag like W/"1"',
                    expression="If-Match",
                )
            ]
        )
    return int(raw)


def _new_id() -> str:
    return str(uuid.uuid4())


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

    # -- judging ---------------------------------------------------------------------------
    def context(self, **kwargs: Any) -> ValidationContext:
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("packs", self.packs)
        kwargs.setdefault("store_lookup", resource_lookup(self.repo))
        kwargs.setdefault("check_store_references", self.check_store_references)
        return ValidationContext(**kwargs)

    def prepare(self, resource: JsonObject) -> list[Issue]:
        """Normalises what we safely can before judging, and says so (never silently)."""
        return self._normalised(resource, normalise_identifier_systems(resource))

    @staticmethod
    def _normalised(resource: JsonObject, changed: int) -> list[Issue]:
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
    def _raise_if_blocking(structural: list[Issue], judged: list[Issue]) -> None:
        if has_blocking(structural):
            raise InputError(structural + judged)
        conformance_blocking = [i for i in judged if i.is_blocking and i.rule is None]
        if conformance_blocking:
            raise ConformanceError(judged)
        if has_blocking(judged):
            raise PolicyViolation(judged)

    def _provenance_for(
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
        resource["id"] = _new_id()
        ctx = self.context(mode="create")
        structural, judged = self.judge(resource, ctx)
        self._raise_if_blocking(structural, judged)
        with self.repo.unit_of_work() as uow:
            if if_none_exist:
                criteria = parse_query_string(if_none_exist).params
                lock_criteria(uow, rt, criteria)
                existing = find_one_or_none(uow, rt, criteria)
                if existing is not None:
                    return WriteResult(existing, created=False, issues=[], status=200)
            stored = uow.create(resource, id=resource["id"])
            prov = self._provenance_for(stored.resource, judged, ctx)
            if prov is not None:
                uow.create(prov)
            _on_write(uow, on_write, rt, stored.id, 201)
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
        self._raise_if_blocking(structural, judged)
        with self.repo.unit_of_work() as uow:
            unchanged = unchanged_current(uow, resource, if_match)
            if unchanged is not None:
                return WriteResult(unchanged, created=False, issues=info + judged, status=200)
            stored, created = uow.update(resource, if_match=if_match)
            prov = self._provenance_for(stored.resource, judged, ctx)
            if prov is not None:
                uow.create(prov)
            _on_write(uow, on_write, resource_type, id, 201 if created else 200)
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
                _on_write(uow, on_write, resource_type, id, 204)
        return WriteResult(stored, created=False, status=204 if stored is None else 200)

    # -- Bundles -------------------------------------------------------------------------------
    def process_bundle(
        self, bundle: JsonObject, *, on_write: WriteHook | None = None
    ) -> JsonObject:
        """A transaction (`on_write` runs in its unit of work) or a batch (each entry its own unit
        of work; `on_write` is not used: the caller records the batch after it)."""
        kind = bundle.get("type")
        if kind == "transaction":
            return self.transaction(bundle, on_write=on_write)
        if kind == "batch":
            return self.batch(bundle)
        raise InputError(
            [
                Issue(
                    "error",
                    "invalid",
                    "Only transaction and batch Bundles can be posted to the base",
                    expression="Bundle.type",
                )
            ]
        )

    def _parse_entries(self, bundle: JsonObject) -> list[_Entry]:
        # The Bundle shell only: every entry's resource is parsed once, later, in `judge`.
        shell = (
            {
                **bundle,
                "entry": [
                    {k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e
                    for e in bundle.get("entry") or []
                ],
            }
            if isinstance(bundle.get("entry"), list)
            else bundle
        )
        structural = structural_issues(shell)
        if has_blocking(structural):
            raise InputError(structural)
        entries: list[_Entry] = []
        issues: list[Issue] = []
        for i, raw in enumerate(bundle.get("entry") or []):
            where = f"Bundle.entry[{i}]"
            request = raw.get("request") or {}
            method = str(request.get("method", "")).upper()
            url = str(request.get("url", ""))
            if method not in METHOD_ORDER or method == "PATCH" or method == "HEAD":
                issues.append(
                    Issue(
                        "error",
                        "not-supported",
                        f"Unsupported request method '{method}'",
                        expression=f"{where}.request.method",
                    )
                )
                continue
            resource = raw.get("resource")
            entry = _Entry(
                index=i,
                method=method,
                url=url,
                # the caller's own JSON until the working copy is made (step 2 of the transaction)
                resource=resource if isinstance(resource, dict) else None,
                full_url=raw.get("fullUrl"),
                if_none_exist=request.get("ifNoneExist"),
                if_match=None,
            )
            try:
                entry.if_match = parse_etag(request.get("ifMatch"))
            except InputError as exc:
                issues += [x.rebased(f"{where}.request.ifMatch") for x in exc.issues]
            if_none_match = request.get("ifNoneMatch")
            if if_none_match is not None and method in ("PUT", "POST", "DELETE"):
                if method != "PUT" or str(if_none_match).strip() != "*":
                    issues.append(
                        Issue(
                            "error",
                            "not-supported",
                            "ifNoneMatch is supported on PUT entries as '*' (create only)",
                            expression=f"{where}.request.ifNoneMatch",
                        )
                    )
                entry.create_only = True
            path = url.split("?", 1)[0].strip("/")
            parts = path.split("/") if path else []
            if method in ("POST", "PUT") and entry.resource is None:
                issues.append(
                    Issue(
                        "error",
                        "required",
                        f"{method} entry has no resource",
                        expression=f"{where}.resource",
                    )
                )
                continue
            if method == "POST":
                entry.target_type = parts[0] if parts else None
                if entry.resource is not None and entry.target_type != entry.resource.get(
                    "resourceType"
                ):
                    issues.append(
                        Issue(
                            "error",
                            "invalid",
                            "request.url does not match the resource type",
                            expression=f"{where}.request.url",
                        )
                    )
            elif method in ("PUT", "DELETE", "GET"):
                if len(parts) >= 2 and method != "GET":
                    entry.target_type, entry.target_id = parts[0], parts[1]
                elif method == "PUT" and len(parts) == 1 and "?" in url:
                    entry.target_type, entry.conditional = parts[0], url.split("?", 1)[1]
                elif method != "GET":
                    issues.append(
                        Issue(
                            "error",
                            "not-supported",
                            "Conditional delete in a Bundle is not supported; use Type/id",
                            expression=f"{where}.request.url",
                        )
                    )
                if (
                    method == "PUT"
                    and entry.resource is not None
                    and entry.resource.get("id") not in (None, entry.target_id)
                ):
                    issues.append(
                        Issue(
                            "error",
                            "invalid",
                            "Resource id does not match request.url",
                            expression=f"{where}.resource.id",
                        )
                    )
            entries.append(entry)
        if issues:
            raise InputError(issues)
        return entries

    def transaction(self, bundle: JsonObject, *, on_write: WriteHook | None = None) -> JsonObject:
        """All or nothing. Conditional matches are taken again under a lock inside the unit of
        work; if a concurrent writer changed one in between, the whole Bundle is prepared again
        (ids and references depend on the matches), at most three times."""
        for _attempt in range(3):
            try:
                return self._transaction_once(bundle, on_write=on_write)
            except _MatchChanged:
                log.info("conditional match changed under a concurrent write; retrying")
        raise PreconditionFailed(
            [
                Issue(
                    "error", "conflict", "Conditional matches kept changing under concurrent writes"
                )
            ]
        )

    def transaction_batch(self, bundles: Sequence[JsonObject]) -> list[JsonObject | AdapterError]:
        """Many independent transaction Bundles in one database commit, for bulk ingest.

        Each Bundle is still all or nothing (a savepoint of its own) and sees the writes of the
        Bundles before it; the batch shares one commit (one fsync) instead of one per Bundle.
        Nothing is durable until this returns, so a caller reports acceptance only afterwards.
        A store without savepoints gets one transaction per Bundle.
        """
        try:
            return self._batch_in_one_unit(bundles)
        except _Refused as refused:
            return [refused.error]

    def _batch_in_one_unit(self, bundles: Sequence[JsonObject]) -> list[JsonObject | AdapterError]:
        results: list[JsonObject | AdapterError] = []
        with self.repo.unit_of_work() as uow:
            savepoint = getattr(uow, "savepoint", None)
            if not callable(savepoint):
                return [self._try_transaction(b) for b in bundles]
            # Conditional matches are taken on this connection without a re-check, so every
            # criterion of the batch is locked first, in one sorted order: a concurrent batch
            # waits instead of creating the same Patient twice, and two batches cannot deadlock.
            lock = getattr(uow, "lock", None)
            if callable(lock):
                for key in conditional_lock_keys(bundles):
                    lock(key)
            if len(bundles) == 1:  # one unit (MLLP, a single ingest): the unit of work is enough
                return [self._only_unit(bundles[0], uow)]
            for bundle in bundles:
                try:
                    with savepoint():
                        results.append(self._transaction_once(bundle, uow))
                except AdapterError as exc:
                    results.append(exc)
                except _MatchChanged:  # cannot happen on one connection; be explicit anyway
                    results.append(PreconditionFailed("Conditional match changed"))
        return results

    def _only_unit(self, bundle: JsonObject, uow: Repository) -> JsonObject | AdapterError:
        """A batch of one without a savepoint: a refused unit rolls the whole unit of work back
        (`_Refused` leaves it by exception), and is returned like a batch's refusal. A failure of
        the commit itself is not a refusal and still raises."""
        try:
            return self._transaction_once(bundle, uow)
        except AdapterError as exc:
            raise _Refused(exc) from exc
        except _MatchChanged as exc:  # cannot happen on one connection; be explicit anyway
            raise _Refused(PreconditionFailed("Conditional match changed")) from exc

    def _try_transaction(self, bundle: JsonObject) -> JsonObject | AdapterError:
        try:
            return self.transaction(bundle)
        except AdapterError as exc:
            return exc

    def _transaction_once(
        self,
        bundle: JsonObject,
        repo: Repository | None = None,
        *,
        on_write: WriteHook | None = None,
    ) -> JsonObject:
        """One attempt. `repo` is where preparation reads and writes go (a batch's open unit of
        work); by default reads use the repository and writes a fresh unit of work."""
        reader = repo if repo is not None else self.repo
        entries = self._parse_entries(bundle)
        mapping: dict[str, str] = {}
        # 1. ids: assign for POST, resolve conditional creates, take PUT ids from the URL
        for e in entries:
            if e.method == "POST" and e.resource is not None:
                if e.if_none_exist:
                    try:
                        match = find_one_or_none(
                            reader,
                            str(e.target_type),
                            parse_query_string(e.if_none_exist).params,
                        )
                    except AdapterError as exc:
                        raise type(exc)(
                            [
                                x.rebased(f"Bundle.entry[{e.index}].request.ifNoneExist")
                                for x in exc.issues
                            ]
                        ) from exc
                    if match is not None:
                        e.skip_create = match
                        e.target_id = match.id
                if e.target_id is None:
                    e.target_id = _new_id()
            elif e.method == "PUT" and e.resource is not None and e.conditional is not None:
                # R4 conditional update: one match -> update it; none -> create; several -> 412
                try:
                    match = find_one_or_none(
                        reader, str(e.target_type), parse_query_string(e.conditional).params
                    )
                except AdapterError as exc:
                    raise type(exc)(
                        [x.rebased(f"Bundle.entry[{e.index}].request.url") for x in exc.issues]
                    ) from exc
                if e.resource.get("id") not in (None, match.id if match else None):
                    raise InputError(
                        [
                            Issue(
                                "error",
                                "invalid",
                                "Resource id does not match the conditional update's match",
                                expression=f"Bundle.entry[{e.index}].resource.id",
                            )
                        ]
                    )
                e.matched_id = match.id if match is not None else None
                e.target_id = match.id if match is not None else _new_id()
            if e.full_url and e.target_type and e.target_id:
                mapping[e.full_url] = f"{e.target_type}/{e.target_id}"
        # 2. the working copies: identifier systems normalised (and said so), urn:uuid (and
        #    absolute fullUrl) references rewritten to the assigned ids, POST/PUT ids set
        for e in entries:
            if e.resource is not None:
                e.resource, changed = prepared_copy(e.resource, mapping)
                e.issues += self._normalised(e.resource, changed)
                if e.method in ("POST", "PUT"):
                    e.resource["id"] = e.target_id
        final_bundle: JsonObject = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": f"{e.target_type}/{e.target_id}", "resource": e.resource}
                for e in entries
                if e.resource is not None
            ],
        }
        # 3. judge every resource as it will be stored, with the whole Bundle in view. Entries whose
        #    ifNoneExist matched are judged too: bad content is refused even when it would not be written.
        ctx = self.context(bundle=final_bundle, mode="create", store_lookup=resource_lookup(reader))
        structural_all: list[Issue] = []
        judged_all: list[Issue] = []
        judged_by_entry: dict[int, list[Issue]] = {}
        targets = Counter((e.target_type, e.target_id) for e in entries)
        for e in entries:
            if e.resource is None:
                continue
            ctx.entry_index = e.index
            ctx.mode = "update" if e.method == "PUT" else "create"
            e.current = NOT_READ
            ctx.previous = None
            if e.method == "PUT":
                current = current_or_none(reader, str(e.target_type), str(e.target_id))
                ctx.previous = current.resource if current is not None else None
                if repo is not None and targets[(e.target_type, e.target_id)] == 1:
                    e.current = current  # read on the connection that writes: reuse it there
            structural, judged = self.judge(e.resource, ctx)
            prefix = f"Bundle.entry[{e.index}].resource"
            structural_all += [x.rebased(prefix) for x in structural]
            rebased = [x.rebased(prefix) for x in judged]
            judged_all += rebased
            judged_by_entry[e.index] = e.issues + judged
        self._raise_if_blocking(structural_all, judged_all)
        # 4. write all or nothing, in the order R4 prescribes
        results: dict[int, JsonObject] = {}
        with (reader if repo is not None else self.repo).unit_of_work() as uow:
            if repo is None:  # prepared on other connections: take the matches again under lock
                _recheck_conditional_matches(uow, entries)
            for e in sorted(entries, key=lambda x: (METHOD_ORDER[x.method], x.index)):
                try:
                    results[e.index] = self._execute(uow, e, judged_by_entry.get(e.index, []), ctx)
                except AdapterError as exc:
                    raise type(exc)(
                        [
                            x.rebased(f"Bundle.entry[{e.index}]") if x.expression is None else x
                            for x in exc.issues
                        ],
                        headers=exc.headers,
                    ) from exc
            _on_write(uow, on_write, "Bundle", None, 200)
        log.info("transaction committed", extra={"entries": len(entries)})
        response: JsonObject = {
            "resourceType": "Bundle",
            "id": _new_id(),
            "type": "transaction-response",
            "entry": [results[e.index] for e in entries],
        }
        return response

    def _execute(
        self, uow: Repository, e: _Entry, judged: list[Issue], ctx: ValidationContext
    ) -> JsonObject:
        warnings = [i for i in judged if not i.is_blocking]
        outcome = {"outcome": operation_outcome(warnings)} if warnings else {}
        if e.method == "POST" and e.resource is not None:
            if e.skip_create is not None:
                s = e.skip_create
                return {
                    "fullUrl": f"{s.resource_type}/{s.id}",
                    "response": {
                        "status": "200 OK",
                        "location": f"{s.resource_type}/{s.id}/_history/{s.version_id}",
                        "etag": s.etag,
                        "lastUpdated": s.resource["meta"]["lastUpdated"],
                    },
                }
            stored = uow.create(e.resource, id=e.target_id)
            self._store_provenance(uow, stored, judged, ctx)
            return self._entry_response(stored, "201 Created", outcome)
        if e.method == "PUT" and e.resource is not None and e.create_only:
            try:
                stored = uow.create(e.resource, id=e.target_id)
            except Conflict as exc:
                raise PreconditionFailed(
                    [
                        Issue(
                            "error",
                            "duplicate",
                            f"{e.target_type}/{e.target_id} already exists (ifNoneMatch: *)",
                            expression=f"Bundle.entry[{e.index}].request.ifNoneMatch",
                        )
                    ]
                ) from exc
            self._store_provenance(uow, stored, judged, ctx)
            return self._entry_response(stored, "201 Created", outcome)
        if e.method == "PUT" and e.resource is not None:
            unchanged = unchanged_current(uow, e.resource, e.if_match, e.current)
            if unchanged is not None:
                return self._entry_response(unchanged, "200 OK", outcome)
            stored, created = uow.update(e.resource, if_match=e.if_match)
            self._store_provenance(uow, stored, judged, ctx)
            return self._entry_response(stored, "201 Created" if created else "200 OK", outcome)
        if e.method == "DELETE" and e.target_type and e.target_id:
            uow.delete(e.target_type, e.target_id, if_match=e.if_match)
            return {"response": {"status": "204 No Content"}}
        if e.method == "GET":
            path = e.url.split("?", 1)[0].strip("/").split("/")
            if len(path) == 2:
                stored = uow.read(path[0], path[1])
                return {
                    "fullUrl": f"{stored.resource_type}/{stored.id}",
                    "resource": stored.resource,
                    "response": {"status": "200 OK", "etag": stored.etag},
                }
            raise InputError(
                [
                    Issue(
                        "error",
                        "not-supported",
                        "Only GET Type/id is supported in a transaction",
                        expression=f"Bundle.entry[{e.index}].request.url",
                    )
                ]
            )
        raise InputError(
            [Issue("error", "invalid", "Malformed entry", expression=f"Bundle.entry[{e.index}]")]
        )

    def _store_provenance(
        self, uow: Repository, stored: StoredResource, judged: list[Issue], ctx: ValidationContext
    ) -> None:
        prov = self._provenance_for(stored.resource, judged, ctx)
        if prov is not None:
            uow.create(prov)

    @staticmethod
    def _entry_response(stored: StoredResource, status: str, extra: JsonObject) -> JsonObject:
        return {
            "fullUrl": f"{stored.resource_type}/{stored.id}",
            "resource": stored.resource,
            "response": {
                "status": status,
                "location": f"{stored.resource_type}/{stored.id}/_history/{stored.version_id}",
                "etag": stored.etag,
                "lastUpdated": stored.resource["meta"]["lastUpdated"],
                **extra,
            },
        }

    def batch(self, bundle: JsonObject) -> JsonObject:
        """Each entry on its own: one failing entry does not stop the others."""
        out: list[JsonObject] = []
        for i, raw in enumerate(bundle.get("entry") or []):
            single = {"resourceType": "Bundle", "type": "transaction", "entry": [raw]}
            try:
                resp = self.transaction(single)
                out.append(resp["entry"][0])
            except AdapterError as exc:
                issues = [
                    x.rebased(f"Bundle.entry[{i}]") if x.expression is None else _reindex(x, i)
                    for x in exc.issues
                ]
                out.append(
                    {
                        "response": {
                            "status": f"{exc.status} {type(exc).__name__}",
                            "outcome": operation_outcome(issues),
                        }
                    }
                )
        return {"resourceType": "Bundle", "id": _new_id(), "type": "batch-response", "entry": out}


class _MatchChanged(Exception):
    """A conditional match seen while preparing differs from the one under the lock."""


class _Refused(Exception):
    """Carries a batch-of-one's refusal out of its unit of work, so that the unit rolls back."""

    def __init__(self, error: AdapterError):
        super().__init__(str(error))
        self.error = error


def _recheck_conditional_matches(uow: Repository, entries: list[_Entry]) -> None:
    """Locks each conditional's criteria (in a stable order, so two writers cannot deadlock) and
    checks the match is still the one the Bundle was prepared with."""
    conditional = []
    for e in entries:
        query = e.if_none_exist if e.method == "POST" else e.conditional
        if query and e.target_type:
            conditional.append((e.target_type, parse_query_string(query).params, e))
    conditional.sort(key=lambda c: (c[0], repr(c[1])))
    for resource_type, criteria, e in conditional:
        lock_criteria(uow, resource_type, criteria)
        match = find_one_or_none(uow, resource_type, criteria)
        expected = e.skip_create.id if e.skip_create is not None else None
        if e.method == "PUT":
            expected = e.matched_id
        if (match.id if match else None) != expected:
            raise _MatchChanged


def _reindex(issue: Issue, index: int) -> Issue:
    if issue.expression and issue.expression.startswith("Bundle.entry[0]"):
        from dataclasses import replace

        return replace(
            issue, expression=f"Bundle.entry[{index}]" + issue.expression[len("Bundle.entry[0]") :]
        )
    return issue


def references_in(resource: JsonObject) -> Iterator[str]:
    """Literal references of a resource (used by the API for _include and compartments)."""
    from adapter.fhir.references import iter_references

    for _, ref in iter_references(resource, str(resource.get("resourceType"))):
        value = str(ref["reference"])
        if parse_reference(value).kind in ("relative", "absolute"):
            yield value
