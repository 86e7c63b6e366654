"""Overrides of MUST rules, recorded on the resource itself, and the Provenance that records them.

The extension (one per overridden rule) on any resource:

    {"url": "https://fhir.cmh-adapter.example/StructureDefinition/policy-override",
     "extension": [
       {"url": "rule",     "valueCode": "LPT-CMHT-ELIG-05-FEP"},
       {"url": "reason",   "valueString": "EIP declined; consultant agreed CMHT holds the case"},
       {"url": "author",   "valueReference": {"reference": "Practitioner/dr-a"}},
       {"url": "recorded", "valueDateTime": "2026-12-23T10:00:00Z"}]}     # optional

An override only counts for a rule marked `overridable: true` and only with a reason and an author.
The issue is then downgraded to a warning that says so; the reason stays out of the OperationOutcome
(free text may hold patient data) and goes into the Provenance, stored with the resource.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from adapter.context import ValidationContext
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.policy.vocab import POLICY_OVERRIDE_URL, RULE_SYSTEM

OVERRIDDEN_MARK = "overridden-by="


@dataclass(frozen=True, slots=True)
class Override:
    rule: str
    reason: str | None
    author: JsonObject | None
    recorded: str | None = None

    @property
    def is_complete(self) -> bool:
        return bool(self.reason and self.author and self.author.get("reference"))


def _sub(ext: JsonObject, url: str) -> Any:
    for sub in ext.get("extension") or []:
        if sub.get("url") == url:
            return next((v for k, v in sub.items() if k.startswith("value")), None)
    return None


def read_overrides(resource: JsonObject) -> dict[str, Override]:
    out: dict[str, Override] = {}
    for ext in resource.get("extension") or []:
        if not isinstance(ext, dict) or ext.get("url") != POLICY_OVERRIDE_URL:
            continue
        rule = _sub(ext, "rule")
        if isinstance(rule, str):
            author = _sub(ext, "author")
            out[rule] = Override(
                rule,
                _sub(ext, "reason"),
                author if isinstance(author, dict) else None,
                _sub(ext, "recorded"),
            )
    return out


def apply_overrides(
    issues: list[Issue], overridable: set[str], found: dict[str, Override]
) -> list[Issue]:
    """Downgrades blocking issues of overridable rules that carry a complete override."""
    out: list[Issue] = []
    for issue in issues:
        rule_id = issue.rule.id if issue.rule else None
        override = found.get(rule_id) if rule_id else None
        if override is None or not issue.is_blocking:
            out.append(issue)
        elif rule_id not in overridable:
            out.append(
                replace(
                    issue,
                    diagnostics=_join(
                        issue.diagnostics, "override recorded but this rule cannot be overridden"
                    ),
                )
            )
        elif not override.is_complete:
            out.append(
                replace(
                    issue,
                    diagnostics=_join(
                        issue.diagnostics, "override ignored: it needs a reason and an author"
                    ),
                )
            )
        else:
            who = (override.author or {}).get("reference")
            out.append(
                replace(
                    issue,
                    severity="warning",
                    text=f"Overridden (MUST rule, reason recorded): {issue.text}",
                    diagnostics=_join(issue.diagnostics, f"{OVERRIDDEN_MARK}{who}"),
                )
            )
    return out


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


def provenance(
    resource: JsonObject, issues: list[Issue], ctx: ValidationContext
) -> JsonObject | None:
    """A Provenance for the overrides actually used on this write, or None when none were."""
    used = [
        i.rule.id for i in issues if i.rule and i.diagnostics and OVERRIDDEN_MARK in i.diagnostics
    ]
    if not used:
        return None
    found = read_overrides(resource)
    overrides = [found[r] for r in dict.fromkeys(used) if r in found]
    agents: dict[str, JsonObject] = {}
    for o in overrides:
        ref = str((o.author or {}).get("reference"))
        agents.setdefault(
            ref,
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "verifier",
                            "display": "Verifier",
                        }
                    ]
                },
                "who": o.author,
            },
        )
    target = f"{resource.get('resourceType')}/{resource['id']}" if resource.get("id") else None
    return {
        "resourceType": "Provenance",
        "target": [{"reference": target} if target else {"type": resource.get("resourceType")}],
        "recorded": ctx.clock.now().isoformat().replace("+00:00", "Z"),
        "policy": [f"{RULE_SYSTEM}/{o.rule}" for o in overrides],
        "reason": [
            {"coding": [{"system": RULE_SYSTEM, "code": o.rule}], "text": o.reason}
            for o in overrides
        ],
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "UPDATE" if ctx.mode == "update" else "CREATE",
                }
            ]
        },
        "agent": list(agents.values()),
        "entity": [
            {"role": "source", "what": {"identifier": {"system": RULE_SYSTEM, "value": o.rule}}}
            for o in overrides
        ],
    }
