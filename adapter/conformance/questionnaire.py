"""QuestionnaireResponse against its Questionnaire: linkIds, order, answer types, required items,
repeats, enableWhen, answerOption membership and the core item extensions (minValue, maxValue,
minLength, regex, maxDecimalPlaces, minOccurs, maxOccurs, mimeType, maxSize, referenceResource).

This is how DIALOG responses are checked. Finding the Questionnaire is the caller's job
(`validator.py` looks in the Bundle, contained resources, profiles/questionnaires/ and lookup hooks).
Texts name linkIds and limits, never answer values: answers may be patient data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Final

from adapter.conformance import ucum
from adapter.conformance.terminology import KnownArtefacts
from adapter.fhir.references import parse_reference
from adapter.fhir.types import JsonObject, JsonValue
from adapter.issue import Issue

QuestionnaireLookup = Callable[[str], JsonObject | None]

_EXT: Final = "http://hl7.org/fhir/StructureDefinition/"
_SDC: Final = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
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
_NONE: Final[list[JsonValue]] = []  # shared and never mutated: "no such extension"
_NO_ITEMS: Final[tuple[JsonValue, ...]] = ()  # shared: "no items", so its id() is stable
#: The extensions `_limits` reads (with maxLength, the only things that make it report).
_LIMIT_EXTENSIONS: Final = frozenset(
    [
        _EXT + name
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
    + [_SDC + "sdc-questionnaire-minQuantity", _SDC + "sdc-questionnaire-maxQuantity"]
)
_COMPARABLE: Final = ("valueInteger", "valueDecimal", "valueDate", "valueDateTime", "valueTime")


def _ext(item: JsonObject, name: str, base: str = _EXT) -> list[JsonValue]:
    url = base + name
    out: list[JsonValue] = []
    for e in item.get("extension") or []:
        if isinstance(e, dict) and e.get("url") == url:
            out.extend(v for k, v in e.items() if k.startswith("value"))
    return out


def _extension_index(item: JsonObject) -> dict[str, list[JsonValue]]:
    """url -> values of the item's extensions, as `_ext` gives them for each url."""
    out: dict[str, list[JsonValue]] = {}
    for e in item.get("extension") or []:
        if isinstance(e, dict):
            url = e.get("url")
            if isinstance(url, str):
                values = out.setdefault(url, [])
                values.extend(v for k, v in e.items() if k.startswith("value"))
    return out


def _answer_value(answer: JsonObject) -> tuple[str, JsonValue] | None:
    for k, v in answer.items():
        if k.startswith("value"):
            return k, v
    return None


def _same_coding(a: JsonValue, b: JsonValue) -> bool:
    return (
        isinstance(a, dict)
        and isinstance(b, dict)
        and a.get("code") == b.get("code")
        and (a.get("system") == b.get("system") or not b.get("system"))
    )


class QuestionnaireIndex:
    """What the checker derives from a Questionnaire's items (extensions by url, an `_ItemPlan`)
    keyed by id(item), and each item list's linkIds and required items keyed by id(list). One per
    call, or kept with a Questionnaire that lives as long as the process and is never changed
    (profiles/questionnaires/), so it is derived once."""

    __slots__ = ("extensions", "links", "plans")

    def __init__(self) -> None:
        self.extensions: dict[int, dict[str, list[JsonValue]]] = {}
        self.plans: dict[int, _ItemPlan] = {}
        self.links: dict[int, _Links] = {}


#: An item list's {linkId: (position, item)} and its required items as (linkId, item).
_Links = tuple[dict[str, tuple[int, JsonObject]], tuple[tuple[str, JsonObject], ...]]


class _ItemPlan:
    """What `_item` and `_answer` read of one Questionnaire item, as they would read it."""

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
        options: _Options | None,
        limited: bool,
    ) -> None:
        self.type = q.get("type")
        self.allowed = ANSWER_TYPES.get(str(self.type))
        self.open_choice = self.type == "open-choice"
        self.required = bool(q.get("required"))
        self.repeats = bool(q.get("repeats"))
        self.conditional = bool(q.get("enableWhen"))  # otherwise `_enabled` is True
        self.min_occurs = min_occurs
        self.max_occurs = max_occurs
        self.options = options
        self.limited = limited  # whether `_limits` can report anything
        #: One answer without sub-items is then judged by `_answer_problem` alone (see `_items`).
        self.quick = (
            self.type not in ("question", "display", "group")
            and not self.conditional
            and not min_occurs
            and not max_occurs
            and not limited
        )


class _Options:
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


class QuestionnaireChecker:
    """Checks one QuestionnaireResponse against one Questionnaire."""

    def __init__(
        self,
        questionnaire: JsonObject,
        response: JsonObject,
        known: KnownArtefacts | None = None,
        index: QuestionnaireIndex | None = None,
    ) -> None:
        self.known = known
        self.q = questionnaire
        self.qr = response
        self.issues: list[Issue] = []
        self.in_progress = response.get("status") in ("in-progress", "stopped", "entered-in-error")
        #: The response's answers by linkId, for enableWhen: built on the first condition.
        self._answers_by_link: dict[str, list[JsonObject]] | None = None
        index = index if index is not None else QuestionnaireIndex()
        self._ext_index = index.extensions
        self._plans = index.plans
        self._links = index.links

    def _ext(self, q: JsonObject, name: str, base: str = _EXT) -> list[JsonValue]:
        """As module-level `_ext`, indexed once per Questionnaire item for this response."""
        if "extension" not in q:
            return _NONE
        return self._ext_of(q).get(base + name, _NONE)

    def _ext_of(self, q: JsonObject) -> dict[str, list[JsonValue]]:
        index = self._ext_index.get(id(q))
        if index is None:
            index = self._ext_index[id(q)] = _extension_index(q)
        return index

    def _index_answers(self, items: Sequence[JsonValue], out: dict[str, list[JsonObject]]) -> None:
        for it in items:
            if not isinstance(it, dict):
                continue
            link = it.get("linkId")
            for a in it.get("answer") or _NO_ITEMS:
                if isinstance(a, dict) and isinstance(link, str):
                    out.setdefault(link, []).append(a)
                    if "item" in a:
                        self._index_answers(a["item"] or _NO_ITEMS, out)
            if "item" in it:
                self._index_answers(it["item"] or _NO_ITEMS, out)

    def _plan(self, q: JsonObject) -> _ItemPlan:
        """The item's plan, derived on its first answer."""
        plan = self._plans.get(id(q))
        if plan is not None:
            return plan
        option_items = [o for o in q.get("answerOption") or [] if isinstance(o, dict)]
        options = (
            _Options([v for o in option_items for k, v in o.items() if k.startswith("value")])
            if option_items and "answerOption" in q
            else None
        )
        limited = "maxLength" in q or (
            "extension" in q and not _LIMIT_EXTENSIONS.isdisjoint(self._ext_of(q))
        )
        plan = _ItemPlan(
            q,
            self._ext(q, "questionnaire-minOccurs"),
            self._ext(q, "questionnaire-maxOccurs"),
            options,
            limited,
        )
        self._plans[id(q)] = plan
        return plan

    def run(self) -> list[Issue]:
        self._items(
            self.q.get("item") or _NO_ITEMS, self.qr.get("item") or [], "QuestionnaireResponse"
        )
        return self.issues

    def _error(self, code: str, text: str, expression: str) -> None:
        self.issues.append(Issue("error", code, text, expression))  # type: ignore[arg-type]  # codes below are IssueCode literals

    def _items(self, q_items: Sequence[JsonValue], r_items: Sequence[JsonValue], path: str) -> None:
        """`q_items` is a list of the Questionnaire (or `_NO_ITEMS`), never a temporary: its
        linkIds are indexed by id()."""
        links = self._links.get(id(q_items))
        if links is None:
            linked = [
                (i, q)
                for i, q in enumerate(q_items)
                if isinstance(q, dict) and isinstance(q.get("linkId"), str)
            ]
            links = self._links[id(q_items)] = (
                {q["linkId"]: (i, q) for i, q in linked},
                tuple((q["linkId"], q) for _, q in linked if q.get("required")),
            )
        q_by_link, required = links
        last_index = -1
        seen: dict[str, int] = {}
        plans = self._plans
        for i, r in enumerate(r_items):
            if not isinstance(r, dict):
                continue
            link = r.get("linkId")
            hit = q_by_link.get(link) if isinstance(link, str) else None
            if hit is None or not isinstance(link, str):
                self._error(
                    "structure", f"LinkId '{link}' not found in questionnaire", f"{path}.item[{i}]"
                )
                continue
            index, q = hit
            if index < last_index:
                self._error(
                    "structure", "Structural Error: items are out of order", f"{path}.item[{i}]"
                )
            last_index = index
            count = seen[link] = seen.get(link, 0) + 1
            if count > 1 and not q.get("repeats"):
                self._error(
                    "structure",
                    "Only one response item with this linkId allowed",
                    f"{path}.item[{i}]",
                )
            plan = plans.get(id(q)) or self._plan(q)  # derived on the item's first response
            if plan.quick and "item" not in r:
                # The common case, one answer and nothing nested: of `_item`'s checks only the
                # answer's type and option can report (no type rule, enableWhen, occurrence or
                # answer limit, repeat or sub-item to break), and the path is built for an issue.
                answers = r.get("answer")
                if type(answers) is list and len(answers) == 1:
                    a = answers[0]
                    if type(a) is dict and "item" not in a:
                        got = _answer_value(a)
                        problem = _answer_problem(plan, *got) if got is not None else None
                        if problem is not None:
                            self._error(*problem, f"{path}.item[{i}].answer[0]")
                        continue
            self._item(q, plan, r, f"{path}.item[{i}]")
        for link, q in required:
            if link not in seen and self._enabled(q) and not self.in_progress:
                self._error(
                    "required", f"No response answer found for required item '{link}'", path
                )

    def _enabled(self, q: JsonObject) -> bool:
        if not q.get("enableWhen"):
            return True
        conditions = [c for c in q["enableWhen"] if isinstance(c, dict)]
        if not conditions:
            return True
        results = [self._condition(c) for c in conditions]
        if q.get("enableBehavior") == "any":
            return any(results)
        return all(results)

    def _condition(self, cond: JsonObject) -> bool:
        if self._answers_by_link is None:
            self._answers_by_link = {}
            self._index_answers(self.qr.get("item") or _NO_ITEMS, self._answers_by_link)
        answers = self._answers_by_link.get(str(cond.get("question")), [])
        op = cond.get("operator")
        expected = next((v for k, v in cond.items() if k.startswith("answer")), None)
        if op == "exists":
            return bool(answers) == bool(expected)
        values = [v[1] for a in answers if (v := _answer_value(a)) is not None]
        if op in ("=", "!="):
            match = any(
                _same_coding(v, expected) if isinstance(expected, dict) else v == expected
                for v in values
            )
            return match if op == "=" else not match and bool(values)
        try:
            if op == ">":
                return any(v > expected for v in values)
            if op == "<":
                return any(v < expected for v in values)
            if op == ">=":
                return any(v >= expected for v in values)
            if op == "<=":
                return any(v <= expected for v in values)
        except TypeError:
            return False
        return False

    def _item(self, q: JsonObject, plan: _ItemPlan, r: JsonObject, path: str) -> None:
        qtype = plan.type
        answers = [a for a in r.get("answer") or _NO_ITEMS if isinstance(a, dict)]
        link = q["linkId"]
        if answers and plan.conditional and not self._enabled(q):
            self._error("structure", f"Item '{link}' has answers although it is not enabled", path)
        if qtype == "question" and answers:
            self._error("structure", "Items of type question should not have answers", path)
            return
        if qtype == "display" and (answers or r.get("item")):
            self._error("structure", "Items of type 'display' cannot have answers", path)
            return
        if qtype == "group":
            if answers:
                self._error("structure", "Items of type 'group' cannot have answers", path)
            if q.get("required") and not r.get("item") and not self.in_progress:
                self._error("required", "No sub-items found for required group", path)
            self._items(q.get("item") or _NO_ITEMS, r.get("item") or [], path)
            return
        if "item" in r and r["item"] and q.get("item") is not None and qtype != "group":
            self._error("structure", "Items of type question should not have answers", path)
        if len(answers) > 1 and not plan.repeats:
            self._error("structure", "Only one response answer item with this linkId allowed", path)
        if plan.required and not answers and not self.in_progress:
            self._error("required", f"No response answer found for required item '{link}'", path)
        if not self.in_progress:
            for lim in plan.min_occurs:
                if isinstance(lim, int) and len(answers) < lim:
                    self._error("structure", f"The minimum number of answers is {lim}", path)
            for lim in plan.max_occurs:
                if isinstance(lim, int) and len(answers) > lim:
                    self._error("structure", f"The maximum number of answers is {lim}", path)
        if len(answers) > 1:
            self._exclusive(q, answers, path)
        for j, a in enumerate(answers):
            self._answer(q, plan, a, f"{path}.answer[{j}]")
            if a.get("item"):
                self._items(q.get("item") or _NO_ITEMS, a["item"], f"{path}.answer[{j}]")

    def _exclusive(self, q: JsonObject, answers: list[JsonObject], path: str) -> None:
        """questionnaire-optionExclusive: such an option cannot be selected with any other."""
        exclusive = [
            v
            for o in q.get("answerOption") or []
            if isinstance(o, dict) and True in _ext(o, "questionnaire-optionExclusive")
            for k, v in o.items()
            if k.startswith("value")
        ]
        for j, a in enumerate(answers):
            got = _answer_value(a)
            if got is not None and any(
                _same_coding(got[1], e) if got[0] == "valueCoding" else got[1] == e
                for e in exclusive
            ):
                self._error(
                    "business-rule",
                    "The selected answer is an exclusive option: nothing else can be selected",
                    f"{path}.answer[{j}]",
                )

    def _answer(self, q: JsonObject, plan: _ItemPlan, a: JsonObject, path: str) -> None:
        got = _answer_value(a)
        if got is None:
            return
        key, value = got
        problem = _answer_problem(plan, key, value)
        if problem is not None:
            code, text = problem
            self._error(code, text, path)
            if code == "structure":
                return  # a value of the wrong type is judged no further
        if plan.limited:
            self._limits(q, key, value, path)

    def _limits(self, q: JsonObject, key: str, value: JsonValue, path: str) -> None:
        if key in _COMPARABLE:
            for lim in self._ext(q, "minValue"):
                if _lt(value, lim):
                    self._error("value", "The value is less than the allowed minimum", path)
            for lim in self._ext(q, "maxValue"):
                if _lt(lim, value):
                    self._error("value", "The value is greater than the allowed maximum", path)
        if key == "valueString" and isinstance(value, str):
            max_len = q.get("maxLength")
            if isinstance(max_len, int) and len(value) > max_len:
                self._error(
                    "value", f"The answer is longer than the maximum length {max_len}", path
                )
            for lim in self._ext(q, "minLength"):
                if isinstance(lim, int) and len(value) < lim:
                    self._error(
                        "value", f"The answer is shorter than the minimum length {lim}", path
                    )
            for rx in self._ext(q, "regex"):
                if isinstance(rx, str) and not _safe_match(rx, value):
                    self._error("value", "The answer does not match the required format", path)
        if key == "valueQuantity" and isinstance(value, dict):
            self._quantity(q, value, path)
        if key == "valueDecimal" and isinstance(value, Decimal):
            exponent = value.as_tuple().exponent
            places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
            for lim in self._ext(q, "maxDecimalPlaces"):
                if isinstance(lim, int) and places > lim:
                    self._error("value", f"The value has more than {lim} decimal places", path)
        if key == "valueAttachment" and isinstance(value, dict):
            mimes = [m for m in self._ext(q, "mimeType") if isinstance(m, str)]
            if mimes and value.get("contentType") not in mimes:
                self._error("value", "The attachment's mime type is not allowed here", path)
            for lim in self._ext(q, "maxSize"):
                size = value.get("size")
                if isinstance(size, int) and isinstance(lim, (int, Decimal)) and size > lim:
                    self._error("value", "The attachment is too large", path)
        if key == "valueReference" and isinstance(value, dict):
            types = [
                t for t in self._ext(q, "questionnaire-referenceResource") if isinstance(t, str)
            ]
            ref = value.get("reference")
            if types and isinstance(ref, str):
                rt = parse_reference(ref).resource_type
                if rt and rt not in types:
                    self._error("structure", f"Reference to {rt} is not allowed here", path)

    def _quantity(self, q: JsonObject, value: JsonObject, path: str) -> None:
        """SDC minQuantity/maxQuantity, questionnaire-unitOption and -unitValueSet."""
        path = f"{path}.valueQuantity"
        for name, sign, word in (("minQuantity", -1, "minimum"), ("maxQuantity", 1, "maximum")):
            for lim in self._ext(q, f"sdc-questionnaire-{name}", _SDC):
                if not isinstance(lim, dict):
                    continue
                got = _formal(value)
                limit = _formal(lim)
                if got is None or limit is None:
                    self._error(
                        "invariant",
                        f"The quantity cannot be compared to the allowed {word} because no "
                        "formal (UCUM) units are specified",
                        path,
                    )
                    continue
                order = ucum.compare(got[0], got[1], limit[0], limit[1])
                if order == "incomparable":
                    self._error(
                        "invariant",
                        f"The quantity's unit {got[1]} cannot be compared to the allowed "
                        f"{word}'s unit {limit[1]}",
                        path,
                    )
                elif order == sign:
                    self._error(
                        "invariant",
                        f"The quantity is {'less' if sign < 0 else 'greater'} than the allowed "
                        f"{word} of {limit[0]} {limit[1]}",
                        path,
                    )
        options = [o for o in self._ext(q, "questionnaire-unitOption") if isinstance(o, dict)]
        if options and not any(
            o.get("system") == value.get("system") and o.get("code") == value.get("code")
            for o in options
        ):
            allowed = ", ".join(str(o.get("code")) for o in options)
            self._error("invariant", f"The unit is not one of the allowed units ({allowed})", path)
        for vs in self._ext(q, "questionnaire-unitValueSet"):
            systems = (
                self.known.systems_of_value_set(vs) if self.known and isinstance(vs, str) else None
            )
            if systems is not None and (
                value.get("system") not in systems or not isinstance(value.get("code"), str)
            ):
                self._error("invariant", f"The unit is not in the unit value set '{vs}'", path)


def _answer_problem(plan: _ItemPlan, key: str, value: JsonValue) -> tuple[str, str] | None:
    """(issue code, text) when answer `key: value` is of a type the item does not take (code
    "structure") or not one of its answerOptions (code "code-invalid"), else None."""
    allowed = plan.allowed
    if allowed is not None and key not in allowed:
        return ("structure", f"Answer value must be of type {allowed[0][5:]} not {key[5:]}")
    options = plan.options
    if options is not None and not (plan.open_choice and key == "valueString"):
        if key == "valueCoding":
            ok = any(_same_coding(value, o) for o in options.values)
        elif options.as_set is not None and not isinstance(value, (dict, list)):
            ok = value in options.as_set
        else:
            ok = any(value == o for o in options.values)
        if not ok:
            return ("code-invalid", "The answer is not in the set of permitted values")
    return None


def _formal(quantity: JsonObject) -> tuple[Decimal, str] | None:
    """(value, UCUM code) when the quantity states a UCUM code and a numeric value."""
    value, code = quantity.get("value"), quantity.get("code")
    if quantity.get("system") != ucum.UCUM_SYSTEM or not isinstance(code, str):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        return None
    return Decimal(value), code


def _lt(a: JsonValue, b: JsonValue) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        n = min(len(a), len(b))
        return a[:n] < b[:n]
    try:
        return bool(a < b)
    except TypeError:
        return False


def _safe_match(pattern: str, value: str) -> bool:
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return True


def questionnaire_issues(
    questionnaire: JsonObject,
    response: JsonObject,
    known: KnownArtefacts | None = None,
    index: QuestionnaireIndex | None = None,
) -> list[Issue]:
    """`known` supplies value sets (questionnaire-unitValueSet); without it they are not judged.
    `index`: the kept QuestionnaireIndex of this (process-lived, unchanged) Questionnaire."""
    return QuestionnaireChecker(questionnaire, response, known, index).run()
