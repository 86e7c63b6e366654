"""QuestionnaireResponse against its Questionnaire: linkIds, order, answer types, required items,
repeats, enableWhen, answerOption membership and the core item extensions (minValue, maxValue,
minLength, regex, maxDecimalPlaces, minOccurs, maxOccurs, mimeType, maxSize, referenceResource).

This is how DIALOG responses are checked. Finding the Questionnaire is the caller's job
(`validator.py` looks in the Bundle, contained resources, profiles/questionnaires/ and lookup hooks).
What the check reads of each item is planned once (itemplans.py); enableWhen is enablewhen.py,
and the limits an item's extensions put on a value are answerlimits.py.
Texts name linkIds and limits, never answer values: answers may be patient data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from adapter.conformance.answerlimits import limit_issues
from adapter.conformance.enablewhen import EnableWhen
from adapter.conformance.itemplans import (
    ANSWER_TYPES,
    NO_ITEMS,
    ItemPlan,
    QuestionnaireIndex,
    answer_problem,
    answer_value,
    build_item_plan,
    extension_index,
    extension_values,
    item_links,
    same_coding,
)
from adapter.conformance.terminology import KnownArtefacts
from adapter.fhir.types import JsonObject, JsonValue
from adapter.issue import Issue

__all__ = [
    "ANSWER_TYPES",
    "QuestionnaireChecker",
    "QuestionnaireIndex",
    "QuestionnaireLookup",
    "questionnaire_issues",
]

QuestionnaireLookup = Callable[[str], JsonObject | None]

_NO_EXTENSIONS: Final[dict[str, list[JsonValue]]] = {}  # shared and never mutated


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
        self._enable_when = EnableWhen(response)
        index = index if index is not None else QuestionnaireIndex()
        self._ext_index = index.extensions
        self._plans = index.plans
        self._links = index.links

    def _extensions(self, q: JsonObject) -> dict[str, list[JsonValue]]:
        """The item's `extension_index`, derived once per Questionnaire item."""
        if "extension" not in q:
            return _NO_EXTENSIONS
        index = self._ext_index.get(id(q))
        if index is None:
            index = self._ext_index[id(q)] = extension_index(q)
        return index

    def _plan(self, q: JsonObject) -> ItemPlan:
        """The item's plan, derived on its first answer."""
        plan = self._plans.get(id(q))
        if plan is None:
            plan = self._plans[id(q)] = build_item_plan(q, self._extensions(q))
        return plan

    def run(self) -> list[Issue]:
        self._items(
            self.q.get("item") or NO_ITEMS, self.qr.get("item") or [], "QuestionnaireResponse"
        )
        return self.issues

    def _error(self, code: str, text: str, expression: str) -> None:
        self.issues.append(Issue("error", code, text, expression))  # type: ignore[arg-type]  # codes below are IssueCode literals

    def _items(self, q_items: Sequence[JsonValue], r_items: Sequence[JsonValue], path: str) -> None:
        """`q_items` is a list of the Questionnaire (or `NO_ITEMS`), never a temporary: its
        linkIds are indexed by id()."""
        links = self._links.get(id(q_items))
        if links is None:
            links = self._links[id(q_items)] = item_links(q_items)
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
                        got = answer_value(a)
                        problem = answer_problem(plan, *got) if got is not None else None
                        if problem is not None:
                            self._error(*problem, f"{path}.item[{i}].answer[0]")
                        continue
            self._item(q, plan, r, f"{path}.item[{i}]")
        for link, q in required:
            if link not in seen and self._enable_when.enabled(q) and not self.in_progress:
                self._error(
                    "required", f"No response answer found for required item '{link}'", path
                )

    def _item(self, q: JsonObject, plan: ItemPlan, r: JsonObject, path: str) -> None:
        qtype = plan.type
        answers = [a for a in r.get("answer") or NO_ITEMS if isinstance(a, dict)]
        link = q["linkId"]
        if answers and plan.conditional and not self._enable_when.enabled(q):
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
            self._items(q.get("item") or NO_ITEMS, r.get("item") or [], path)
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
                self._items(q.get("item") or NO_ITEMS, a["item"], f"{path}.answer[{j}]")

    def _exclusive(self, q: JsonObject, answers: list[JsonObject], path: str) -> None:
        """questionnaire-optionExclusive: such an option cannot be selected with any other."""
        exclusive = [
            v
            for o in q.get("answerOption") or []
            if isinstance(o, dict) and True in extension_values(o, "questionnaire-optionExclusive")
            for k, v in o.items()
            if k.startswith("value")
        ]
        for j, a in enumerate(answers):
            got = answer_value(a)
            if got is not None and any(
                same_coding(got[1], e) if got[0] == "valueCoding" else got[1] == e
                for e in exclusive
            ):
                self._error(
                    "business-rule",
                    "The selected answer is an exclusive option: nothing else can be selected",
                    f"{path}.answer[{j}]",
                )

    def _answer(self, q: JsonObject, plan: ItemPlan, a: JsonObject, path: str) -> None:
        got = answer_value(a)
        if got is None:
            return
        key, value = got
        problem = answer_problem(plan, key, value)
        if problem is not None:
            code, text = problem
            self._error(code, text, path)
            if code == "structure":
                return  # a value of the wrong type is judged no further
        if plan.limited:
            self.issues += limit_issues(q, self._extensions(q), key, value, path, self.known)


def questionnaire_issues(
    questionnaire: JsonObject,
    response: JsonObject,
    known: KnownArtefacts | None = None,
    index: QuestionnaireIndex | None = None,
) -> list[Issue]:
    """`known` supplies value sets (questionnaire-unitValueSet); without it they are not judged.
    `index`: the kept QuestionnaireIndex of this (process-lived, unchanged) Questionnaire."""
    return QuestionnaireChecker(questionnaire, response, known, index).run()
