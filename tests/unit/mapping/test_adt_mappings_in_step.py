"""The cancel mapping (ADT^A11/A13) repeats the admit/discharge mapping (ADT^A01/A03) for the same
Encounter and EpisodeOfCare. A field added to one and not the other would be dropped by the next
message of the other kind (HAZ-036), so the two must differ only where the cancel means to: the
status ConceptMaps and the discharge fields a cancel never records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
ADMIT = ROOT / "mappings" / "hl7v2" / "adt_a01_a03.encounter.yaml"
CANCEL = ROOT / "mappings" / "hl7v2" / "adt_a11_a13.cancel.yaml"
#: what the cancel mapping leaves out on purpose: the discharge a cancel undoes or that cannot stand
DISCHARGE_ONLY = {"period.end", "hospitalization.dischargeDisposition"}


def _resources(path: Path) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in yaml.safe_load(path.read_text())["resources"]}


def _rules(resource: dict[str, Any], *, drop: set[str]) -> list[dict[str, Any]]:
    """The rules, without the status rule's ConceptMap name (each trigger set has its own)."""
    out = []
    for rule in resource.get("rules", []):
        if rule.get("to") in drop:
            continue
        if rule.get("to") == "status":
            rule = {k: v for k, v in rule.items() if k != "map"}
        out.append(rule)
    return out


def test_the_cancel_mapping_builds_the_same_resources_as_admit_and_discharge():
    admit, cancel = _resources(ADMIT), _resources(CANCEL)
    assert admit.keys() == cancel.keys()
    for name in admit:
        assert admit[name]["type"] == cancel[name]["type"], name
        assert admit[name].get("id") == cancel[name].get("id"), f"{name}: same ids, same resource"
        assert admit[name].get("match") == cancel[name].get("match"), name
        assert _rules(cancel[name], drop=set()) == _rules(admit[name], drop=DISCHARGE_ONLY), (
            f"{name}: the two mappings differ beyond status and the discharge fields"
        )


def test_only_status_maps_differ():
    def status_maps(path: Path) -> set[str]:
        return {
            rule["map"]
            for resource in _resources(path).values()
            for rule in resource.get("rules", [])
            if rule.get("to") == "status"
        }

    assert status_maps(ADMIT) == {"adt-encounter-status", "adt-episode-status"}
    assert status_maps(CANCEL) == {"adt-cancel-encounter-status", "adt-cancel-episode-status"}
