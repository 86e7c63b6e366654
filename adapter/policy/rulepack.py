"""Rule packs: profiles/policy/<pack>/*.yaml loaded, schema-checked, compiled and version-stamped.

A pack is a directory. `pack.yaml` names it; every other YAML file holds rules:

    # pack.yaml
    pack: england-cmht
    version: 1.0.0
    status: active
    jurisdiction: england        # england | wales | any: how data-driven selection treats it
    select_by_data: false        # true: loaded even when not configured, added when the data says so

    # referral.yaml
    guards:                      # named FHIRPath guards, compiled once, shared by rules (`when:`)
      urgent: priority = 'urgent'
    rules:
      - id: S000-REF-URG-01
        title: A referral to a CMHT states its urgency
        severity: REJECT         # REJECT -> error (422) · WARN -> warning · INFO -> information
        applies_to: ServiceRequest          # a resource type; `profile:` narrows to a meta.profile
        when: urgent                        # optional guard name or inline FHIRPath
        expression: priority.exists()       # FHIRPath that must be true ... or `check: <name>`
        params: {}                          # for a named check
        overridable: false                  # true: an override recorded on the resource downgrades
        location: ServiceRequest.priority
        message: ...
        citation: "000_d2f535f8876d1512.txt:395-437 (section)"
        quote: "..."

A pack may also carry `overrides:` (the trust-overrides pack): each entry names a rule of another pack
and changes its severity, params or enabled state, with its own citation. `{SD}`, `{CS}` and `{EXT}`
in expressions, guards and string params expand to this adapter's canonical URL bases.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import fhirpathpy
import yaml
from fhirpathpy.models import models

from adapter.errors import ArtefactLoadError
from adapter.issue import RuleRef, Severity
from adapter.policy.fastpath import FastFn, Unsupported, compile_fast
from adapter.policy.vocab import CS, EXT, SD

PolicySeverity = Literal["REJECT", "WARN", "INFO"]
SEVERITY_MAP: Final[dict[str, Severity]] = {
    "REJECT": "error",
    "WARN": "warning",
    "INFO": "information",
}
SEVERITY_NAMES: Final[dict[str, str]] = {v: k for k, v in SEVERITY_MAP.items()}
R4_MODEL: Final = models["r4"]
Jurisdiction = Literal["england", "wales", "any"]

#: A compiled FHIRPath: resource JSON in, FHIRPath collection out.
Compiled = Callable[..., list[Any]]

_RULE_KEYS: Final = frozenset(
    {
        "id",
        "title",
        "severity",
        "applies_to",
        "profile",
        "when",
        "expression",
        "check",
        "params",
        "overridable",
        "location",
        "message",
        "citation",
        "quote",
        "status",
        "note",
    }
)
_OVERRIDE_KEYS: Final = frozenset(
    {"rule", "severity", "params", "enabled", "reason", "citation", "quote"}
)


def expand(text: str) -> str:
    return text.replace("{SD}", SD).replace("{CS}", CS).replace("{EXT}", EXT)


_EXTENSION_CALL: Final = re.compile(r"\bextension\(\s*'([^'\\]*)'\s*\)")


def for_fhirpathpy(expression: str) -> str:
    """fhirpathpy 2.2.4 returns only the first match of `extension('url')` (the spec says all),
    so a second agreement statement on a CTP went unseen; `extension.where(url = ...)` is exact."""
    return _EXTENSION_CALL.sub(r"extension.where(url = '\1')", expand(expression))


@functools.cache
def _fhirpathpy_compiled(text: str) -> Compiled:
    compiled: Compiled = fhirpathpy.compile(text, R4_MODEL)
    return compiled


def compile_fhirpath(expression: str, where: str) -> Compiled:
    """Compiled once per distinct expression per process (parsing is the slow part of loading)."""
    try:
        return _fhirpathpy_compiled(for_fhirpathpy(expression))
    except Exception as exc:  # fhirpathpy raises bare Exceptions on syntax errors
        raise ArtefactLoadError(where, f"bad FHIRPath {expression!r}: {exc}") from exc


@functools.cache
def compile_fast_or_none(expression: str) -> FastFn | None:
    """The fast evaluator for `expression`, or None when only fhirpathpy can run it."""
    try:
        return compile_fast(expand(expression))
    except Unsupported:
        return None


@dataclass(frozen=True, slots=True)
class Guard:
    """A FHIRPath precondition. Rules sharing a guard share one evaluation per resource."""

    key: str
    expression: str
    compiled: Compiled = field(compare=False, repr=False)
    fast: FastFn | None = field(default=None, compare=False, repr=False)

    @classmethod
    def build(cls, key: str, expression: str, where: str) -> Guard:
        return cls(
            key, expression, compile_fhirpath(expression, where), compile_fast_or_none(expression)
        )


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
    source_file: str = ""
    expression: str | None = None
    check: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    #: FHIRPath where the rule points in the resource (for OperationOutcome.issue.expression)
    location: str | None = None
    profile: str | None = None
    guard: Guard | None = None
    overridable: bool = False
    #: "<pack>: <reason>" when a trust override changed this rule
    tuned_by: str | None = None
    compiled: Compiled | None = field(default=None, compare=False, repr=False)
    fast: FastFn | None = field(default=None, compare=False, repr=False)

    @property
    def ref(self) -> RuleRef:
        return RuleRef(
            id=self.id,
            citation=f"{self.citation} \u2014 \u201c{self.quote}\u201d",
            title=self.title,
        )

    @property
    def level(self) -> str:
        """REJECT, WARN or INFO, as written in the pack."""
        return SEVERITY_NAMES[self.severity]


@dataclass(frozen=True, slots=True)
class RuleOverride:
    """A Trust's change to another pack's rule, made in data (the trust-overrides pack)."""

    rule: str
    reason: str
    citation: str
    severity: Severity | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class RulePack:
    name: str
    version: str
    rules: tuple[Rule, ...]
    status: str = "active"
    jurisdiction: Jurisdiction = "any"
    select_by_data: bool = False
    overrides: tuple[RuleOverride, ...] = ()
    #: sha256 over the pack's files: the stamp reported at start-up and in `adapter policy list`
    digest: str = ""
    #: True when loaded only because the data may select it (not named in configuration)
    on_demand: bool = False
    directory: str = ""

    @property
    def stamp(self) -> str:
        return f"{self.name}@{self.version}+{self.digest[:12]}"


def _require(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ArtefactLoadError(where, f"rule {raw.get('id', '?')!r} has no {key}")
    return value.strip()


def _compose(when: str, guards: Mapping[str, Guard]) -> str:
    """Replaces guard names used as words outside string literals with their expressions."""
    parts = re.split(r"('(?:[^'\\]|\\.)*')", when)
    for i in range(0, len(parts), 2):
        for name, named in guards.items():
            parts[i] = re.sub(
                rf"(?<![\w.{{}}-]){re.escape(name)}(?![\w(-])", f"({named.expression})", parts[i]
            )
    return "".join(parts)


def _expand_params(params: Mapping[str, Any]) -> dict[str, Any]:
    def one(value: Any) -> Any:
        if isinstance(value, str):
            return expand(value)
        if isinstance(value, list):
            return [one(v) for v in value]
        return value

    return {k: one(v) for k, v in params.items()}


def _load_rule(
    raw: Any, pack: str, where: str, guards: Mapping[str, Guard], defaults: Mapping[str, Any]
) -> Rule:
    from adapter.policy.checks import CHECKS  # the registry; imported late to avoid a cycle

    if not isinstance(raw, dict):
        raise ArtefactLoadError(where, "each rule must be a mapping")
    raw = {**defaults, **raw}
    unknown = set(raw) - _RULE_KEYS
    rule_id = _require(raw, "id", where)
    if unknown:
        raise ArtefactLoadError(where, f"rule {rule_id}: unknown keys {sorted(unknown)}")
    sev = _require(raw, "severity", where)
    if sev not in SEVERITY_MAP:
        raise ArtefactLoadError(where, f"rule {rule_id}: severity must be REJECT, WARN or INFO")
    expression, check = raw.get("expression"), raw.get("check")
    if bool(expression) == bool(check):
        raise ArtefactLoadError(where, f"rule {rule_id} needs exactly one of expression or check")
    if check and check not in CHECKS:
        raise ArtefactLoadError(where, f"rule {rule_id}: no registered check named {check!r}")
    guard: Guard | None = None
    when = raw.get("when")
    if isinstance(when, str) and when:
        guard = guards.get(when)
        if guard is None:
            composed = _compose(when, guards)
            guard = Guard.build(composed, composed, f"{where}: {rule_id}")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise ArtefactLoadError(where, f"rule {rule_id}: params must be a mapping")
    return Rule(
        id=rule_id,
        title=_require(raw, "title", where),
        severity=SEVERITY_MAP[sev],
        applies_to=_require(raw, "applies_to", where),
        message=" ".join(_require(raw, "message", where).split()),
        citation=_require(raw, "citation", where),
        quote=" ".join(_require(raw, "quote", where).split()),
        pack=pack,
        source_file=where,
        expression=str(expression) if expression else None,
        check=str(check) if check else None,
        params=_expand_params(params),
        location=raw.get("location"),
        profile=raw.get("profile"),
        guard=guard,
        overridable=bool(raw.get("overridable", False)),
        compiled=compile_fhirpath(str(expression), f"{where}: {rule_id}") if expression else None,
        fast=compile_fast_or_none(str(expression)) if expression else None,
    )


def _load_override(raw: Any, where: str) -> RuleOverride:
    if not isinstance(raw, dict) or set(raw) - _OVERRIDE_KEYS:
        raise ArtefactLoadError(where, f"bad override entry {raw!r}")
    sev = raw.get("severity")
    if sev is not None and sev not in SEVERITY_MAP:
        raise ArtefactLoadError(where, f"override of {raw.get('rule')}: bad severity {sev!r}")
    return RuleOverride(
        rule=_require(raw, "rule", where),
        reason=" ".join(_require(raw, "reason", where).split()),
        citation=_require(raw, "citation", where),
        severity=SEVERITY_MAP[sev] if sev else None,
        params=_expand_params(raw.get("params") or {}),
        enabled=bool(raw.get("enabled", True)),
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ArtefactLoadError(str(path), f"not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ArtefactLoadError(str(path), "a rule file must be a mapping")
    return doc


def load_pack(directory: Path, *, on_demand: bool = False) -> RulePack:
    manifest_path = directory / "pack.yaml"
    manifest = _read_yaml(manifest_path) if manifest_path.exists() else {}
    name = str(manifest.get("pack", directory.name))
    digest = hashlib.sha256()
    rules: list[Rule] = []
    overrides: list[RuleOverride] = []
    for path in sorted(directory.glob("*.yaml")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
        if path.name == "pack.yaml":
            continue
        doc = _read_yaml(path)
        where = str(path)
        if doc.get("pack", name) != name:
            raise ArtefactLoadError(
                where, f"file belongs to pack {doc.get('pack')!r}, not {name!r}"
            )
        guards = {
            key: Guard.build(key, str(expr), f"{where}: guard {key}")
            for key, expr in (doc.get("guards") or {}).items()
        }
        defaults = doc.get("defaults") or {}
        rules.extend(
            _load_rule(raw, name, where, guards, defaults) for raw in doc.get("rules") or []
        )
        overrides.extend(_load_override(raw, where) for raw in doc.get("overrides") or [])
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise ArtefactLoadError(str(directory), f"duplicate rule id {rule.id}")
        seen.add(rule.id)
    jurisdiction = manifest.get("jurisdiction", "any")
    if jurisdiction not in ("england", "wales", "any"):
        raise ArtefactLoadError(str(manifest_path), f"bad jurisdiction {jurisdiction!r}")
    return RulePack(
        name=name,
        version=str(manifest.get("version", "0")),
        status=str(manifest.get("status", "active")),
        rules=tuple(rules),
        jurisdiction=jurisdiction,
        select_by_data=bool(manifest.get("select_by_data", False)),
        overrides=tuple(overrides),
        digest=digest.hexdigest(),
        on_demand=on_demand,
        directory=str(directory),
    )


def load_packs(policy_dir: Path, names: Sequence[str]) -> dict[str, RulePack]:
    """Loads the configured packs, plus every pack marked `select_by_data` (loaded on demand, used
    only when the data selects it, e.g. a Welsh health board selects wales-measure)."""
    packs: dict[str, RulePack] = {}
    for name in names:
        directory = policy_dir / name
        if not directory.is_dir():
            raise ArtefactLoadError(str(directory), "policy pack not found")
        packs[name] = load_pack(directory)
    if policy_dir.is_dir():
        for directory in sorted(p for p in policy_dir.iterdir() if p.is_dir()):
            manifest = directory / "pack.yaml"
            if directory.name in packs or not manifest.exists():
                continue
            if _read_yaml(manifest).get("select_by_data"):
                packs[directory.name] = load_pack(directory, on_demand=True)
    known = {rule.id for pack in packs.values() for rule in pack.rules}
    for pack in packs.values():
        for override in pack.overrides:
            if override.rule not in known:
                raise ArtefactLoadError(pack.directory, f"override of unknown rule {override.rule}")
    return packs
