"""The `Issue`: one finding of any stage, rendered to an OperationOutcome issue by `outcome.py`.

Every stage (sources, mapping, conformance, policy, store) reports findings as a list of Issues and
never stops at the first; only the pipeline decides whether a unit of work is rejected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final, Literal

Severity = Literal["fatal", "error", "warning", "information"]

#: FHIR `IssueType` codes we use (http://hl7.org/fhir/R4/valueset-issue-type.html).
IssueCode = Literal[
    "invalid",
    "structure",
    "required",
    "value",
    "invariant",
    "security",
    "login",
    "forbidden",
    "processing",
    "not-supported",
    "duplicate",
    "multiple-matches",
    "not-found",
    "deleted",
    "too-long",
    "code-invalid",
    "extension",
    "business-rule",
    "conflict",
    "transient",
    "lock-error",
    "timeout",
    "throttled",
    "informational",
    "exception",
    "incomplete",
    "expired",
]

BLOCKING: Final[frozenset[str]] = frozenset({"fatal", "error"})


@dataclass(frozen=True, slots=True)
class RuleRef:
    """A policy or profile rule behind an issue: its id, and the seed paragraph that requires it."""

    id: str
    citation: str
    title: str | None = None
    system: str = "https://fhir.cmh-adapter.example/rules"


@dataclass(frozen=True, slots=True)
class Issue:
    """One finding. `text` must never contain patient data (names, NHS numbers, free text)."""

    severity: Severity
    code: IssueCode
    text: str
    expression: str | None = None
    rule: RuleRef | None = None
    #: free-form machine detail that is safe to show (e.g. "overridden-by=Practitioner/x")
    diagnostics: str | None = None

    @property
    def is_blocking(self) -> bool:
        return self.severity in BLOCKING

    def rebased(self, prefix: str) -> Issue:
        """Re-root the expression under `prefix` (e.g. `Bundle.entry[2].resource`).

        `Patient.identifier[0].value` under `Bundle.entry[0].resource` becomes
        `Bundle.entry[0].resource.identifier[0].value`: the leading type name is replaced.
        """
        if self.expression is None:
            return replace(self, expression=prefix)
        head, dot, rest = self.expression.partition(".")
        if head[:1].isupper() and "[" not in head:
            new = prefix + (dot + rest if dot else "")
        else:
            new = f"{prefix}.{self.expression}"
        return replace(self, expression=new)


def has_blocking(issues: Iterable[Issue]) -> bool:
    return any(i.is_blocking for i in issues)
