"""Renders Issues as FHIR OperationOutcome JSON. The only place OperationOutcome JSON is built."""

from __future__ import annotations

from collections.abc import Iterable

from adapter.fhir.types import JsonObject
from adapter.issue import Issue

RULE_CITATION_URL = "https://fhir.cmh-adapter.example/StructureDefinition/rule-citation"


def issue_json(issue: Issue) -> JsonObject:
    out: JsonObject = {"severity": issue.severity, "code": issue.code}
    details: JsonObject = {"text": issue.text}
    diagnostics: list[str] = []
    if issue.rule is not None:
        details["coding"] = [
            {
                "system": issue.rule.system,
                "code": issue.rule.id,
                **({"display": issue.rule.title} if issue.rule.title else {}),
            }
        ]
        diagnostics.append(f"{issue.rule.id}; source: {issue.rule.citation}")
        out["extension"] = [{"url": RULE_CITATION_URL, "valueString": issue.rule.citation}]
    if issue.diagnostics:
        diagnostics.append(issue.diagnostics)
    out["details"] = details
    if diagnostics:
        out["diagnostics"] = " | ".join(diagnostics)
    if issue.expression:
        out["expression"] = [issue.expression]
    return out


def operation_outcome(issues: Iterable[Issue], *, id: str | None = None) -> JsonObject:
    rendered = [issue_json(i) for i in issues]
    if not rendered:
        rendered = [
            {
                "severity": "information",
                "code": "informational",
                "details": {"text": "All OK"},
            }
        ]
    oo: JsonObject = {"resourceType": "OperationOutcome", "issue": rendered}
    if id:
        oo["id"] = id
    return oo
