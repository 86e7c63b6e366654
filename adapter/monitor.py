"""The timescale monitor: stored records judged again, now, by the packs' time-bound rules.

A timescale rule (`check: due_within`) judges a record when it is written: an urgent referral must
be assessed within 72 hours of `authoredOn`, a post-discharge follow-up Task made within 72 hours,
7 days or 5 working days of discharge, a discharge letter sent within its days. When the record is
written the deadline has usually not passed, so the rule says nothing; if nothing is ever recorded,
no later write asks again. `sweep` asks again: it pages through every stored resource of a type
some timescale rule applies to, skips records in a terminal status, and evaluates the loaded packs
with the context's clock (`missing: overdue` rules fire once the deadline has passed with nothing
recorded). Each finding of a timescale rule is a `Breach`, with the rule id and citation.

Read-only: nothing is written, and a breach carries resource type, id and version, never patient
data. Run it from a scheduler (`adapter monitor --json`) and act on what it lists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from adapter.context import ValidationContext
from adapter.fhir.types import JsonObject
from adapter.policy.engine import PolicyEngine
from adapter.policy.rulepack import Rule
from adapter.store.repository import Repository, SearchQuery, iter_pages

#: Named checks whose answer depends on the clock as well as on the record.
TIMESCALE_CHECKS: Final = frozenset({"due_within"})

#: Statuses after which no deadline is still running (the record is closed or was an error).
TERMINAL_STATUSES: Final = frozenset(
    {
        "completed",
        "cancelled",
        "revoked",
        "failed",
        "rejected",
        "entered-in-error",
        "inactive",
        "amended",  # a Composition replaced by a newer one: the newer one is judged
    }
)


@dataclass(frozen=True, slots=True)
class Breach:
    resource_type: str
    id: str
    version_id: int
    status: str | None
    rule_id: str
    severity: str
    text: str
    #: what the check found: "not recorded and due by 2026-11-23 (72 hours)"
    detail: str | None
    citation: str
    expression: str | None

    def as_json(self) -> JsonObject:
        return {
            "resource": f"{self.resource_type}/{self.id}/_history/{self.version_id}",
            "status": self.status,
            "rule": self.rule_id,
            "severity": self.severity,
            "text": self.text,
            "detail": self.detail,
            "citation": self.citation,
            "expression": self.expression,
        }


def timescale_rules(policy: PolicyEngine) -> dict[str, Rule]:
    return {r.id: r for r in policy.rules() if r.check in TIMESCALE_CHECKS}


def sweep(
    repo: Repository,
    policy: PolicyEngine,
    ctx: ValidationContext,
    *,
    page_size: int = 200,
    include_closed: bool = False,
) -> Iterator[Breach]:
    """Every finding of a timescale rule over the stored records, judged at `ctx.clock.now()`."""
    rules = timescale_rules(policy)
    for resource_type in sorted({r.applies_to for r in rules.values()}):
        for stored in iter_pages(repo, resource_type, SearchQuery(count=page_size)):
            status = stored.resource.get("status")
            status = status if isinstance(status, str) else None
            if not include_closed and status in TERMINAL_STATUSES:
                continue
            for issue in policy.evaluate(stored.resource, ctx):
                if issue.rule is None or issue.rule.id not in rules:
                    continue
                yield Breach(
                    resource_type,
                    stored.id,
                    stored.version_id,
                    status,
                    issue.rule.id,
                    issue.severity,
                    issue.text,
                    issue.diagnostics,
                    issue.rule.citation,
                    issue.expression,
                )
