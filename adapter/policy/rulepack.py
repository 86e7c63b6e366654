"""Loads policy rule packs from profiles/policy/<pack>/*.yaml, refusing any rule without a citation.

A pack file:

    pack: england-cmht
    version: 0.1.0
    rules:
      - id: S000-REF-URG-01
        title: Referral urgency is stated
        severity: REJECT            # REJECT -> error (422) · WARN -> warning · INFO -> information
        applies_to: ServiceRequest
        expression: priority.exists()      # FHIRPath that must be true, or `check: <name>`
        message: ...
        citation: "000_d2f535f8876d1512.txt:395-437"
        quote: "..."
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import fhirpathpy
import yaml
from fhirpathpy.models import models

from adapter.errors import ArtefactLoadError
from adapter.issue import RuleRef, Severity

PolicySeverity = Literal["REJECT", "WARN", "INFO"]
SEVERITY_MAP: Final[dict[str, Severity]] = {"REJECT": "error", "WARN": "warning", "INFO": "information"}
R4_MODEL: Final = models["r4"]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    severity: Severity
    applies_to: str
    message: str
    citation: str
    quote: str
    pack: str
    expression: str | None = None
    check: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: FHIRPath where the rule points in the resource (for OperationOutcome.issue.expression)
    location: str | None = None
    compiled: Callable[..., list[Any]] | None = field(default=None, compare=False, repr=False)

    @property
    def ref(self) -> RuleRef:
        return RuleRef(id=self.id, citation=f"{self.citation} \u2014 \u201c{self.quote}\u201d",
                       title=self.title)


@dataclass(frozen=True, slots=True)
class RulePack:
    name: str
    version: str
    rules: tuple[Rule, ...]


def _require(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ArtefactLoadError(where, f"rule {raw.get('id', '?')!r} has no {key}")
    return value


def load_pack(directory: Path) -> RulePack:
    rules: list[Rule] = []
    name, version = directory.name, "0"
    for path in sorted(directory.glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ArtefactLoadError(str(path), f"not valid YAML: {exc}") from exc
        name = str(doc.get("pack", name))
        version = str(doc.get("version", version))
        for raw in doc.get("rules") or []:
            where = str(path)
            rule_id = _require(raw, "id", where)
            sev = _require(raw, "severity", where)
            if sev not in SEVERITY_MAP:
                raise ArtefactLoadError(where, f"rule {rule_id}: severity must be REJECT, WARN or INFO")
            expression = raw.get("expression")
            check = raw.get("check")
            if not expression and not check:
                raise ArtefactLoadError(where, f"rule {rule_id} has neither expression nor check")
            compiled = None
            if expression:
                try:
                    compiled = fhirpathpy.compile(str(expression), R4_MODEL)
                except Exception as exc:  # fhirpathpy raises bare Exceptions on syntax errors
                    raise ArtefactLoadError(where, f"rule {rule_id}: bad FHIRPath: {exc}") from exc
            rules.append(
                Rule(
                    id=rule_id,
                    title=_require(raw, "title", where),
                    severity=SEVERITY_MAP[sev],
                    applies_to=_require(raw, "applies_to", where),
                    message=_require(raw, "message", where),
                    citation=_require(raw, "citation", where),
                    quote=_require(raw, "quote", where),
                    pack=name,
                    expression=str(expression) if expression else None,
                    check=str(check) if check else None,
                    params=dict(raw.get("params") or {}),
                    location=raw.get("location"),
                    compiled=compiled,
                )
            )
    return RulePack(name=name, version=version, rules=tuple(rules))


def load_packs(policy_dir: Path, names: list[str]) -> dict[str, RulePack]:
    packs: dict[str, RulePack] = {}
    for name in names:
        directory = policy_dir / name
        if not directory.is_dir():
            raise ArtefactLoadError(str(directory), "policy pack not found")
        packs[name] = load_pack(directory)
    return packs
