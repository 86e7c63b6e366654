"""Questionnaire enableWhen: whether an item is enabled by one QuestionnaireResponse's answers.

The response check (questionnaire.py) asks only for items that have enableWhen: an answered item
must be enabled, and a required item is only missed when it is. Answers are found by linkId
anywhere in the response, nested items and answers included.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapter.conformance.itemplans import NO_ITEMS, answer_value, same_coding
from adapter.fhir.types import JsonObject, JsonValue


def index_answers(items: Sequence[JsonValue], out: dict[str, list[JsonObject]]) -> None:
    """Adds the answers of `items` and of everything nested in them to `out`, by linkId."""
    for it in items:
        if not isinstance(it, dict):
            continue
        link = it.get("linkId")
        for a in it.get("answer") or NO_ITEMS:
            if isinstance(a, dict) and isinstance(link, str):
                out.setdefault(link, []).append(a)
                if "item" in a:
                    index_answers(a["item"] or NO_ITEMS, out)
        if "item" in it:
            index_answers(it["item"] or NO_ITEMS, out)


class EnableWhen:
    """enableWhen against one response. Its answers are indexed on the first condition asked."""

    __slots__ = ("_answers_by_link", "_response")

    def __init__(self, response: JsonObject) -> None:
        self._response = response
        self._answers_by_link: dict[str, list[JsonObject]] | None = None

    def enabled(self, q: JsonObject) -> bool:
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
            index_answers(self._response.get("item") or NO_ITEMS, self._answers_by_link)
        answers = self._answers_by_link.get(str(cond.get("question")), [])
        op = cond.get("operator")
        expected = next((v for k, v in cond.items() if k.startswith("answer")), None)
        if op == "exists":
            return bool(answers) == bool(expected)
        values = [v[1] for a in answers if (v := answer_value(a)) is not None]
        if op in ("=", "!="):
            match = any(
                same_coding(v, expected) if isinstance(expected, dict) else v == expected
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
