"""A transaction Bundle's entries, parsed: method, target, conditions (R4 http.html#transaction).

Also the re-check of conditional matches under the unit of work's locks, and the ids assigned to
created entries.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Final

from adapter.errors import InputError
from adapter.fhir.parse import structural_issues
from adapter.fhir.search import parse_query_string
from adapter.fhir.types import JsonObject
from adapter.issue import Issue, has_blocking
from adapter.store.conditional import lock_criteria
from adapter.store.repository import Repository, StoredResource, find_one_or_none

#: Bundle entry processing order required by R4 http.html#trules.
METHOD_ORDER: Final = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass(slots=True)
class Entry:
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


def new_id() -> str:
    return str(uuid.uuid4())


def parse_entries(bundle: JsonObject) -> list[Entry]:
    """A transaction Bundle's entries: method, target, conditions. Malformed entries are one
    InputError naming each `Bundle.entry[i]...`; the shell is checked structurally first."""
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
    entries: list[Entry] = []
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
        entry = Entry(
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


class MatchChanged(Exception):
    """A conditional match seen while preparing differs from the one under the lock."""


def recheck_conditional_matches(uow: Repository, entries: list[Entry]) -> None:
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
            raise MatchChanged
