"""SMART scopes: parsing v1 and v2 resource scopes, and the `SmartGrant` a request carries.

v2: `(patient|user|system)/(Type|*).<subset of cruds, in order>[?param=value&...]`.
v1: `.read` means `rs`, `.write` means `cud`, `.*` means `cruds` (SMART App Launch 2.2,
scopes-and-launch-context). Non-resource scopes (`openid`, `launch/patient`, `offline_access`...)
are kept as text. The `http://smarthealthit.org/fhir/scopes/` URI form is accepted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import parse_qsl

Context = Literal["patient", "user", "system"]
Interaction = Literal["c", "r", "u", "d", "s"]

SCOPE_URI_PREFIX: Final = "http://smarthealthit.org/fhir/scopes/"
V1_SUFFIXES: Final = {"read": "rs", "write": "cud", "*": "cruds"}
_RESOURCE_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perm>[a-z*]+)(?:\?(?P<query>.*))?$"
)
_V2_ORDER: Final = "cruds"

#: Verbs the REST layer uses, mapped to SMART v2 permission letters.
INTERACTIONS: Final[dict[str, Interaction]] = {
    "create": "c",
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search": "s",
    "history-type": "s",
    "history-system": "s",
}

#: Scopes that are not about resources but that the server understands.
CONTEXT_SCOPES: Final = frozenset(
    {
        "openid",
        "fhirUser",
        "profile",
        "launch",
        "launch/patient",
        "launch/encounter",
        "offline_access",
        "online_access",
    }
)


class ScopeSyntaxError(ValueError):
    """A resource scope that does not parse (e.g. `.dus`, an unknown context)."""


@dataclass(frozen=True, slots=True)
class ScopeRule:
    """One parsed resource scope."""

    context: Context
    resource_type: str  # a type name, or "*"
    permissions: frozenset[Interaction]
    #: v2 granular constraints: (param, value) pairs, all of which a resource must match.
    constraints: tuple[tuple[str, str], ...] = ()
    text: str = ""
    is_v1: bool = False

    def covers(self, interaction: Interaction, resource_type: str) -> bool:
        return interaction in self.permissions and self.resource_type in ("*", resource_type)

    def is_within(self, other: ScopeRule) -> bool:
        """True if everything this rule allows, `other` allows too (used to refuse escalation)."""
        if other.context != self.context:
            return False
        if other.resource_type not in ("*", self.resource_type):
            return False
        if not self.permissions <= other.permissions:
            return False
        return set(other.constraints) <= set(self.constraints)


def parse_scope(text: str) -> ScopeRule | None:
    """Returns the rule of a resource scope, None for a non-resource scope.

    Raises ScopeSyntaxError for something that looks like a resource scope but is malformed.
    """
    raw = text[len(SCOPE_URI_PREFIX) :] if text.startswith(SCOPE_URI_PREFIX) else text
    head = raw.split("/", 1)[0]
    if head not in ("patient", "user", "system"):
        return None
    if raw in ("patient", "user", "system") or raw.startswith("launch"):
        return None
    match = _RESOURCE_SCOPE.match(raw)
    if match is None:
        raise ScopeSyntaxError(f"malformed resource scope {text!r}")
    perm = match.group("perm")
    is_v1 = perm in V1_SUFFIXES
    letters = V1_SUFFIXES[perm] if is_v1 else perm
    if not is_v1 and not _in_cruds_order(letters):
        raise ScopeSyntaxError(
            f"scope {text!r}: permissions must be a subset of 'cruds', in that order"
        )
    constraints: tuple[tuple[str, str], ...] = ()
    query = match.group("query")
    if query is not None:
        if is_v1:
            raise ScopeSyntaxError(f"scope {text!r}: v1 scopes take no search constraints")
        constraints = tuple(parse_qsl(query, keep_blank_values=False, strict_parsing=True))
    context: Context = match.group("context")  # type: ignore[assignment]  # regex group is one of three
    return ScopeRule(
        context=context,
        resource_type=match.group("type"),
        permissions=frozenset(letters),  # type: ignore[arg-type]  # checked against "cruds" above
        constraints=constraints,
        text=text,
        is_v1=is_v1,
    )


def _in_cruds_order(letters: str) -> bool:
    if not letters:
        return False
    position = -1
    for letter in letters:
        index = _V2_ORDER.find(letter)
        if index <= position:
            return False
        position = index
    return True


@dataclass(frozen=True, slots=True)
class ParsedScopes:
    rules: tuple[ScopeRule, ...]
    other: tuple[str, ...]
    #: Scopes we do not understand: dropped from a grant, and reported back in the granted `scope`.
    unknown: tuple[str, ...] = ()

    @property
    def has(self) -> frozenset[str]:
        return frozenset(self.other)


def parse_scopes(scope: str | Iterable[str] | None, *, strict: bool = False) -> ParsedScopes:
    """Splits a space-separated scope string. Malformed resource scopes are dropped (or raise if strict)."""
    items = scope.split() if isinstance(scope, str) else list(scope or ())
    rules: list[ScopeRule] = []
    other: list[str] = []
    unknown: list[str] = []
    for item in dict.fromkeys(items):
        try:
            rule = parse_scope(item)
        except ScopeSyntaxError:
            if strict:
                raise
            unknown.append(item)
            continue
        if rule is not None:
            rules.append(rule)
        elif item in CONTEXT_SCOPES or item.startswith("launch/"):
            other.append(item)
        else:
            unknown.append(item)
    return ParsedScopes(tuple(rules), tuple(other), tuple(unknown))


def narrow_scopes(requested: str | None, allowed: str | None) -> str:
    """The subset of `requested` that the registered `allowed` scopes cover (no escalation).

    A requested resource scope is granted only if one allowed rule covers it entirely; context
    scopes only if allowed literally. Order of the request is kept.
    """
    allowed_parsed = parse_scopes(allowed)
    granted: list[str] = []
    for item in (requested or "").split():
        try:
            rule = parse_scope(item)
        except ScopeSyntaxError:
            continue
        if rule is None:
            if item in allowed_parsed.other:
                granted.append(item)
            continue
        if any(rule.is_within(a) for a in allowed_parsed.rules):
            granted.append(item)
    return " ".join(dict.fromkeys(granted))


@dataclass(frozen=True, slots=True)
class SmartGrant:
    """What the caller of one request may do. Built from a verified token (or the development grant)."""

    scopes: tuple[str, ...]
    rules: tuple[ScopeRule, ...]
    client_id: str | None = None
    subject: str | None = None
    #: The launch patient's id (no "Patient/" prefix): every patient/ rule is confined to it.
    patient: str | None = None
    encounter: str | None = None
    fhir_user: str | None = None
    issuer: str | None = None
    token_id: str | None = None
    is_development: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_scope_string(cls, scope: str, **kwargs: object) -> SmartGrant:
        parsed = parse_scopes(scope)
        return cls(scopes=tuple(scope.split()), rules=parsed.rules, **kwargs)  # type: ignore[arg-type]  # kwargs are this dataclass's fields

    @classmethod
    def development(cls) -> SmartGrant:
        """All access, for a facade running with auth_required=false (logged loudly at start-up)."""
        rule = ScopeRule("system", "*", frozenset("cruds"), text="system/*.cruds")  # type: ignore[arg-type]  # literal letters
        return cls(
            scopes=("system/*.cruds",), rules=(rule,), client_id="development", is_development=True
        )

    def rules_for(self, interaction: Interaction, resource_type: str) -> tuple[ScopeRule, ...]:
        return tuple(r for r in self.rules if r.covers(interaction, resource_type))
