"""Writes our extension StructureDefinitions from profiles/extensions.yaml.

    .venv/bin/python tools/gen_extensions.py

Each becomes profiles/structure-definitions/Extension-<name>.json with a differential (url fixed,
value[x] types, sub-extension slices), so the conformance stage knows it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "profiles" / "extensions.yaml"
OUT = ROOT / "profiles" / "structure-definitions"
BASE = "https://fhir.cmh-adapter.example/StructureDefinition/"


def _types(names: list[str]) -> list[dict[str, str]]:
    return [{"code": n} for n in names]


def structure_definition(name: str, spec: dict[str, Any], version: str) -> dict[str, Any]:
    url = BASE + name
    elements: list[dict[str, Any]] = [
        {
            "id": "Extension",
            "path": "Extension",
            "short": spec["title"],
            "definition": spec["title"],
        }
    ]
    subs: dict[str, list[str]] = spec.get("subs") or {}
    if subs:
        elements.append(
            {
                "id": "Extension.extension",
                "path": "Extension.extension",
                "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"},
            }
        )
        for sub, types in subs.items():
            elements += [
                {
                    "id": f"Extension.extension:{sub}",
                    "path": "Extension.extension",
                    "sliceName": sub,
                    "min": 0,
                    "max": "1",
                },
                {
                    "id": f"Extension.extension:{sub}.url",
                    "path": "Extension.extension.url",
                    "fixedUri": sub,
                },
                {
                    "id": f"Extension.extension:{sub}.value[x]",
                    "path": "Extension.extension.value[x]",
                    "type": _types(types),
                },
            ]
    else:
        elements.append({"id": "Extension.extension", "path": "Extension.extension", "max": "0"})
    elements.append({"id": "Extension.url", "path": "Extension.url", "fixedUri": url})
    if subs:
        elements.append({"id": "Extension.value[x]", "path": "Extension.value[x]", "max": "0"})
    else:
        elements.append(
            {
                "id": "Extension.value[x]",
                "path": "Extension.value[x]",
                "min": 1,
                "type": _types(spec["value"]),
            }
        )
    return {
        "resourceType": "StructureDefinition",
        "id": f"ext-{name}",
        "url": url,
        "version": version,
        "name": "".join(part.title() for part in name.split("-")),
        "title": spec["title"],
        "status": "draft",
        "description": spec["title"],
        "fhirVersion": "4.0.1",
        "kind": "complex-type",
        "abstract": False,
        "context": [{"type": "element", "expression": c} for c in spec["context"]],
        "type": "Extension",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
        "derivation": "constraint",
        "differential": {"element": elements},
    }


def render() -> dict[Path, str]:
    doc = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    out: dict[Path, str] = {}
    for name, spec in sorted(doc["extensions"].items()):
        sd = structure_definition(name, spec, str(doc["version"]))
        out[OUT / f"Extension-{name}.json"] = json.dumps(sd, indent=2) + "\n"
    return out


def main() -> None:
    for stale in OUT.glob("Extension-*.json"):
        stale.unlink()
    for path, text in render().items():
        path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
