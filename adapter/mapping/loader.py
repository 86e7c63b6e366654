"""Loads `mappings/` (YAML mapping files and FHIR ConceptMap JSON) once, checking every reference.

A rule naming an unknown transform or ConceptMap, or a ConceptMap without id/version/status, stops
the load with ArtefactLoadError naming the file: a mapping problem is found at start-up, not on the
first message at 3 a.m.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from adapter.errors import ArtefactLoadError
from adapter.fhir.types import JsonObject
from adapter.mapping.spec import MappingSpec, parse_spec, walk_rules
from adapter.mapping.transforms import TRANSFORMS


@dataclass(frozen=True, slots=True)
class Translation:
    system: str
    code: str
    display: str | None
    equivalence: str


@dataclass(slots=True)
class ConceptMaps:
    """ConceptMap lookups by map id: source code -> target coding (first group that knows the code)."""

    maps: dict[str, JsonObject] = field(default_factory=dict)
    _index: dict[str, dict[str, Translation]] = field(default_factory=dict)

    def add(self, concept_map: JsonObject, path: str) -> None:
        for key in ("id", "version", "status", "group"):
            if key not in concept_map:
                raise ArtefactLoadError(path, f"ConceptMap lacks '{key}'")
        if concept_map.get("resourceType") != "ConceptMap":
            raise ArtefactLoadError(path, "not a ConceptMap")
        index: dict[str, Translation] = {}
        for group in concept_map["group"]:
            target_system = str(group.get("target", ""))
            for element in group.get("element") or []:
                targets = [
                    t for t in element.get("target") or [] if t.get("equivalence") != "unmatched"
                ]
                if not targets:
                    continue
                t = targets[0]
                index.setdefault(
                    str(element["code"]),
                    Translation(
                        target_system,
                        str(t["code"]),
                        t.get("display"),
                        str(t.get("equivalence", "equivalent")),
                    ),
                )
        self.maps[str(concept_map["id"])] = concept_map
        self._index[str(concept_map["id"])] = index

    def translate(self, map_id: str, code: str) -> Translation | None:
        return self._index.get(map_id, {}).get(code)

    def __contains__(self, map_id: object) -> bool:
        return map_id in self._index


@dataclass(slots=True)
class MappingRegistry:
    mappings: dict[str, MappingSpec]
    concept_maps: ConceptMaps

    def get(self, mapping_id: str) -> MappingSpec:
        try:
            return self.mappings[mapping_id]
        except KeyError:
            known = ", ".join(sorted(self.mappings))
            raise KeyError(f"no mapping '{mapping_id}' (known: {known})") from None

    def for_message(self, message_type: str, trigger: str) -> MappingSpec | None:
        wanted = f"{message_type}^{trigger}"
        for spec in self.mappings.values():
            if spec.source_kind == "hl7v2" and spec.status == "active" and wanted in spec.messages:
                return spec
        return None

    def for_event(self, event: str) -> MappingSpec | None:
        """The active mapping for a FHIR message Bundle whose MessageHeader carries this event code."""
        for spec in self.mappings.values():
            if (
                spec.source_kind == "fhir"
                and spec.resource_type == "Bundle"
                and spec.event == event
                and spec.status == "active"
            ):
                return spec
        return None

    def for_resource(self, resource_type: str) -> MappingSpec | None:
        for spec in self.mappings.values():
            if (
                spec.source_kind == "fhir"
                and spec.resource_type == resource_type
                and spec.status == "active"
            ):
                return spec
        return None


def load_registry(mappings_dir: Path) -> MappingRegistry:
    concept_maps = ConceptMaps()
    for path in sorted((mappings_dir / "concept-maps").glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ArtefactLoadError(str(path), f"unreadable: {exc}") from exc
        concept_maps.add(data, str(path))
    mappings: dict[str, MappingSpec] = {}
    for path in sorted(mappings_dir.rglob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ArtefactLoadError(str(path), f"unreadable: {exc}") from exc
        spec = parse_spec(data, str(path))
        for rule in walk_rules(spec):
            if rule.transform is not None and rule.transform not in TRANSFORMS:
                raise ArtefactLoadError(
                    str(path), f"{rule.locator}: unknown transform '{rule.transform}'"
                )
            if rule.map is not None and rule.map not in concept_maps:
                raise ArtefactLoadError(
                    str(path), f"{rule.locator}: unknown ConceptMap '{rule.map}'"
                )
            if rule.setting is not None and rule.setting not in spec.settings:
                raise ArtefactLoadError(
                    str(path), f"{rule.locator}: unknown setting '{rule.setting}'"
                )
        if spec.id in mappings:
            raise ArtefactLoadError(str(path), f"duplicate mapping id {spec.id}")
        mappings[spec.id] = spec
    return MappingRegistry(mappings, concept_maps)
