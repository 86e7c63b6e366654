"""Shared corpus helpers: locate ../shared/corpora, run our validator on one validator test case."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from adapter.conformance import ConformanceValidator
from adapter.context import ValidationContext
from adapter.fhir import jsonio
from adapter.fhir.parse import structural_issues
from adapter.issue import Issue

ROOT = Path(__file__).resolve().parents[2]


def corpora_dir() -> Path | None:
    env = os.environ.get("ADAPTER_CORPORA_DIR")
    path = Path(env) if env else (ROOT / ".." / "shared" / "corpora").resolve()
    return path if path.is_dir() else None


def require_corpora() -> Path:
    path = corpora_dir()
    if path is None:
        if os.environ.get("ADAPTER_REQUIRE_CORPORA") == "1":
            pytest.fail("corpora required (ADAPTER_REQUIRE_CORPORA=1) but not found")
        pytest.skip("corpora not available (set ADAPTER_CORPORA_DIR)")
    return path


@cache
def index() -> dict[str, Any]:
    path = corpora_dir()
    if path is None:
        return {"cases": []}
    return json.loads((path / "fhir-test-cases-index.json").read_text(encoding="utf-8"))


@cache
def validator() -> ConformanceValidator:
    return ConformanceValidator()


@cache
def reference_like_validator() -> ConformanceValidator:
    """Configured like the Java reference validator's defaults: unresolvable extensions are errors."""
    return configured_validator(False, False)


@cache
def configured_validator(
    no_html_in_markdown: bool,
    security_checks: bool,
    no_example_urls: bool = False,
    resolve_parameters_references: bool = False,
    hl7_publication: bool = False,
) -> ConformanceValidator:
    """As `reference_like_validator`, with the reference validator's options a case sets."""
    return ConformanceValidator(
        unknown_extensions="error",
        no_html_in_markdown=no_html_in_markdown,
        security_checks=security_checks,
        no_example_urls=no_example_urls,
        resolve_parameters_references=resolve_parameters_references,
        hl7_publication=hl7_publication,
    )


def blocking(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity in ("error", "fatal")]


@dataclass(frozen=True)
class CaseResult:
    key: str
    expected_error: bool
    got_error: bool
    ours: tuple[str, ...]
    theirs: tuple[str, ...]

    @property
    def agrees(self) -> bool:
        return self.expected_error == self.got_error


def run_case(case: dict[str, Any]) -> CaseResult:
    base = corpora_dir()
    assert base is not None
    step = case["steps"][0]
    issues: list[Issue]
    try:
        resource = jsonio.loads((base / case["file"]).read_bytes())
    except jsonio.JsonSyntaxError as exc:
        issues = [Issue("fatal", "structure", f"not JSON: {exc}")]
    else:
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            issues = [Issue("fatal", "structure", "not a FHIR resource")]
        else:
            issues = structural_issues(resource)
            if not blocking(issues):
                supporting = []
                for rel in case["localDependencies"]:
                    if rel.endswith(".xml"):
                        stub = _xml_artefact_stub(base / rel)
                        if stub is not None:
                            supporting.append(stub)
                        continue
                    try:
                        dep = jsonio.loads((base / rel).read_bytes())
                    except (OSError, jsonio.JsonSyntaxError):
                        continue
                    if isinstance(dep, dict):
                        supporting.append(dep)
                ctx = ValidationContext(mode="validate")
                settings = case.get("settings") or {}
                issues = configured_validator(
                    bool(settings.get("noHtmlInMarkdown")),
                    bool(settings.get("security-checks")),
                    no_example_urls=settings.get("examples") is False,
                    resolve_parameters_references=settings.get("validateReference")
                    in ("CHECK_EXISTS", "CHECK_EXISTS_AND_TYPE", "CHECK_VALID"),
                    hl7_publication=bool(settings.get("for-publication")),
                ).validate_with_supporting(resource, ctx, supporting)
    ours = blocking(issues)
    return CaseResult(
        key=case["key"],
        expected_error=step["errorCount"] > 0,
        got_error=bool(ours),
        ours=tuple(f"{i.expression}: {i.text}" for i in ours),
        theirs=tuple(step["errorMessages"]),
    )


def _xml_artefact_stub(path: Path) -> dict[str, Any] | None:
    """A supporting artefact in XML is known by its resource type, url and type (no XML parser)."""
    try:
        root = ElementTree.parse(path).getroot()  # test data from the corpus
    except (OSError, ElementTree.ParseError):
        return None
    ns = "{http://hl7.org/fhir}"
    out: dict[str, Any] = {"resourceType": root.tag.removeprefix(ns)}
    for name in ("url", "type", "derivation"):
        el = root.find(ns + name)
        if el is not None and el.get("value"):
            out[name] = el.get("value")
    return out if "url" in out else None


def needs_terminology_server(case: dict[str, Any]) -> bool:
    step = case["steps"][0]
    return bool(step["errorCount"]) and step["txServerErrorCount"] == step["errorCount"]


def r4_json_cases() -> list[dict[str, Any]]:
    return [
        c
        for c in index()["cases"]
        if "r4-json-no-packages" in c["categories"]
        and c["primaryStep"] == "base"
        and not needs_terminology_server(c)
    ]


def questionnaire_cases() -> list[dict[str, Any]]:
    return [
        c
        for c in index()["cases"]
        if "questionnaire" in c["categories"]
        and c["format"] == "json"
        and c["fhirRelease"] == "R4"
        and not c["packageDependencies"]
        and c["useTest"]
        and c["primaryStep"] == "base"
        and not needs_terminology_server(c)
    ]
