"""Transaction and batch Bundles, and bulk batches of transactions, written through a Pipeline.

A transaction is prepared (entries parsed, ids assigned, conditional matches found, working copies
made), judged whole with the Bundle in view, and written all or nothing in the order R4 prescribes
(each entry by `execute.py`).
A bulk batch shares one commit: each transaction in it keeps a savepoint of its own.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from adapter.errors import AdapterError, InputError, PreconditionFailed
from adapter.fhir.prepare import prepared_copy
from adapter.fhir.search import parse_query_string
from adapter.fhir.source_event import superseding
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.outcome import operation_outcome
from adapter.pipeline.entries import (
    METHOD_ORDER,
    MatchChanged,
    new_id,
    parse_entries,
    recheck_conditional_matches,
)
from adapter.pipeline.execute import execute_entry
from adapter.pipeline.hooks import WriteHook, call_hook
from adapter.store.conditional import NOT_READ, conditional_lock_keys
from adapter.store.repository import (
    Repository,
    current_or_none,
    find_one_or_none,
    resource_lookup,
)

if TYPE_CHECKING:
    from adapter.pipeline.core import Pipeline

log = logging.getLogger("adapter.pipeline")


class BundleWriter:
    """The Bundle side of one Pipeline: the pipeline judges, this prepares and writes."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

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

    def transaction(self, bundle: JsonObject, *, on_write: WriteHook | None = None) -> JsonObject:
        """All or nothing. Conditional matches are taken again under a lock inside the unit of
        work; if a concurrent writer changed one in between, the whole Bundle is prepared again
        (ids and references depend on the matches), at most three times."""
        for _attempt in range(3):
            try:
                return self._transaction_once(bundle, on_write=on_write)
            except MatchChanged:
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
        with self.pipeline.repo.unit_of_work() as uow:
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
                except MatchChanged:  # cannot happen on one connection; be explicit anyway
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
        except MatchChanged as exc:  # cannot happen on one connection; be explicit anyway
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
        reader = repo if repo is not None else self.pipeline.repo
        entries = parse_entries(bundle)
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
                    e.target_id = new_id()
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
                e.target_id = match.id if match is not None else new_id()
            if e.full_url and e.target_type and e.target_id:
                mapping[e.full_url] = f"{e.target_type}/{e.target_id}"
        # 2. the working copies: identifier systems normalised (and said so), urn:uuid (and
        #    absolute fullUrl) references rewritten to the assigned ids, POST/PUT ids set
        for e in entries:
            if e.resource is not None:
                e.resource, changed = prepared_copy(e.resource, mapping)
                e.issues += self.pipeline.normalised(e.resource, changed)
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
        ctx = self.pipeline.context(
            bundle=final_bundle, mode="create", store_lookup=resource_lookup(reader)
        )
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
                if current is not None and superseding(current.resource, e.resource):
                    # an older event than the stored one's: judged on its own content, not as a
                    # change to the newer version it will not overwrite (settled when written)
                    ctx.previous = None
                if repo is not None and targets[(e.target_type, e.target_id)] == 1:
                    e.current = current  # read on the connection that writes: reuse it there
            structural, judged = self.pipeline.judge(e.resource, ctx)
            prefix = f"Bundle.entry[{e.index}].resource"
            structural_all += [x.rebased(prefix) for x in structural]
            rebased = [x.rebased(prefix) for x in judged]
            judged_all += rebased
            judged_by_entry[e.index] = e.issues + judged
        self.pipeline.raise_if_blocking(structural_all, judged_all)
        # 4. write all or nothing, in the order R4 prescribes
        results: dict[int, JsonObject] = {}
        with (reader if repo is not None else self.pipeline.repo).unit_of_work() as uow:
            if repo is None:  # prepared on other connections: take the matches again under lock
                recheck_conditional_matches(uow, entries)
            for e in sorted(entries, key=lambda x: (METHOD_ORDER[x.method], x.index)):
                try:
                    results[e.index] = execute_entry(
                        self.pipeline, uow, e, judged_by_entry.get(e.index, []), ctx
                    )
                except AdapterError as exc:
                    raise type(exc)(
                        [
                            x.rebased(f"Bundle.entry[{e.index}]") if x.expression is None else x
                            for x in exc.issues
                        ],
                        headers=exc.headers,
                    ) from exc
            call_hook(uow, on_write, "Bundle", None, 200)
        log.info("transaction committed", extra={"entries": len(entries)})
        response: JsonObject = {
            "resourceType": "Bundle",
            "id": new_id(),
            "type": "transaction-response",
            "entry": [results[e.index] for e in entries],
        }
        return response

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
        return {"resourceType": "Bundle", "id": new_id(), "type": "batch-response", "entry": out}


class _Refused(Exception):
    """Carries a batch-of-one's refusal out of its unit of work, so that the unit rolls back."""

    def __init__(self, error: AdapterError):
        super().__init__(str(error))
        self.error = error


def _reindex(issue: Issue, index: int) -> Issue:
    if issue.expression and issue.expression.startswith("Bundle.entry[0]"):
        from dataclasses import replace

        return replace(
            issue, expression=f"Bundle.entry[{index}]" + issue.expression[len("Bundle.entry[0]") :]
        )
    return issue
