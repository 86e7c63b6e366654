"""The fast FHIRPath evaluator never disagrees with fhirpathpy, and a faulty rule never raises."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from adapter.clock import FixedClock
from adapter.context import ValidationContext
from adapter.fhir import jsonio
from adapter.issue import has_blocking
from adapter.outcome import operation_outcome
from adapter.policy import PolicyEngine, load_packs
from adapter.policy.fastpath import Fallback, Focus, Unsupported, compile_fast
from adapter.policy.rulepack import Guard, Rule, compile_fhirpath, expand, load_pack
from adapter.policy.scenarios import load_all

ROOT = Path(__file__).resolve().parents[3]
POLICY = ROOT / "profiles" / "policy"
PACKS = [load_pack(d) for d in sorted(POLICY.iterdir()) if (d / "pack.yaml").exists()]
RULES = [r for p in PACKS for r in p.rules]
SCENARIOS = load_all(ROOT / "fixtures" / "policy")


def _subjects() -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
    """(resource, plain copy) by resource type: every resource the fixtures hold (scenario
    resources, their Bundles, previous versions and contained resources), each once."""
    out: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    seen: set[str] = set()
    for s in SCENARIOS:
        for res in (s.resource, *s.bundle, *([s.previous] if s.previous else [])):
            for item in (res, *(c for c in res.get("contained") or [] if isinstance(c, dict))):
                key = repr(item)
                if key not in seen and item.get("resourceType"):
                    seen.add(key)
                    out.setdefault(item["resourceType"], []).append((item, jsonio.to_plain(item)))
    return out


SUBJECTS = _subjects()


def _expressions() -> list[tuple[str, str, frozenset[str]]]:
    """Each distinct expression or guard, with the resource types its rules apply to."""
    seen: dict[str, tuple[str, set[str]]] = {}
    for rule in RULES:
        for expr, label in (
            (rule.expression, rule.id),
            (rule.guard and rule.guard.expression, f"{rule.id} (guard)"),
        ):
            if expr:
                seen.setdefault(expr, (label, set()))[1].add(rule.applies_to)
    return [(label, expr, frozenset(types)) for expr, (label, types) in seen.items()]


EXPRESSIONS = _expressions()


def test_every_pack_expression_compiles_to_the_fast_path() -> None:
    slow_only = []
    for label, expression, _ in EXPRESSIONS:
        try:
            compile_fast(expand(expression))
        except Unsupported as exc:
            slow_only.append(f"{label}: {exc}")
    assert slow_only == []


@pytest.mark.parametrize(
    ("label", "expression", "types"), EXPRESSIONS, ids=[e[0] for e in EXPRESSIONS]
)
def test_fast_path_agrees_with_fhirpathpy_on_every_fixture(
    label: str, expression: str, types: frozenset[str]
) -> None:
    """Over every fixture resource of the types the expression's rules apply to."""
    fast = compile_fast(expand(expression))
    slow = compile_fhirpath(expression, label)
    subjects = [pair for t in sorted(types) for pair in SUBJECTS.get(t, [])]
    assert subjects, f"{label}: no fixture resource of type {sorted(types)}"
    fell_back = 0
    for subject, plain in subjects:
        try:
            got = fast([subject])
        except Fallback:
            fell_back += 1
            with pytest.raises(Fallback):
                fast(Focus(subject))
            continue
        assert got == slow(plain), f"{label} on {subject['resourceType']}/{subject.get('id')}"
        assert fast(Focus(subject)) == got, f"{label} (memoised) on {subject.get('id')}"
    assert fell_back < len(subjects), f"{label} always falls back to fhirpathpy"


def _outcome(fast: Any, focus: list[Any]) -> Any:
    try:
        return fast(focus)
    except Fallback:
        return "fallback"


@pytest.mark.parametrize("order", ["as written", "reversed"])
def test_a_shared_focus_gives_every_expression_its_own_answer(order: str) -> None:
    """The engine runs every rule and guard of a resource over one Focus, whose memo holds their
    common subexpressions: each expression still answers as it does alone."""
    by_type: dict[str, list[Any]] = {}
    for _, expression, types in EXPRESSIONS:
        for t in types:
            by_type.setdefault(t, []).append(compile_fast(expand(expression)))
    for rtype, functions in by_type.items():
        ordered = functions if order == "as written" else functions[::-1]
        for subject, _ in SUBJECTS.get(rtype, []):
            focus = Focus(subject)
            for fast in ordered:
                assert _outcome(fast, focus) == _outcome(fast, [subject]), rtype
            assert focus.memo, rtype


@pytest.mark.parametrize(
    ("expression", "resource", "expected"),
    [
        ("a.b.exists()", {"a": [{"b": 1}, {}]}, [True]),
        ("a.b.count() >= 2", {"a": [{"b": 1}, {"b": 2}]}, [True]),
        ("status = 'x'", {"status": "y"}, [False]),
        ("status = 'x'", {}, []),
        ("status != 'x'", {"status": "y"}, [True]),
        ("code in ('a' | 'b')", {"code": "b"}, [True]),
        ("code in ('a' | 'b')", {}, []),
        ("x.where(y = 'k').exists()", {"x": [{"y": "k"}, {"y": "j"}]}, [True]),
        # `where(member = 'literal')` is read directly; every other shape goes the general way
        ("x.where(y = 'k').count()", {"x": [{"y": "k"}, {"y": "k"}, {}, "s"]}, [2]),
        ("x.where(y = 'k').count()", {"x": [{"y": ["k"]}, {"y": ["k", "k"]}]}, [1]),
        ("x.where(y = 'k').z", {"x": [{"y": "j", "z": 1}, {"y": "k", "z": 2}]}, [2]),
        ("x.where(y = 'k').exists()", {"x": {"y": "k"}}, [True]),
        ("x.all(y.exists())", {"x": [{"y": 1}, {}]}, [False]),
        ("x.all(y.exists())", {}, [True]),
        ("a.exists() implies b.exists()", {}, [True]),
        ("a.exists() and b.exists()", {"a": 1}, [False]),
        ("a = 'q' and b = 'r'", {"a": "q"}, []),
        ("a = 'q' or b = 'r'", {"a": "q"}, [True]),
        ("a = 'q' implies b = 'r'", {"a": "q"}, []),
        (
            "extension('u').value.code = 'c'",
            {"extension": [{"url": "u", "valueCoding": {"code": "c"}}]},
            [True],
        ),
        (
            "extension('u').value.ofType(Signature).when.exists()",
            {"extension": [{"url": "u", "valueSignature": {"when": "2026"}}]},
            [True],
        ),
        (
            "contained.ofType(Goal).count()",
            {"contained": [{"resourceType": "Goal"}, {"resourceType": "CareTeam"}]},
            [1],
        ),
        ("language.startsWith('cy')", {"language": "cy-GB"}, [True]),
        ("flag.not()", {"flag": False}, [True]),
        ("CarePlan.status = 'active'", {"resourceType": "CarePlan", "status": "active"}, [True]),
        ("Goal.status.exists()", {"resourceType": "CarePlan", "status": "active"}, [False]),
        # criteria read straight off each item (`_predicate`), and their general fall-through
        ("x.where(y != 'k').count()", {"x": [{"y": "k"}, {"y": "j"}, {}]}, [1]),
        ("x.where(y.startsWith('d-')).count()", {"x": [{"y": "d-1"}, {"y": "e-1"}, {}]}, [1]),
        ("x.where(y.endsWith('-h')).count()", {"x": [{"y": "d-h"}, {"y": "d"}, {"z": 1}]}, [1]),
        ("x.where(y.startsWith('d-')).count()", {"x": [{"y": ["d-1"]}, "s", {"y": "d-2"}]}, [2]),
        (
            "x.where(y.startsWith('d-') and y.endsWith('-h').not()).count()",
            {"x": [{"y": "d-1"}, {"y": "d-1-h"}, {"y": "e-1"}, {}]},
            [1],
        ),
        (
            "x.where((s = 'a' and c = 'b') or (s = 'q' and c = 'r')).count()",
            {"x": [{"s": "a", "c": "b"}, {"s": "q", "c": "r"}, {"s": "a"}, {"c": "b"}, {}]},
            [2],
        ),
        ("x.where(s = 'a' and c = 'b').exists()", {"x": [{"s": "a"}, {"c": "b"}]}, [False]),
        ("x.where(s = 'a' or c = 'b').count()", {"x": [{"c": "b"}, {"s": "z"}]}, [1]),
        ("x.all(y.startsWith('d'))", {"x": [{"y": "d1"}, {"y": "e1"}]}, [False]),
        ("x.all(y.startsWith('d'))", {"x": [{"y": "d1"}, {}]}, [False]),
        ("x.exists(y = 'k')", {"x": [{"y": "j"}, {"y": "k"}]}, [True]),
        ("x.exists(y = 'k')", {"x": [{"y": "j"}, {}]}, [False]),
        ("x.all($this >= 1 and $this <= 7)", {"x": [1, 7, 4]}, [True]),
        ("x.all($this >= 1 and $this <= 7)", {"x": [1, 8]}, [False]),
        ("x.all($this > 1 and $this < 7)", {"x": [1]}, [False]),
        ("x.all($this >= 1)", {"x": [1.5, 2]}, [True]),
        ("x.where($this < 3).count()", {"x": [1, 2, 3, 4]}, [2]),
        ("x.all(a.count() <= 1)", {"x": [{"a": [1]}, {"a": [1, 2]}]}, [False]),
        ("x.all(a.count() <= 1)", {"x": [{"a": [1]}, {}, "s"]}, [True]),
        ("x.all(a.count() > 0)", {"x": [{"a": 1}, {"b": 1}]}, [False]),
        ("a.b.c", {"a": [{"b": {"c": [1, 2]}}, {"b": [{"c": 3}, {}]}]}, [1, 2, 3]),
        ("a.count() >= 2 or b.exists()", {"b": 1}, [True]),
        ("a.count() >= 2 or b.exists()", {"a": 1}, [False]),
        ("a = 'q' or b = 'r'", {}, []),
        ("a.exists() xor b.exists()", {"a": 1}, [True]),
    ],
)
def test_fast_path_semantics_match_fhirpathpy(
    expression: str, resource: dict[str, Any], expected: list[Any]
) -> None:
    assert compile_fast(expression)([resource]) == expected
    assert compile_fhirpath(expression, "test")(resource) == expected


@pytest.mark.parametrize(
    ("expression", "resource"),
    [
        ("birthDate.exists()", {"_birthDate": {"extension": []}}),
        ("created = '2026-01-01'", {"created": "2026-01-01"}),
        ("a = b", {"a": {"x": 1}, "b": {"x": 1}}),
        ("a.where(b)", {"a": [{"b": "text"}]}),
        ("a.where(b = 'k')", {"a": [{"b": "k", "_b": {"extension": []}}]}),
        ("a.where(b = 'k')", {"a": [{"b": "2026-01-01"}]}),
        ("a.where(b = 'k')", {"a": [{"b": 3}]}),
        # the item predicates hand every uncertain item to the general criterion
        ("a.where(b != 'k')", {"a": [{"b": "2026-01-01"}]}),
        ("a.where(b.startsWith('k'))", {"a": [{"b": "k", "_b": {"extension": []}}]}),
        ("a.where(b.startsWith('k'))", {"a": [{"b": 3}]}),
        ("a.where(b = 'k' and c = 'j')", {"a": [{"b": "k", "c": "2026-01-01"}]}),
        ("a.where(b = 'k' or c = 'j')", {"a": [{"b": "2026", "c": "j"}]}),
        ("a.where(b.endsWith('k').not())", {"a": [{"b": ["x", "y"]}]}),
        ("a.all($this >= 1)", {"a": [True]}),
        ("a.all($this >= 1)", {"a": ["2"]}),
        ("a.all(b.count() <= 1)", {"a": [{"b": 1, "_b": {"extension": []}}]}),
        ("a.exists(b = 'k')", {"a": [{"b": "k", "_b": {"extension": []}}]}),
    ],
)
def test_data_outside_the_subset_falls_back(expression: str, resource: dict[str, Any]) -> None:
    with pytest.raises(Fallback):
        compile_fast(expression)([resource])


def test_unsupported_expression_is_left_to_fhirpathpy() -> None:
    with pytest.raises(Unsupported):
        compile_fast("a.select(b).distinct()")


def test_a_rule_that_raises_becomes_an_exception_issue_naming_it() -> None:
    """The pipeline evaluates policy on every write; a faulty rule must not turn into a 500."""
    engine = PolicyEngine(load_packs(POLICY, ["england-cmht"]))
    referral = next(s for s in SCENARIOS if s.id == "england-cmht/referral::valid-urgent")
    ctx = ValidationContext(clock=FixedClock(referral.now))
    assert engine.evaluate(referral.resource, ctx) == []

    def boom(*_args: Any) -> list[Any]:
        raise RuntimeError("Mrs Example's data")

    broken: Rule = replace(engine.rule("S000-REF-URG-01"), fast=boom, compiled=boom)  # type: ignore[arg-type]
    bad_guard = Guard("broken", "broken", boom, boom)
    guarded: Rule = replace(engine.rule("LPT-CMHT-REF-04-CODES"), guard=bad_guard)  # type: ignore[arg-type]
    names = engine.select_packs(referral.resource, ctx)
    index = engine._rules_for(names)
    index["ServiceRequest"] = tuple(
        {"S000-REF-URG-01": broken, "LPT-CMHT-REF-04-CODES": guarded}.get(r.id, r)
        for r in index["ServiceRequest"]
    )
    issues = engine.evaluate(referral.resource, ctx)
    assert [(i.rule.id if i.rule else None, i.code, i.severity) for i in issues] == [
        ("S000-REF-URG-01", "exception", "error"),
        ("LPT-CMHT-REF-04-CODES", "exception", "error"),
    ]
    assert has_blocking(issues)
    assert issues[0].expression == "ServiceRequest.priority"
    assert issues[0].diagnostics == "rule-error=RuntimeError"
    rendered = operation_outcome(issues)["issue"][0]
    assert rendered["code"] == "exception"
    assert rendered["details"]["coding"][0]["code"] == "S000-REF-URG-01"
    assert "Mrs Example" not in str(operation_outcome(issues))


_ITEMS: list[Any] = [
    {"linkId": "dialog-1", "answer": [{"valueInteger": 3}]},
    {"linkId": "dialog-1-help", "answer": [{"valueBoolean": False}, {"valueBoolean": True}]},
    {"linkId": "other"},
    {"linkId": "2026-01-01"},
    {"linkId": ["dialog-1"]},
    {"linkId": 7},
    {"linkId": "dialog-2", "_linkId": {"extension": []}},
    {"system": "s", "code": "c"},
    {"system": "s", "code": "d"},
    {"system": "t"},
    {},
    "dialog-1",
    0,
    1,
    7,
    8,
    True,
    2.5,
]


@pytest.mark.parametrize(
    "criterion",
    [
        "linkId = 'dialog-1'",
        "linkId != 'dialog-1'",
        "linkId.startsWith('dialog-')",
        "linkId.endsWith('-help')",
        "linkId.startsWith('dialog-') and linkId.endsWith('-help').not()",
        "(system = 's' and code = 'c') or (system = 't' and code = 'd')",
        "system = 's' or code = 'd'",
        "$this >= 1 and $this <= 7",
        "$this < 7",
        "$this > 1",
        "answer.count() <= 1",
    ],
)
def test_item_predicate_agrees_with_the_general_criterion(criterion: str) -> None:
    """Where an item predicate answers, it answers as the general criterion does."""
    from fhirpathpy.parser import parse

    from adapter.policy import fastpath

    node = parse(criterion)["children"][0]  # type: ignore[no-untyped-call]  # fhirpathpy is untyped
    pred, crit = fastpath._predicate(node), fastpath._expr(node)
    assert pred is not None, criterion
    answered = 0
    for item in _ITEMS:
        try:
            got = pred(item)
        except Fallback:
            with pytest.raises(Fallback):
                crit([item])
            continue
        if got is not None:
            answered += 1
            assert [got] == crit([item]), (criterion, item)
    assert answered, criterion


@pytest.mark.parametrize(
    ("expression", "resource", "expected"),
    [
        # `_NOT_DATE_START` only skips the date regex for ASCII first characters; a string that
        # starts with a non-ASCII digit is still date-like to the regex (`\d`) and falls back
        ("x.where(y = 'k').count()", {"x": [{"y": "k"}, {"y": "\u0662026"}]}, None),
        ("x.where(y = 'k').count()", {"x": [{"y": "k"}, {"y": "@2026"}]}, None),
        ("x.where(y = 'k').count()", {"x": [{"y": "k"}, {"y": ""}, {"y": "a2026"}]}, [1]),
        ("y = 'k'", {"y": "\u0662026"}, None),
        ("y = 'k'", {"y": "2026x"}, [False]),
    ],
)
def test_the_date_check_shortcut_is_exact(
    expression: str, resource: dict[str, Any], expected: list[Any] | None
) -> None:
    fast = compile_fast(expression)
    if expected is None:
        with pytest.raises(Fallback):
            fast([resource])
    else:
        assert fast([resource]) == expected
        assert compile_fhirpath(expression, "test")(resource) == expected


@pytest.mark.parametrize(
    ("expression", "resource"),
    [
        # the root index of `where(name = 'literal')`: order kept, uncertain items asked each time
        ("x.where(y = 'k').z", {"x": [{"y": "k", "z": 1}, {"y": "j"}, {"y": "k", "z": 2}]}),
        ("x.where(y = 'k').count()", {"x": [{"y": "k"}, {"y": ["k"]}, {"y": "k"}, {}, "s"]}),
        (
            "x.where(y = 'k').z",
            {"x": [{"y": ["k"], "z": 1}, {"y": "k", "z": 2}, {"y": ["k"], "z": 3}]},
        ),
        (
            "x.where(y = 'k').exists() and x.where(y = 'j').exists()",
            {"x": [{"y": "k"}, {"y": "j"}]},
        ),
        ("x.where(y = 'k').exists() and x.where(y = 'j').empty()", {"x": [{"y": "k"}]}),
        ("x.where(y = 'k').exists()", {"x": [{"y": "k"}, {"y": "2026-01-01"}]}),
        ("x.where(y = 'k').exists()", {"x": [{"y": "k", "_y": {"extension": []}}]}),
        (
            "x.y.exists() and x.y.count() = 2 and x.where(y.startsWith('k')).count() = 1",
            {"x": [{"y": "k"}, {"y": "j"}]},
        ),
    ],
)
def test_a_focus_answers_as_a_plain_list(expression: str, resource: dict[str, Any]) -> None:
    fast = compile_fast(expression)
    alone = _outcome(fast, [resource])
    focus = Focus(resource)
    assert _outcome(fast, focus) == alone
    assert _outcome(fast, focus) == alone  # again, from the memo
    if alone != "fallback":
        assert compile_fhirpath(expression, "test")(resource) == alone
