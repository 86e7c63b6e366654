"""Every code system the rules and fixtures use is published as FHIR JSON, with every code used.

Our own systems live in profiles/code-systems/ (the conformance profiles) or profiles/policy/vocab/
(codes only the policy rules need); a code a rule looks for that no CodeSystem defines could never
be sent by a conforming client, so the rule would silently never fire.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapter.policy.vocab import CS

ROOT = Path(__file__).resolve().parents[3]
POLICY = ROOT / "profiles" / "policy"


def _code_systems() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for folder in (ROOT / "profiles" / "code-systems", POLICY / "vocab"):
        for path in sorted(folder.glob("CodeSystem-*.json")):
            cs = json.loads(path.read_text(encoding="utf-8"))
            assert cs["url"] not in out, f"{cs['url']} defined twice"
            out[cs["url"]] = {c["code"] for c in cs.get("concept", [])}
    return out


SYSTEMS = _code_systems()


def _rule_codes() -> list[tuple[str, str, str]]:
    """(where, system, code) for `system='{CS}x' and code='y'` and `... code in ('a' | 'b')`."""
    found = []
    pattern = re.compile(
        r"system\s*=\s*'\{CS\}([\w-]+)'\s+and\s+code\s*(?:=\s*'([^']+)'|in\s*\(([^)]*)\))"
    )
    for path in sorted(POLICY.glob("*/*.yaml")):
        for m in pattern.finditer(path.read_text(encoding="utf-8")):
            codes = [m.group(2)] if m.group(2) else re.findall(r"'([^']+)'", m.group(3))
            found.extend((path.name, CS + m.group(1), c) for c in codes)
    return found


def _fixture_codes() -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            system = node.get("system")
            if isinstance(system, str) and system.startswith(CS) and "code" in node:
                found.append((where, system, str(node["code"])))
            for value in node.values():
                walk(value, where)
        elif isinstance(node, list):
            for value in node:
                walk(value, where)

    for path in sorted((ROOT / "fixtures" / "policy").glob("*/*.yaml")):
        walk(yaml.safe_load(path.read_text(encoding="utf-8")), f"{path.parent.name}/{path.name}")
    return found


def test_every_system_named_in_a_rule_is_published() -> None:
    used = set(
        re.findall(
            r"\{CS\}([\w-]+)",
            "".join(p.read_text(encoding="utf-8") for p in POLICY.glob("*/*.yaml")),
        )
    )
    assert sorted(u for u in used if CS + u not in SYSTEMS) == []


@pytest.mark.parametrize(("where", "system", "code"), _rule_codes())
def test_codes_in_rules_are_defined(where: str, system: str, code: str) -> None:
    assert code in SYSTEMS.get(system, set()), f"{where}: {system}#{code} is not defined"


def test_codes_in_fixtures_are_defined() -> None:
    undefined = sorted(
        {f"{w}: {s}#{c}" for w, s, c in _fixture_codes() if c not in SYSTEMS.get(s, set())}
    )
    assert undefined == []


def test_each_policy_code_system_has_its_value_set() -> None:
    for path in sorted((POLICY / "vocab").glob("CodeSystem-*.json")):
        vs = POLICY / "vocab" / path.name.replace("CodeSystem-", "ValueSet-")
        assert vs.exists(), vs
        doc = json.loads(vs.read_text(encoding="utf-8"))
        cs = json.loads(path.read_text(encoding="utf-8"))
        assert doc["compose"]["include"][0]["system"] == cs["url"]
        assert {cs["status"], doc["status"]} == {"active"}
