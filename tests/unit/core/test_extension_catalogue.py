"""Every extension of ours that rules, mappings or fixtures use is declared, generated and known."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adapter.conformance import ConformanceValidator
from adapter.context import ValidationContext

ROOT = Path(__file__).resolve().parents[3]
BASE = "https://fhir.cmh-adapter.example/StructureDefinition/"
URL_RE = re.compile(
    r"(?:\{SD\}|cmh-adapter\.example/StructureDefinition/)([A-Za-z][A-Za-z0-9-]*[A-Za-z0-9])"
)
SCANNED = ["profiles/policy", "adapter", "mappings", "fixtures", "tests/support"]


def _generator():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gen_extensions", ROOT / "tools" / "gen_extensions.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _declared_structure_definitions() -> set[str]:
    names = set()
    for path in (ROOT / "profiles" / "structure-definitions").glob("*.json"):
        text = path.read_text(encoding="utf-8")
        m = re.search(r'"url": "' + re.escape(BASE) + r'([^"]+)"', text)
        if m:
            names.add(m.group(1))
    return names


def test_generated_extension_definitions_are_current():
    for path, text in _generator().render().items():
        assert path.exists(), f"run tools/gen_extensions.py: {path.name} missing"
        assert path.read_text(encoding="utf-8") == text, (
            f"run tools/gen_extensions.py: {path.name} stale"
        )


def test_every_extension_we_use_is_declared():
    declared = _declared_structure_definitions()
    used: dict[str, str] = {}
    for folder in SCANNED:
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in (".py", ".yaml", ".yml", ".json") or not path.is_file():
                continue
            for name in URL_RE.findall(path.read_text(encoding="utf-8", errors="replace")):
                used.setdefault(name, str(path.relative_to(ROOT)))
    used.pop("name", None)  # the `{SD}name` placeholder in docstrings
    missing = {n: where for n, where in used.items() if n not in declared}
    assert not missing, f"declare these in profiles/extensions.yaml: {missing}"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (
            {
                "valueCoding": {
                    "system": "https://fhir.cmh-adapter.example/CodeSystem/referral-source",
                    "code": "gp",
                }
            },
            True,
        ),
        ({"valueString": "gp"}, False),
    ],
)
def test_declared_extension_is_checked_for_its_value_type(value, ok):
    sr = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "#p"},
        "contained": [{"resourceType": "Patient", "id": "p"}],
        "extension": [{"url": BASE + "referral-source", **value}],
    }
    issues = ConformanceValidator().validate(sr, ValidationContext())
    errors = [i for i in issues if i.is_blocking and "extension" in (i.expression or "")]
    assert (not errors) is ok, errors


def test_undeclared_extension_of_ours_is_refused():
    sr = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "#p"},
        "contained": [{"resourceType": "Patient", "id": "p"}],
        "extension": [{"url": BASE + "made-up-thing", "valueString": "x"}],
    }
    issues = ConformanceValidator().validate(sr, ValidationContext())
    assert any(i.is_blocking and i.expression == "ServiceRequest.extension[0]" for i in issues)
