"""What the QuestionnaireResponse check (questionnaire.py) derives once per Questionnaire item.

An `ItemPlan` holds what the check reads of one item: the answer[x] types it takes, its
answerOptions (`Options`), required, repeats, whether enableWhen applies, the occurrence limits and
whether an answer limit (answerlimits.py) can report. `answer_problem` judges one answer's type and
option from the plan alone, the check's fast path. A `QuestionnaireIndex` keeps the plans, the
items' extensions by url and each item list's linkIds, keyed by id(), for as long as the
Questionnaire lives unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from adapter.fhir.types import JsonObject, JsonValue

EXT: Final = "http://hl7.org/fhir/StructureDefinition/"
SDC: Final = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
#: item.type -> the answer[x] property names allowed.
ANSWER_TYPES: Final[dict[str, tuple[str, ...]]] = {
    "boolean": ("valueBoolean",),
    "decimal": ("valueDecimal",),
    "integer": ("valueInteger",),
    "date": ("valueDate",),
    "dateTime": ("valueDateTime",),
    "time": ("valueTime",),
    "string": ("valueString",),
    "text": ("valueString",),
    "url": ("valueUri",),
    "choice": ("valueCoding", "valueString", "valueInteger", "valueDate", "valueTime"),
    "open-choice": ("valueCoding", "valueString"),
    "attachment": ("valueAttachment",),
    "reference": ("valueReference",),
    "quantity": ("valueQuantity",),
}
NONE: Final[list[JsonValue]] = []  # shared and never mutated: "no such extension"
NO_ITEMS: Final[tuple[JsonValue, ...]] = ()  # shared: "no items", so its id() is stable
#: The extensions answerlimits.py reads (with maxLength, the only things that make it report).
LIMIT_EXTENSIONS: Final = frozenset(
    [
        EXT + name
        for name in (
            "minValue",
            "maxValue",
            "minLength",
            "regex",
            "maxDecimalPlaces",
            "mimeType",
            "maxSize",
            "questionnaire-referenceResource",
            "questionnaire-unitOption",
            "questionnaire-unitValueSet",
        )
    ]
    + [SDC + "sdc-questionnaire-minQuantity", SDC + "sdc-questionnaire-maxQuantity"]
)


def extension_values(item: JsonObject, name: str, base: str = EXT) -> list[JsonValue]:
    url = base + name
    out: list[JsonValue] = []
    for e in item.get("extension") or []:
        if isinstance(e, dict) and e.get("url") == url:
            out.extend(v for k, v in e.items() if k.startswith("value"))
    return out


def extension_index(item: JsonObject) -> dict[str, list[JsonValue]]:
    """url -> values of the item's extensions, as `extension_values` gives them for each url."""
    out: dict[str, list[JsonValue]] = {}
    for e in item.get("extension") or []:
        if isinstance(e, dict):
            url = e.get("url")
            if isinstance(url, str):
                values = out.setdefault(url, [])
                values.extend(v for k, v in e.items() if k.startswith("value"))
    return out


def answer_value(answer: JsonObject) -> tuple[str, JsonValue] | None:
    for k, v in answer.items():
        if k.startswith("value"):
            return k, v
    return None


def same_coding(a: JsonValue, b: JsonValue) -> bool:
    return (
        isinstance(a, dict)
        and isinstance(b, dict)
        and a.get("code") == b.get("code")
        and (a.get("system") == b.get("system") or not b.get("system"))
    )


class QuestionnaireIndex:
    """What the checker derives from a Questionnaire's items (extensions by url, an `ItemPlan`)
    keyed by id(item), and each item list's linkIds and required items keyed by id(list). One per
    call, or kept with a Questionnaire that lives as long as the process and is never changed
    (profiles/questionnaires/), so it is derived once."""

    __slots__ = ("extensions", "links", "plans")

    def __init__(self) -> None:
        self.extensions: dict[int, dict[str, list[JsonValue]]] = {}
        self.plans: dict[int, ItemPlan] = {}
        self.links: dict[int, Links] = {}


#: An item list's {linkId: (position, item)} and its required items as (linkId, item).
Links = tuple[dict[str, tuple[int, JsonObject]], tuple[tuple[str, JsonObject], ...]]


def item_links(q_items: Sequence[JsonValue]) -> Links:
    linked = [
        (i, q)
        for i, q in enumerate(q_items)
        if isinstance(q, dict) and isinstance(q.get("linkId"), str)
    ]
    return (
        {q["linkId"]: (i, q) for i, q in linked},
        tuple((q["linkId"], q) for _, q in linked if q.get("required")),
    )


class ItemPlan:
    """What the checker's `_item` and `_answer` read of one Questionnaire item, as they read it."""

    __slots__ = (
        "allowed",
        "conditional",
        "limited",
        "max_occurs",
        "min_occurs",
        "open_choice",
        "options",
        "quick",
        "repeats",
        "required",
        "type",
    )

    def __init__(
        self,
        q: JsonObject,
        min_occurs: list[JsonValue],
        max_occurs: list[JsonValue],
        options: Options | None,
        limited: bool,
    ) -> None:
        self.type = q.get("type")
        self.allowed = ANSWER_TYPES.get(str(self.type))
        self.open_choice = self.type == "open-choice"
        self.required = bool(q.get("required"))
        self.repeats = bool(q.get("repeats"))
        self.conditional = bool(q.get("enableWhen"))  # otherwise the item is enabled
        self.min_occurs = min_occurs
        self.max_occurs = max_occurs
        self.options = options
        self.limited = limited  # whether `limit_issues` can report anything
        #: One answer without sub-items is then judged by `answer_problem` alone (see `_items`).
        self.quick = (
            self.type not in ("question", "display", "group")
            and not self.conditional
            and not min_occurs
            and not max_occurs
            and not limited
        )


class Options:
    """The values of an item's answerOptions, and the same as a set when all are hashable
    (membership then answers as `==` over the list does: hashing agrees with equality)."""

    __slots__ = ("as_set", "values")

    def __init__(self, values: list[JsonValue]) -> None:
        self.values = values
        self.as_set: frozenset[JsonValue] | None = None
        if not any(isinstance(v, (dict, list)) for v in values):
            try:
                self.as_set = frozenset(values)
            except TypeError:  # an unhashable value (none from JSON): the list answers alone
                self.as_set = None


def build_item_plan(q: JsonObject, extensions: dict[str, list[JsonValue]]) -> ItemPlan:
    """`extensions`: the item's `extension_index`, or an empty dict when it has no extension."""
    option_items = [o for o in q.get("answerOption") or [] if isinstance(o, dict)]
    options = (
        Options([v for o in option_items for k, v in o.items() if k.startswith("value")])
        if option_items and "answerOption" in q
        else None
    )
    limited = "maxLength" in q or not LIMIT_EXTENSIONS.isdisjoint(extensions)
    return ItemPlan(
        q,
        extensions.get(EXT + "questionnaire-minOccurs", NONE),
        extensions.get(EXT + "questionnaire-maxOccurs", NONE),
        options,
        limited,
    )


def answer_problem(plan: ItemPlan, key: str, value: JsonValue) -> tuple[str, str] | None:
    """(issue code, text) when answer `key: value` is of a type the item does not take (code
    "structure") or not one of its answerOptions (code "code-invalid"), else None."""
    allowed = plan.allowed
    if allowed is not None and key not in allowed:
        return ("structure", f"Answer value must be of type {allowed[0][5:]} not {key[5:]}")
    options = plan.options
    if options is not None and not (plan.open_choice and key == "valueString"):
        if key == "valueCoding":
            ok = any(same_coding(value, o) for o in options.values)
        elif options.as_set is not None and not isinstance(value, (dict, list)):
            ok = value in options.as_set
        else:
            ok = any(value == o for o in options.values)
        if not ok:
            return ("code-invalid", "The answer is not in the set of permitted values")
    return None
