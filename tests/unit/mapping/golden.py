"""Golden-case helpers: run a mapping over fixtures/mappings/<mapping-id>/<case>/input.*, compare with
expected.json (volatile paths removed) and show a path-level diff. UPDATE_GOLDEN=1 rewrites them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from adapter.mapping.engine import MappingResult, apply_mapping
from adapter.mapping.loader import MappingRegistry, load_registry
from adapter.sources import parse_message, read_extract, record_from_resource
from adapter.sources.record import SourceRecord

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "fixtures" / "mappings"
VOLATILE = ("meta.lastUpdated", "meta.versionId")


def registry() -> MappingRegistry:
    return load_registry(ROOT / "mappings")


def cases() -> list[Path]:
    return sorted(p for p in FIXTURES.glob("*/*") if p.is_dir() and list(p.glob("input.*")))


def record_for(case: Path) -> SourceRecord:
    source = next(case.glob("input.*"))
    data = source.read_bytes()
    if source.suffix == ".hl7":
        return parse_message(data)
    if source.suffix == ".csv" or (source.suffix == ".json" and data.lstrip().startswith(b"[")):
        return next(read_extract(data, source.name))
    return record_from_resource(json.loads(data), source.name)


def run_case(case: Path) -> MappingResult:
    reg = registry()
    return apply_mapping(reg.get(case.parent.name), record_for(case), reg.concept_maps)


def snapshot(result: MappingResult) -> dict[str, Any]:
    return {
        "resources": [_strip(m.resource) for m in result.resources],
        "issues": [
            {"severity": i.severity, "code": i.code, "expression": i.expression}
            for i in result.issues
            if i.severity != "information"
        ],
        "unmapped": sorted(result.unmapped),
        "ignored": sorted(result.ignored),
    }


def _strip(resource: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(resource))
    meta = out.get("meta", {})
    for path in VOLATILE:
        meta.pop(path.split(".", 1)[1], None)
    if "meta" in out and not meta:
        del out["meta"]
    return out


def path_diff(want: Any, got: Any, path: str = "") -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        out: list[str] = []
        for key in sorted(set(want) | set(got)):
            sub = f"{path}.{key}" if path else key
            if key not in got:
                out.append(f"-{sub}: {json.dumps(want[key])}")
            elif key not in want:
                out.append(f"+{sub}: {json.dumps(got[key])}")
            else:
                out += path_diff(want[key], got[key], sub)
        return out
    if isinstance(want, list) and isinstance(got, list):
        out = []
        for i in range(max(len(want), len(got))):
            sub = f"{path}[{i}]"
            if i >= len(got):
                out.append(f"-{sub}: {json.dumps(want[i])}")
            elif i >= len(want):
                out.append(f"+{sub}: {json.dumps(got[i])}")
            else:
                out += path_diff(want[i], got[i], sub)
        return out
    return [] if want == got else [f"~{path}: want {json.dumps(want)} got {json.dumps(got)}"]


def compare(case: Path, result: MappingResult) -> list[str]:
    expected_file = case / "expected.json"
    got = snapshot(result)
    if os.environ.get("UPDATE_GOLDEN") == "1" or not expected_file.exists():
        expected_file.write_text(json.dumps(got, indent=2) + "\n")
    return path_diff(json.loads(expected_file.read_text()), got)
