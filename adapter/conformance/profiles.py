"""Our profiles (profiles/): StructureDefinitions enforced from their differential.

Loaded once at start-up (a bad file raises ArtefactLoadError naming itself). A profile applies when
the resource lists it in meta.profile or the caller asks for it (ctx.profiles, the $validate
`profile` parameter). From each differential element we enforce cardinality, fixed[x] and
pattern[x] values, required bindings to our ValueSets (expanded from our CodeSystems), Reference
target types, slices discriminated by value (identifier system, coding) and FHIRPath constraints.
Profiles we do not hold are ignored unless they claim our canonical base, which is an error.
How a StructureDefinition is compiled, and which instance nodes an element id selects, is
compiledprofile.py; this module holds the artefacts and applies the rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from adapter.conformance.compiledprofile import (
    CompiledProfile,
    Located,
    Segment,
    canonical_url,
    compile_profile,
    contains_pattern,
    prefixed,
    select_nodes,
)
from adapter.conformance.invariants import InvariantRunner
from adapter.conformance.terminology import KnownArtefacts
from adapter.errors import ArtefactLoadError
from adapter.fhir.references import parse_reference
from adapter.fhir.types import JsonObject, JsonValue
from adapter.issue import Issue

__all__ = ["OUR_BASE", "CompiledProfile", "Located", "ProfileRegistry", "Segment"]

OUR_BASE: Final = "https://fhir.cmh-adapter.example/"
_FOLDERS: Final = ("structure-definitions", "value-sets", "code-systems", "questionnaires")
_RUNNER: Final = InvariantRunner()


class ProfileRegistry:
    def __init__(self) -> None:
        self.structure_definitions: dict[str, JsonObject] = {}
        self.value_sets: dict[str, JsonObject] = {}
        self.code_systems: dict[str, JsonObject] = {}
        self.questionnaires: dict[str, JsonObject] = {}
        self._compiled: dict[str, CompiledProfile] = {}

    @classmethod
    def load(cls, profiles_dir: Path) -> ProfileRegistry:
        reg = cls()
        for folder in _FOLDERS:
            for path in sorted((profiles_dir / folder).glob("*.json")):
                try:
                    res = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    raise ArtefactLoadError(str(path), f"not readable JSON: {exc}") from exc
                reg.add(res, str(path))
        return reg

    def add(self, res: JsonValue, where: str = "<supporting>") -> None:
        if not isinstance(res, dict) or not isinstance(res.get("url"), str):
            raise ArtefactLoadError(where, "a conformance artefact needs a url")
        for required in ("id", "version", "status"):
            if required not in res and where != "<supporting>":
                raise ArtefactLoadError(where, f"missing {required}")
        url = canonical_url(res["url"])
        kind = res.get("resourceType")
        if kind == "StructureDefinition":
            if not isinstance(res.get("differential", {}).get("element"), list):
                raise ArtefactLoadError(where, "StructureDefinition without a differential")
            self.structure_definitions[url] = res
        elif kind == "ValueSet":
            self.value_sets[url] = res
        elif kind == "CodeSystem":
            self.code_systems[url] = res
        elif kind == "Questionnaire":
            self.questionnaires[url] = res
        else:
            raise ArtefactLoadError(where, f"unexpected resourceType {kind!r}")

    def questionnaire(self, canonical: str) -> JsonObject | None:
        return self.questionnaires.get(canonical_url(canonical))

    # -- profiles ------------------------------------------------------------------------------

    def validate(
        self,
        resource: JsonObject,
        requested: Iterable[str],
        supporting: Iterable[JsonObject],
        known: KnownArtefacts | None = None,
    ) -> list[Issue]:
        """`known` supplies core value sets for required bindings to value sets that are not ours."""
        meta = resource.get("meta")
        claimed = meta.get("profile") if isinstance(meta, dict) else None
        urls = [
            u
            for u in [*(claimed if isinstance(claimed, list) else []), *requested]
            if isinstance(u, str)
        ]
        if not urls:
            return []
        # Supporting StructureDefinitions (e.g. shipped with a $validate call) are applied from
        # their differential like ours; they are compiled per call and not cached.
        extra: dict[str, JsonObject] = {
            canonical_url(sd["url"]): sd
            for sd in supporting
            if sd.get("resourceType") == "StructureDefinition"
            and isinstance(sd.get("url"), str)
            and isinstance((sd.get("differential") or {}).get("element"), list)
        }
        issues: list[Issue] = []
        rt = str(resource.get("resourceType"))
        for url in dict.fromkeys(canonical_url(u) for u in urls):
            profile = self._profile(url, extra)
            if profile is None:
                if url.startswith(OUR_BASE):
                    issues.append(
                        Issue("error", "not-found", f"Unknown profile {url}", f"{rt}.meta.profile")
                    )
                continue
            if profile.type != rt:
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"Profile {profile.id} is for {profile.type}, not {rt}",
                        rt,
                    )
                )
                continue
            issues += self._check(profile, resource, known)
        return issues

    def _profile(self, url: str, extra: dict[str, JsonObject]) -> CompiledProfile | None:
        hit = self._compiled.get(url)
        if hit is not None:
            return hit
        sd = self.structure_definitions.get(url)
        cache = sd is not None
        sd = sd or extra.get(url)
        if sd is None or sd.get("derivation") == "specialization":
            return None
        profile = compile_profile(url, sd)
        if cache:
            self._compiled[url] = profile
        return profile

    def _check(
        self, profile: CompiledProfile, resource: JsonObject, known: KnownArtefacts | None
    ) -> list[Issue]:
        issues: list[Issue] = []
        tag = f" (profile {profile.id})"
        for el in profile.elements:
            eid = str(el.get("id", el["path"]))
            for (_, parent_path), kids in select_nodes(profile, resource, eid):
                name = eid.rsplit(".", 1)[-1]
                lo, hi = el.get("min"), el.get("max")
                if isinstance(lo, int) and len(kids) < lo:
                    issues.append(
                        Issue(
                            "error",
                            "required",
                            f"{name}: minimum required = {lo}, found {len(kids)}{tag}",
                            f"{parent_path}.{name.split(':')[0].removesuffix('[x]')}",
                        )
                    )
                if isinstance(hi, str) and hi != "*" and len(kids) > int(hi):
                    issues.append(
                        Issue(
                            "error",
                            "structure",
                            f"{name}: maximum allowed = {hi}, found {len(kids)}{tag}",
                            f"{parent_path}.{name.split(':')[0].removesuffix('[x]')}",
                        )
                    )
                for kid, kid_path in kids:
                    issues += self._value_rules(
                        profile, el, eid, kid, kid_path, resource, tag, known
                    )
        return issues

    def _value_rules(
        self,
        profile: CompiledProfile,
        el: JsonObject,
        eid: str,
        kid: JsonValue,
        path: str,
        resource: JsonObject,
        tag: str,
        known: KnownArtefacts | None = None,
    ) -> list[Issue]:
        out: list[Issue] = []
        fixed = prefixed(el, "fixed")
        if fixed is not None and kid != fixed[1]:
            out.append(Issue("error", "value", f"Value does not equal the fixed value{tag}", path))
        pattern = prefixed(el, "pattern")
        if pattern is not None and not contains_pattern(kid, pattern[1]):
            out.append(
                Issue("error", "value", f"Value does not match the required pattern{tag}", path)
            )
        binding = el.get("binding")
        if isinstance(binding, dict) and binding.get("strength") == "required":
            url = canonical_url(str(binding.get("valueSet", "")))
            enumerated = known.enumerated_value_sets.get(url) if known is not None else None
            if (url in self.value_sets and not self._in_value_set(url, kid)) or (
                url not in self.value_sets
                and enumerated is not None
                and not _in_codes(dict(enumerated), kid)
            ):
                out.append(
                    Issue(
                        "error",
                        "code-invalid",
                        f"Code is not in the required value set {url}{tag}",
                        path,
                    )
                )
        targets = {
            t.rsplit("/", 1)[-1]
            for ty in el.get("type") or []
            if isinstance(ty, dict)
            for t in ty.get("targetProfile") or []
            if isinstance(t, str)
        }
        if targets and isinstance(kid, dict) and isinstance(kid.get("reference"), str):
            rt = parse_reference(kid["reference"]).resource_type
            if rt and rt not in targets:
                out.append(
                    Issue(
                        "error",
                        "structure",
                        f"Reference to {rt} is not allowed here{tag}",
                        f"{path}.reference",
                    )
                )
        for inv in profile.constraints.get(eid, []):
            base = str(el["path"])
            if not _RUNNER.passes(inv, kid, base, resource, resource):
                out.append(
                    Issue(
                        "error",
                        "invariant",
                        f"Constraint failed: {inv.key}: '{inv.human}'{tag}",
                        path,
                    )
                )
        return out

    def _codes(self, vs_url: str) -> dict[str, frozenset[str] | None]:
        vs = self.value_sets[vs_url]
        out: dict[str, frozenset[str] | None] = {}
        for inc in vs.get("compose", {}).get("include", []):
            system = inc.get("system")
            if not isinstance(system, str):
                continue
            if inc.get("concept"):
                out[system] = frozenset(c["code"] for c in inc["concept"])
            elif system in self.code_systems:
                out[system] = frozenset(
                    c["code"] for c in self.code_systems[system].get("concept", [])
                )
            else:
                out[system] = None
        return out

    def _in_value_set(self, vs_url: str, kid: JsonValue) -> bool:
        return _in_codes(self._codes(vs_url), kid)


def _in_codes(codes: Mapping[str, frozenset[str] | None], kid: JsonValue) -> bool:
    """Whether a code, Coding, CodeableConcept or Quantity (system + code) is in `codes`."""
    if isinstance(kid, str):
        return any(c is None or kid in c for c in codes.values())
    if not isinstance(kid, dict):
        return True
    codings = kid.get("coding") if "coding" in kid else [kid]
    if not isinstance(codings, list) or not codings:
        return "coding" not in kid and "code" not in kid
    for c in codings:
        if isinstance(c, dict) and c.get("system") in codes:
            allowed = codes[c["system"]]
            if allowed is None or c.get("code") in allowed:
                return True
    return False
