"""Search parameters of the embedded store: which elements feed each parameter, and parsing of values.

`SEARCH_PARAMETERS` is the declarative table (resource type -> parameter -> element paths). On every
write, `extract_index_rows` turns a resource into the rows of the `search_index` table; on every
search, the `parse_*` functions turn query strings into match criteria. The SQL lives in `sql.py`.

Identifier systems are normalised with `canonical_system` on both sides, so a legacy spelling of the
NHS number system finds the same Patient.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final, Literal, cast

from adapter.errors import InputError
from adapter.fhir.identifiers import canonical_system
from adapter.fhir.references import parse_reference
from adapter.fhir.types import JsonObject, JsonValue
from adapter.issue import Issue

ParamKind = Literal["token", "reference"]


@dataclass(frozen=True, slots=True)
class ParamDefinition:
    """One search parameter of one resource type.

    `paths` are dotted element paths (lists are walked through). For references, `target_type`
    keeps only references to that type, and `untyped_target` is the type assumed for a logical
    reference that names no type (set only where the element can point at one type alone).
    """

    kind: ParamKind
    paths: tuple[str, ...]
    target_type: str | None = None
    untyped_target: str | None = None


def _token(*paths: str) -> ParamDefinition:
    return ParamDefinition("token", paths)


def _reference(
    *paths: str, target: str | None = None, untyped: str | None = None
) -> ParamDefinition:
    return ParamDefinition("reference", paths, target, untyped)


_IDENTIFIER: Final = _token("identifier")
_STATUS: Final = _token("status")
_SUBJECT: Final = _reference("subject")
_PATIENT_VIA_SUBJECT: Final = _reference("subject", target="Patient")

#: resource type -> search parameter -> definition (R4 search parameters, plus `status` wherever the
#: resource has a `status` element). `_id` and `_lastUpdated` apply to every type; see `sql.py`.
SEARCH_PARAMETERS: Final[Mapping[str, Mapping[str, ParamDefinition]]] = {
    "Patient": {"identifier": _IDENTIFIER},
    "Practitioner": {"identifier": _IDENTIFIER},
    "Organization": {"identifier": _IDENTIFIER},
    "PractitionerRole": {
        "identifier": _IDENTIFIER,
        "practitioner": _reference("practitioner", target="Practitioner", untyped="Practitioner"),
        "organization": _reference("organization", target="Organization", untyped="Organization"),
    },
    "ServiceRequest": {
        "identifier": _IDENTIFIER,
        "status": _STATUS,
        "subject": _SUBJECT,
        "patient": _PATIENT_VIA_SUBJECT,
    },
    "CarePlan": {
        "identifier": _IDENTIFIER,
        "status": _STATUS,
        "subject": _SUBJECT,
        "patient": _PATIENT_VIA_SUBJECT,
    },
    "CareTeam": {
        "identifier": _IDENTIFIER,
        "status": _STATUS,
        "subject": _SUBJECT,
        "patient": _PATIENT_VIA_SUBJECT,
    },
    "Goal": {
        "identifier": _IDENTIFIER,
        "lifecycle-status": _token("lifecycleStatus"),
        "subject": _SUBJECT,
        "patient": _PATIENT_VIA_SUBJECT,
    },
    "Encounter": {
        "identifier": _IDENTIFIER,
        "status": _STATUS,
        "subject": _SUBJECT,
        "patient": _PATIENT_VIA_SUBJECT,
    },
    "EpisodeOfCare": {
        "identifier": _IDENTIFIER,
        "status": _STATUS,
        "patient": _reference("patient", target="Patient", untyped="Patient"),
    },
    "Observation": {
        "identifier": _IDENTIFIER,
        "status": _STATUS,
        "subject": _SUBJECT,
        "patient": _PATIENT_VIA_SUBJECT,
    },
    "Questionnaire": {"identifier": _IDENTIFIER, "status": _STATUS},
    "QuestionnaireResponse": {
        "identifier": _IDENTIFIER,
        "status": _STATUS,
        "subject": _SUBJECT,
        "patient": _PATIENT_VIA_SUBJECT,
    },
    "RiskAssessment": {
        "identifier": _IDENTIFIER,
        "status": _STATUS,
        "subject": _SUBJECT,
        "patient": _PATIENT_VIA_SUBJECT,
    },
    "Flag": {
        "identifier": _IDENTIFIER,
        "status": _STATUS,
        "subject": _SUBJECT,
        "patient": _PATIENT_VIA_SUBJECT,
    },
    "Composition": {
        "identifier": _IDENTIFIER,
        "status": _STATUS,
        "subject": _SUBJECT,
        "patient": _PATIENT_VIA_SUBJECT,
    },
    "DocumentReference": {
        "identifier": _token("masterIdentifier", "identifier"),
        "status": _STATUS,
        "subject": _SUBJECT,
        "patient": _PATIENT_VIA_SUBJECT,
    },
    "Task": {
        "identifier": _IDENTIFIER,
        "status": _STATUS,
        "subject": _reference("for"),
        "patient": _reference("for", target="Patient"),
    },
    "Provenance": {
        "target": _reference("target"),
        "patient": _reference("target", target="Patient"),
    },
    "AuditEvent": {
        "entity": _reference("entity.what"),
        "patient": _reference("agent.who", "entity.what", target="Patient"),
    },
    "Consent": {
        "identifier": _IDENTIFIER,
        "status": _STATUS,
        "patient": _reference("patient", target="Patient", untyped="Patient"),
    },
    "Condition": {
        "identifier": _IDENTIFIER,
        "clinical-status": _token("clinicalStatus"),
        "subject": _SUBJECT,
        "patient": _PATIENT_VIA_SUBJECT,
    },
}

#: Parameters every resource type has, answered from `resource_current`.
RESOURCE_PARAMS: Final = ("_id", "_lastUpdated")


def supported_params(resource_type: str) -> tuple[str, ...]:
    return RESOURCE_PARAMS + tuple(sorted(SEARCH_PARAMETERS.get(resource_type, {})))


def param_definition(resource_type: str, name: str) -> ParamDefinition | None:
    return SEARCH_PARAMETERS.get(resource_type, {}).get(name)


# --- extraction (write side) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One row of `search_index` without the owning resource's keys."""

    param: str
    system: str | None = None
    value: str | None = None
    ref_type: str | None = None
    ref_id: str | None = None


def _walk(node: JsonValue, path: str) -> Iterator[JsonValue]:
    head, _, rest = path.partition(".")
    child = node.get(head) if isinstance(node, dict) else None
    for item in child if isinstance(child, list) else [child]:
        if item is None:
            continue
        if rest:
            yield from _walk(item, rest)
        else:
            yield item


def _tokens(param: str, value: JsonValue) -> Iterator[IndexEntry]:
    if isinstance(value, str):  # code
        yield IndexEntry(param, None, value)
    elif isinstance(value, dict):
        if isinstance(value.get("coding"), list):  # CodeableConcept
            for coding in value["coding"]:
                yield from _tokens(param, coding)
            return
        system = value.get("system")
        code = value.get("value", value.get("code"))  # Identifier, or Coding
        if isinstance(code, str) or isinstance(system, str):
            yield IndexEntry(
                param,
                canonical_system(system) if isinstance(system, str) else None,
                code if isinstance(code, str) else None,
            )


def _references(param: str, definition: ParamDefinition, value: JsonValue) -> Iterator[IndexEntry]:
    if not isinstance(value, dict):
        return
    ref_type: str | None = None
    ref_id: str | None = None
    reference = value.get("reference")
    if isinstance(reference, str):
        parsed = parse_reference(reference)
        if parsed.kind in ("relative", "absolute"):
            ref_type, ref_id = parsed.resource_type, parsed.id
    declared_type = value.get("type")
    if ref_type is None and isinstance(declared_type, str):
        ref_type = declared_type
    if ref_type is None:
        ref_type = definition.untyped_target
    if definition.target_type is not None and ref_type != definition.target_type:
        return
    identifier = value.get("identifier")
    system = value_ = None
    if isinstance(identifier, dict):
        raw_system, raw_value = identifier.get("system"), identifier.get("value")
        system = canonical_system(raw_system) if isinstance(raw_system, str) else None
        value_ = raw_value if isinstance(raw_value, str) else None
    if ref_id is not None or value_ is not None:
        yield IndexEntry(param, system, value_, ref_type, ref_id)


def extract_index_entries(resource: JsonObject) -> list[IndexEntry]:
    """The search index entries of one resource, without duplicates, in a stable order."""
    definitions = SEARCH_PARAMETERS.get(str(resource.get("resourceType")), {})
    entries: dict[IndexEntry, None] = {}
    for param, definition in definitions.items():
        for path in definition.paths:
            for value in _walk(resource, path):
                found = (
                    _tokens(param, value)
                    if definition.kind == "token"
                    else _references(param, definition, value)
                )
                entries.update(dict.fromkeys(found))
    return list(entries)


# --- query values (read side) ---------------------------------------------------------------


def _bad_value(param: str, text: str) -> InputError:
    return InputError([Issue("error", "value", text, expression=param)])


@dataclass(frozen=True, slots=True)
class TokenCriterion:
    """`system|value`, `|value` (no system), `system|` (any value) or `value` (any system)."""

    system: str | None
    value: str | None
    has_system: bool
    require_no_system: bool = False


def parse_token(param: str, raw: str) -> TokenCriterion:
    if raw == "":
        raise _bad_value(param, f"Search parameter '{param}' has an empty value")
    if "|" not in raw:
        return TokenCriterion(None, raw, has_system=False)
    system, _, value = raw.partition("|")
    if system == "":
        if value == "":
            raise _bad_value(param, f"Search parameter '{param}' has an empty value")
        return TokenCriterion(None, value, has_system=False, require_no_system=True)
    return TokenCriterion(canonical_system(system), value or None, has_system=True)


@dataclass(frozen=True, slots=True)
class ReferenceCriterion:
    ref_type: str | None
    ref_id: str


def parse_reference_value(param: str, raw: str, type_modifier: str | None) -> ReferenceCriterion:
    """`Patient/123`, `123`, or an absolute URL ending in `Patient/123` (the base is not compared)."""
    parsed = parse_reference(raw)
    if parsed.kind in ("relative", "absolute") and parsed.id is not None:
        if type_modifier is not None and parsed.resource_type != type_modifier:
            raise _bad_value(
                param, f"Search parameter '{param}:{type_modifier}' names another type"
            )
        return ReferenceCriterion(parsed.resource_type, parsed.id)
    if re.fullmatch(r"[A-Za-z0-9\-\.]{1,64}", raw):
        return ReferenceCriterion(type_modifier, raw)
    raise _bad_value(param, f"Search parameter '{param}' has a value that is not a reference")


DatePrefix = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]
_PREFIXES: Final[frozenset[str]] = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"})
_DATE_RE: Final = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d{1,9})?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


@dataclass(frozen=True, slots=True)
class DateCriterion:
    """The search value as the half-open UTC range [start, end) its precision implies."""

    prefix: DatePrefix
    start: datetime
    end: datetime


def _add_months(moment: datetime, months: int) -> datetime:
    total = moment.year * 12 + moment.month - 1 + months
    return moment.replace(year=total // 12, month=total % 12 + 1)


def parse_date(param: str, raw: str) -> DateCriterion:
    """Partial dates (`2026`, `2026-11`, `2026-11-26`) and instants. No zone means UTC."""
    has_prefix = raw[:2] in _PREFIXES
    prefix = cast(DatePrefix, raw[:2] if has_prefix else "eq")
    text = raw[2:] if has_prefix else raw
    match = _DATE_RE.match(text)
    if match is None:
        raise _bad_value(param, f"Search parameter '{param}' has a value that is not a FHIR date")
    parts = match.groupdict()
    try:
        zone = UTC
        if parts["tz"] not in (None, "Z"):
            sign = 1 if parts["tz"][0] == "+" else -1
            hours, minutes = int(parts["tz"][1:3]), int(parts["tz"][4:6])
            zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
        fraction = parts["f"] or ""
        start = datetime(
            int(parts["y"]),
            int(parts["m"] or 1),
            int(parts["d"] or 1),
            int(parts["H"] or 0),
            int(parts["M"] or 0),
            int(parts["S"] or 0),
            int((fraction[1:] + "000000")[:6]) if fraction else 0,
            tzinfo=zone,
        )
    except ValueError as exc:
        raise _bad_value(param, f"Search parameter '{param}' has an impossible date") from exc
    if parts["m"] is None:
        end = _add_months(start, 12)
    elif parts["d"] is None:
        end = _add_months(start, 1)
    elif parts["H"] is None:
        end = start + timedelta(days=1)
    elif parts["S"] is None:
        end = start + timedelta(minutes=1)
    elif not fraction:
        end = start + timedelta(seconds=1)
    else:
        end = start + timedelta(microseconds=10 ** max(0, 6 - (len(fraction) - 1)))
    return DateCriterion(prefix, start.astimezone(UTC), end.astimezone(UTC))
