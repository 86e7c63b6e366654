"""Every rule has a passing and a failing fixture, and docs/policy-coverage.md is up to date."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from adapter.policy.rulepack import load_pack
from adapter.policy.scenarios import Coverage, coverage, load_all

ROOT = Path(__file__).resolve().parents[3]


@cache
def _coverage() -> Coverage:
    return coverage(load_all(ROOT / "fixtures" / "policy"), ROOT / "profiles" / "policy")


def _generator():  # tools/ is not a package
    spec = importlib.util.spec_from_file_location(
        "gen_policy_coverage", ROOT / "tools" / "gen_policy_coverage.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_rule_has_passing_and_failing_fixtures() -> None:
    packs = [
        load_pack(d)
        for d in sorted((ROOT / "profiles" / "policy").iterdir())
        if (d / "pack.yaml").exists()
    ]
    cov = _coverage()
    rules = [r.id for p in packs for r in p.rules]
    assert rules
    assert [r for r in rules if r not in cov.passing] == []
    assert [r for r in rules if r not in cov.failing] == []


def test_coverage_doc_is_current() -> None:
    committed = (ROOT / "docs" / "policy-coverage.md").read_text(encoding="utf-8")
    assert committed == _generator().render(ROOT, _coverage()), (
        "run: .venv/bin/python tools/gen_policy_coverage.py"
    )
