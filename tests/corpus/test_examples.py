"""Every official R4 example of the types we handle passes with zero errors (structural + ours).

Reads hl7.fhir.r4.examples-4.0.1.tgz directly. Two examples are genuinely invalid R4 and are
listed with the reason; every other error is a false error of ours and fails the test.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from adapter.context import ValidationContext
from adapter.fhir import jsonio
from adapter.fhir.parse import structural_issues
from tests.corpus.harness import blocking, corpora_dir, require_corpora, validator
from tests.support.corpus import EXAMPLE_TYPES, EXAMPLES_TGZ, example_files

pytestmark = pytest.mark.corpus

OUR_TYPES = EXAMPLE_TYPES
#: Examples that are not valid R4; the errors we report for them are the expected ones.
KNOWN_INVALID: dict[str, str] = {
    "Questionnaire-qs1.json": "nested items have no linkId (Questionnaire.item.linkId is 1..1)",
    "Observation-clinical-gender.json": "performer references an Encounter, not an allowed type",
}


@cache
def examples() -> dict[str, Any]:
    base = corpora_dir()
    if base is None:
        return {}
    out: dict[str, Any] = {}
    for name, raw in example_files(base / EXAMPLES_TGZ, OUR_TYPES | {"Bundle"}):
        if name.startswith("Bundle-"):
            entries = json.loads(raw).get("entry") or []
            types = {(e.get("resource") or {}).get("resourceType") for e in entries}
            if not types & OUR_TYPES:
                continue
        out[name] = jsonio.loads(raw)
    return out


def _names() -> list[str]:
    return sorted(examples()) or ["<corpora missing>"]


@pytest.mark.parametrize("name", _names())
def test_official_example_has_no_errors(name: str) -> None:
    require_corpora()
    resource = examples()[name]
    issues = blocking(structural_issues(resource))
    if not issues:
        issues = blocking(validator().validate(resource, ValidationContext(mode="validate")))
    if name in KNOWN_INVALID:
        assert issues, f"{name} is listed as invalid ({KNOWN_INVALID[name]}) but passed"
        return
    assert issues == [], [f"{i.expression}: {i.text}" for i in issues]


def test_enough_examples_are_covered() -> None:
    require_corpora()
    assert len(examples()) >= 250
