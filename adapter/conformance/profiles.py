"""Our profiles (profiles/): StructureDefinitions enforced from their differential.

Loaded once at start-up (a bad file raises ArtefactLoadError naming itself). A profile applies when
the resource lists it in meta.profile or the caller asks for it (ctx.profiles, the $validate
`profile` parameter). From each differential element we enforce cardinality, fixed[x] and
pattern[x] values, required bindings to our ValueSets (expanded from our CodeSystems), Reference
target types, slices discriminated by value (identifier system, coding) and FHIRPath constraints.
Profiles we do not hold are ignored unless they claim our canonical base, which is an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Final

from adapter.conformance.invariants import Invariant, InvariantRunner, compile_invariant
from adapter.conformance.terminology import KnownArtefacts
from adapter.errors import ArtefactLoadError
from adapter.fhir.references import parse_reference
from adapter.fhir.types import JsonObject, JsonValue
from adapter.issue import Issue

OUR_BASE: Final = "https://fhir.cmh-adapter.example/"
_FOLDERS: Final = ("structure-definitions", "value-sets", "code-systems", "questionnaires")
_RUNNER: Final = InvariantRunner()

Located = tuple[JsonValue, str]  # (instance node, its FHIRPath-style path)


def _canonical(url: str) -> str:
    return url.split("|", 1)[0]


def _prefixed(el: JsonObject, prefix: str) -> tuple[str, JsonValue] | None:
    for k, v in el.items():
        if k.startswith(prefix) and k[len(prefix) :][:1].isupper():
            return k, v
    return None


def _contains(value: JsonValue, pattern: JsonValue) -> bool:
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and _contains(value[k], v) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(_contains(x, p) for x in value) for p in pattern)
    return bool(value == pattern)


def _get(node: JsonValue, name: str) -> JsonValue:
    return node.get(name) if isinstance(node, dict) else None


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    slice: str | None


@dataclass
class CompiledProfile:
    url: str
    id: str
    type: str
    elements: list[JsonObject]
    constraints: dict[str, list[Invariant]] = field(default_factory=dict)

    @cached_property
    def slice_filters(self) -> dict[str, list[tuple[str, JsonValue]]]:
        """element id of a slice -> [(child name, fixed/pattern value)] that select its members."""
        out: dict[str, list[tuple[str, JsonValue]]] = {}
        for el in self.elements:
            eid = str(el.get("id", el["path"]))
            own = _prefixed(el, "fixed") or _prefixed(el, "pattern")
            if el.get("sliceName") and ":" in eid.rsplit(".", 1)[-1] and own is not None:
                # a `$this` pattern/value discriminator: the slice's own value selects members
                out.setdefault(eid, []).append(("$this", own[1]))
            head, _, child = eid.rpartition(".")
            if ":" not in head.rsplit(".", 1)[-1]:
                continue
            fixed = _prefixed(el, "fixed") or _prefixed(el, "pattern")
            if fixed is not None:
                out.setdefault(head, []).append((child, fixed[1]))
        return out


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
        url = _canonical(res["url"])
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
        return self.questionnaires.get(_canonical(canonical))

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
            _canonical(sd["url"]): sd
            for sd in supporting
            if sd.get("resourceType") == "StructureDefinition"
            and isinstance(sd.get("url"), str)
            and isinstance((sd.get("differential") or {}).get("element"), list)
        }
        issues: list[Issue] = []
        rt = str(resource.get("resourceType"))
        for url in dict.fromkeys(_canonical(u) for u in urls):
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
        elements = [e for e in sd["differential"]["element"] if isinstance(e, dict) and "path" in e]
        profile = CompiledProfile(url, str(sd.get("id", url)), str(sd.get("type")), elements)
        for el in elements:
            for c in el.get("constraint") or []:
                if (
                    c.get("severity") == "error"
                    and isinstance(c.get("expression"), str)
                    # fhirpathpy 2.2 gives wrong type() results on %context/%resource: never
                    # judge with it (counts as passed, like any invariant we cannot evaluate)
                    and ".type()" not in c["expression"]
                ):
                    inv = compile_invariant(
                        str(c.get("key")), c["expression"], str(c.get("human", ""))
                    )
                    if inv is not None:
                        profile.constraints.setdefault(str(el.get("id", el["path"])), []).append(
                            inv
                        )
        if cache:
            self._compiled[url] = profile
        return profile

    def _select(
        self,
        profile: CompiledProfile,
        resource: JsonObject,
        eid: str,
    ) -> Iterator[tuple[Located, list[Located]]]:
        """(parent, children) pairs for the element id, slices applied."""
        parts = eid.split(".")
        parents: list[Located] = [(resource, parts[0])]
        prefix = parts[0]
        for i, part in enumerate(parts[1:], start=1):
            name, _, slice_name = part.partition(":")
            prefix = f"{prefix}.{part}"
            last = i == len(parts) - 1
            next_parents: list[Located] = []
            for node, path in parents:
                kids = list(self._children(node, path, name))
                if slice_name:
                    filters = profile.slice_filters.get(prefix, [])
                    kids = [
                        (k, p)
                        for k, p in kids
                        if all(_contains(k if f == "$this" else _get(k, f), v) for f, v in filters)
                    ]
                if last:
                    yield (node, path), kids
                next_parents += kids
            parents = next_parents
        if len(parts) == 1:
            yield (resource, parts[0]), [(resource, parts[0])]

    @staticmethod
    def _children(node: JsonValue, path: str, name: str) -> Iterator[Located]:
        if not isinstance(node, dict):
            return
        keys = (
            [name]
            if not name.endswith("[x]")
            else [k for k in node if k.startswith(name[:-3]) and k[len(name) - 3 :][:1].isupper()]
        )
        for key in keys:
            value = node.get(key)
            if value is None:
                continue
            if isinstance(value, list):
                for j, v in enumerate(value):
                    yield v, f"{path}.{key}[{j}]"
            else:
                yield value, f"{path}.{key}"

    def _check(
        self, profile: CompiledProfile, resource: JsonObject, known: KnownArtefacts | None
    ) -> list[Issue]:
        issues: list[Issue] = []
        tag = f" (profile {profile.id})"
        for el in profile.elements:
            eid = str(el.get("id", el["path"]))
            for (_, parent_path), kids in self._select(profile, resource, eid):
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
        fixed = _prefixed(el, "fixed")
        if fixed is not None and kid != fixed[1]:
            out.append(Issue("error", "value", f"Value does not equal the fixed value{tag}", path))
        pattern = _prefixed(el, "pattern")
        if pattern is not None and not _contains(kid, pattern[1]):
            out.append(
                Issue("error", "value", f"Value does not match the required pattern{tag}", path)
            )
        binding = el.get("binding")
        if isinstance(binding, dict) and binding.get("strength") == "required":
            url = _canonical(str(binding.get("valueSet", "")))
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
