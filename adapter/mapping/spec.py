"""The schema of a mapping file (`mappings/**/*.yaml`), checked when it loads.

A mapping is data: which source fields become which FHIR elements, through which named transform
or ConceptMap. The engine knows no message type, column name or code; everything specific lives in
the file. A bad file raises ArtefactLoadError naming the file and the rule, so start-up stops.

    id, version, status, title
    source:    {kind: csv|json|hl7v2|fhir, messages: ["REF^I12"], resourceType: ReferralRequest,
                event_time: last_updated}                # extracts: the column ordering re-ingests
    ignore:    [{field: "MSH-11", reason: "..."}]        # still reported, as information
    settings:  {follow_up_due_days: 7}                    # named values rules may read as `setting:`
    resources: [{name, type, id: [selectors], match: {system, value}, when, foreach, where, rules}]
    rule:      {from|const|ref|setting|foreach|aggregate|due, to, transform, map, emit, required}

A selector may list alternatives, `a ?? b`: the first with a value is read (e.g. an identifier
that some senders put in `identifier[0]` and others in `id`). `due: <selector>` with `setting:
<name>` is a deadline: the selector's date/time plus the timescale the setting holds
(`{hours: 72}`, `{days: 7}`, `{working_days: 5}`), computed with the policy calendar.
`on_unmapped: keep` passes a code the ConceptMap does not list through unchanged (spelling maps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from adapter.errors import ArtefactLoadError

Emit = Literal["coding", "code", "codeableconcept", "display"]
EMITS: Final = ("coding", "code", "codeableconcept", "display")
SOURCE_KINDS: Final = ("csv", "json", "hl7v2", "fhir")
STATUSES: Final = ("draft", "active", "retired")


@dataclass(frozen=True, slots=True)
class Aggregate:
    """A value computed over list elements of an already-built resource, keyed by concept."""

    function: Literal["mean", "sum", "count"]
    resource: str
    items: str
    key: str
    value: str
    keys: tuple[str, ...]
    minimum: float | None = None
    maximum: float | None = None
    #: every key must be present with a value in range, else the output resource is not made
    require_all: bool = True


@dataclass(frozen=True, slots=True)
class Rule:
    locator: str
    to: str
    source: str | None = None
    const: Any = None
    ref: str | None = None
    setting: str | None = None
    transform: str | None = None
    map: str | None = None
    emit: Emit = "coding"
    required: bool = False
    on_unmapped: Literal["error", "warning", "keep"] = "error"
    group: str | None = None
    where: tuple[tuple[str, str], ...] = ()
    rules: tuple[Rule, ...] = ()
    aggregate: Aggregate | None = None
    #: `{value}` placeholders filled from the transformed value (e.g. "Patient?identifier={value}")
    template: str | None = None
    #: for a block (nested `rules` without `foreach`): build it only when this selector has a value
    when: str | None = None
    #: a deadline anchored on this selector's date/time, timescale from `setting`
    due: str | None = None

    @property
    def is_block(self) -> bool:
        return bool(self.rules) and self.group is None


@dataclass(frozen=True, slots=True)
class Match:
    """Conditional (find-or-create) identity: reuse the stored resource with this identifier."""

    system: str
    value: str


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    name: str
    type: str
    id_from: tuple[str, ...]
    rules: tuple[Rule, ...]
    match: Match | None = None
    when: str | None = None
    foreach: str | None = None
    where: tuple[tuple[str, str], ...] = ()
    #: (list path, key path, key values in order): sorts a list the order a definition requires,
    #: e.g. QuestionnaireResponse.item in Questionnaire order whatever order the source sent
    order: tuple[str, str, tuple[str, ...]] | None = None


@dataclass(frozen=True, slots=True)
class MappingSpec:
    id: str
    version: str
    status: str
    title: str
    source_kind: str
    resources: tuple[ResourceSpec, ...]
    messages: tuple[str, ...] = ()
    resource_type: str | None = None
    #: for a FHIR message Bundle: the MessageHeader event code this mapping answers
    event: str | None = None
    #: for an extract: the column holding when the source record last changed; its resources are
    #: stamped with it, so an older extract re-ingested later cannot overwrite a newer one
    #: (fhir/source_event.py). A v2 message's event time is always EVN-2, else MSH-7.
    event_time: str | None = None
    ignore: tuple[tuple[str, str], ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def rule_prefix(self) -> str:
        return f"{self.id}@{self.version}"


def _fail(path: str, where: str, reason: str) -> ArtefactLoadError:
    return ArtefactLoadError(path, f"{where}: {reason}")


def _pairs(raw: Any, path: str, where: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise _fail(path, where, "'where' must be a mapping of field -> value")
    return tuple((str(k), str(v)) for k, v in raw.items())


_RULE_KEYS: Final = frozenset(
    {
        "from",
        "to",
        "const",
        "ref",
        "setting",
        "transform",
        "map",
        "emit",
        "required",
        "on_unmapped",
        "foreach",
        "where",
        "rules",
        "aggregate",
        "template",
        "note",
        "when",
        "due",
    }
)


def _rule(raw: Any, path: str, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise _fail(path, where, "a rule is a mapping")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise _fail(path, where, f"unknown keys {sorted(unknown)}")
    to = raw.get("to")
    if not isinstance(to, str) or not to:
        raise _fail(path, where, "every rule needs 'to'")
    kinds = [k for k in ("from", "const", "ref", "setting", "foreach", "aggregate") if k in raw]
    if "due" in raw:
        if "setting" not in raw:
            raise _fail(path, where, "'due' needs 'setting' (the timescale)")
        kinds = ["due"] + [k for k in kinds if k != "setting"]
    if not kinds and raw.get("rules"):
        kinds = ["block"]
    if len(kinds) != 1:
        raise _fail(
            path,
            where,
            f"a rule has exactly one of from/const/ref/setting/foreach/aggregate/rules, "
            f"got {kinds}",
        )
    if raw.get("on_unmapped", "error") not in ("error", "warning", "keep"):
        raise _fail(path, where, "on_unmapped must be error, warning or keep")
    emit = raw.get("emit", "coding")
    if emit not in EMITS:
        raise _fail(path, where, f"emit must be one of {EMITS}")
    aggregate = None
    if "aggregate" in raw:
        a = raw["aggregate"]
        if not isinstance(a, dict) or a.get("function") not in ("mean", "sum", "count"):
            raise _fail(path, where, "aggregate needs function mean|sum|count")
        try:
            aggregate = Aggregate(
                function=a["function"],
                resource=str(a["resource"]),
                items=str(a["items"]),
                key=str(a["key"]),
                value=str(a["value"]),
                keys=tuple(str(k) for k in a["keys"]),
                minimum=a.get("minimum"),
                maximum=a.get("maximum"),
                require_all=bool(a.get("require_all", True)),
            )
        except KeyError as exc:
            raise _fail(path, where, f"aggregate lacks {exc}") from exc
    sub = raw.get("rules") or ()
    if "foreach" in raw and not sub:
        raise _fail(path, where, "foreach needs rules")
    return Rule(
        locator=where,
        to=to,
        source=raw.get("from"),
        const=raw.get("const"),
        ref=raw.get("ref"),
        setting=raw.get("setting"),
        transform=raw.get("transform"),
        map=raw.get("map"),
        emit=emit,
        required=bool(raw.get("required", False)),
        on_unmapped=raw.get("on_unmapped", "error"),
        group=raw.get("foreach"),
        where=_pairs(raw.get("where"), path, where),
        rules=tuple(_rule(r, path, f"{where}.rules[{i}]") for i, r in enumerate(sub)),
        aggregate=aggregate,
        template=raw.get("template"),
        when=raw.get("when"),
        due=raw.get("due"),
    )


def parse_spec(data: Any, path: str) -> MappingSpec:
    if not isinstance(data, dict):
        raise ArtefactLoadError(path, "a mapping file is a YAML mapping")
    for key in ("id", "version", "status", "source", "resources"):
        if key not in data:
            raise ArtefactLoadError(path, f"missing '{key}'")
    if data["status"] not in STATUSES:
        raise ArtefactLoadError(path, f"status must be one of {STATUSES}")
    source = data["source"]
    if not isinstance(source, dict) or source.get("kind") not in SOURCE_KINDS:
        raise ArtefactLoadError(path, f"source.kind must be one of {SOURCE_KINDS}")
    resources: list[ResourceSpec] = []
    names: set[str] = set()
    for i, r in enumerate(data["resources"] or []):
        where = f"resources[{i}]"
        if not isinstance(r, dict) or not r.get("name") or not r.get("type"):
            raise ArtefactLoadError(path, f"{where}: needs name and type")
        name = str(r["name"])
        if name in names:
            raise ArtefactLoadError(path, f"{where}: duplicate resource name {name}")
        names.add(name)
        match = None
        if "match" in r:
            m = r["match"]
            if not isinstance(m, dict) or "system" not in m or "value" not in m:
                raise ArtefactLoadError(path, f"{where}.match: needs system and value")
            match = Match(str(m["system"]), str(m["value"]))
        id_from = tuple(str(x) for x in (r.get("id") or ()))
        if not id_from and match is None:
            raise ArtefactLoadError(
                path, f"{where}: needs 'id' (business identifier fields) or 'match'"
            )
        order = None
        if "order" in r:
            o = r["order"]
            if not isinstance(o, dict) or not {"path", "key", "values"} <= set(o):
                raise ArtefactLoadError(path, f"{where}.order: needs path, key and values")
            order = (str(o["path"]), str(o["key"]), tuple(str(v) for v in o["values"]))
        resources.append(
            ResourceSpec(
                name=name,
                type=str(r["type"]),
                id_from=id_from,
                match=match,
                when=r.get("when"),
                foreach=r.get("foreach"),
                where=_pairs(r.get("where"), path, where),
                order=order,
                rules=tuple(
                    _rule(x, path, f"{name}.rules[{j}]") for j, x in enumerate(r.get("rules") or ())
                ),
            )
        )
    for res in resources:
        for rule in _walk(res.rules):
            if rule.ref is not None and rule.ref not in names:
                raise ArtefactLoadError(
                    path, f"{rule.locator}: ref to unknown resource '{rule.ref}'"
                )
            if rule.aggregate is not None and rule.aggregate.resource not in names:
                raise ArtefactLoadError(path, f"{rule.locator}: aggregate over unknown resource")
    ignore = tuple((str(x["field"]), str(x.get("reason", ""))) for x in data.get("ignore") or ())
    messages = source.get("messages") or ([source["message"]] if "message" in source else [])
    event_time = source.get("event_time")
    if event_time is not None and (source.get("kind") not in ("csv", "json") or not event_time):
        raise ArtefactLoadError(
            path, "source.event_time: only for csv/json extracts (v2 uses EVN-2, else MSH-7)"
        )
    return MappingSpec(
        id=str(data["id"]),
        version=str(data["version"]),
        status=str(data["status"]),
        title=str(data.get("title", data["id"])),
        source_kind=str(source["kind"]),
        resources=tuple(resources),
        messages=tuple(str(m) for m in messages),
        resource_type=source.get("resourceType"),
        event=source.get("event"),
        event_time=str(event_time) if event_time is not None else None,
        ignore=ignore,
        settings=dict(data.get("settings") or {}),
        path=path,
    )


def _walk(rules: tuple[Rule, ...]) -> list[Rule]:
    out: list[Rule] = []
    for rule in rules:
        out.append(rule)
        out += _walk(rule.rules)
    return out


def walk_rules(spec: MappingSpec) -> list[Rule]:
    return [r for res in spec.resources for r in _walk(res.rules)]
