"""Runs the conformance checks over one resource and returns every issue.

Structural parsing (fhir.resources R4B) is done by the pipeline first, so that structurally invalid
input is answered 400 before anything here runs; everything here answers 422. The order is: the
instance walk (formats, bindings, ele-1, invariants), references, UK identifiers, our profiles (from
meta.profile and ctx.profiles) and, for a QuestionnaireResponse, its Questionnaire.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from adapter.conformance.artefacts import artefact_issues
from adapter.conformance.bundles import bundle_issues
from adapter.conformance.definitions import core_definitions
from adapter.conformance.extensions import UnknownExtensionPolicy
from adapter.conformance.invariants import InvariantRunner
from adapter.conformance.profiles import ProfileRegistry
from adapter.conformance.questionnaire import (
    QuestionnaireIndex,
    QuestionnaireLookup,
    questionnaire_issues,
)
from adapter.conformance.references import (
    hl7_publication_issues,
    parameters_reference_issues,
    reference_issues,
)
from adapter.conformance.structure import InstanceWalker, WalkResult
from adapter.conformance.terminology import KnownArtefacts, core_artefacts
from adapter.conformance.vitalsigns import vital_signs_issues
from adapter.context import ValidationContext
from adapter.fhir.types import JsonObject
from adapter.issue import Issue


def _canonical_key(url: str) -> str:
    return url.split("|", 1)[0]


class ConformanceValidator:
    """The conformance stage. Built once at start-up; `validate` is pure and thread-safe.

    `questionnaire_lookup` resolves a Questionnaire canonical (e.g. from the store's search) when it
    is not in the Bundle, contained, or profiles/questionnaires/. `unknown_extensions` says what
    an extension we hold no definition for is worth (extensions.py): "allow" or "error".
    `no_html_in_markdown` and `security_checks` are the reference validator's options of those
    names: markdown may not contain HTML tags; strings may not contain HTML tags. The other options
    are also the reference validator's, all off by default: `no_example_urls` (its `examples:
    false`: uri/url/canonical values may not be example.org/.com/.net URLs),
    `resolve_parameters_references` (its `validateReference` inside a Parameters: a relative
    reference in a parameter's resource must name another parameter's resource) and
    `hl7_publication` (its `for-publication`: an HL7 canonical resource must name its owning work
    group with the structuredefinition-wg extension).
    """

    def __init__(
        self,
        *,
        profiles_dir: Path | None = None,
        questionnaire_lookup: QuestionnaireLookup | None = None,
        unknown_extensions: UnknownExtensionPolicy = "allow",
        no_html_in_markdown: bool = False,
        security_checks: bool = False,
        no_example_urls: bool = False,
        resolve_parameters_references: bool = False,
        hl7_publication: bool = False,
    ) -> None:
        if profiles_dir is None:
            from adapter.settings import Settings

            profiles_dir = Settings().profiles_dir
        self.profiles_dir = profiles_dir
        self.profiles = ProfileRegistry.load(profiles_dir)
        self.questionnaire_lookup = questionnaire_lookup
        self.unknown_extensions: UnknownExtensionPolicy = unknown_extensions
        self.no_html_in_markdown = no_html_in_markdown
        self.security_checks = security_checks
        self.no_example_urls = no_example_urls
        self.resolve_parameters_references = resolve_parameters_references
        self.hl7_publication = hl7_publication
        self._known: KnownArtefacts = core_artefacts().with_supporting(
            [
                *self.profiles.structure_definitions.values(),
                *self.profiles.code_systems.values(),
                *self.profiles.value_sets.values(),
                *self.profiles.questionnaires.values(),
            ]
        )
        self._walker = InstanceWalker(core_definitions(), InvariantRunner())
        #: id(Questionnaire) -> (it, its index), for ours: they live and stay unchanged for the
        #: process, so what the checker derives from their items is derived once.
        self._questionnaire_indexes: dict[int, tuple[JsonObject, QuestionnaireIndex]] = {
            id(q): (q, QuestionnaireIndex()) for q in self.profiles.questionnaires.values()
        }

    def validate(self, resource: JsonObject, ctx: ValidationContext) -> list[Issue]:
        return self.validate_with_supporting(resource, ctx, ())

    def validate_with_supporting(
        self, resource: JsonObject, ctx: ValidationContext, supporting: Iterable[JsonObject]
    ) -> list[Issue]:
        """As `validate`, with extra Questionnaires and profiles available for this call only."""
        supporting = list(supporting)
        rt = str(resource.get("resourceType", "Resource"))
        known = self._known.with_supporting(supporting) if supporting else self._known
        walk = WalkResult(
            known=known,
            unknown_extensions=self.unknown_extensions,
            no_html_in_markdown=self.no_html_in_markdown,
            security_checks=self.security_checks,
            no_example_urls=self.no_example_urls,
        )
        self._walker.walk_resource(resource, rt, None, walk)
        issues = walk.issues
        issues += reference_issues(
            walk.references, ctx, own_bundle=resource if rt == "Bundle" else None
        )
        if rt == "Parameters" and self.resolve_parameters_references:
            issues += parameters_reference_issues(resource, walk.references)
        if self.hl7_publication:
            issues += hl7_publication_issues(resource, rt)
        if rt == "Observation":
            issues += vital_signs_issues(resource)
        if rt == "Bundle":
            issues += bundle_issues(resource)
            for i, entry in enumerate(resource.get("entry") or []):
                res = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(res, dict) and res.get("resourceType") == "Observation":
                    issues += vital_signs_issues(res, f"Bundle.entry[{i}].resource")
        issues += artefact_issues(resource, rt, known)
        requested = (
            (*ctx.profiles, *_global_profiles(supporting, rt)) if supporting else ctx.profiles
        )
        issues += self.profiles.validate(resource, requested, supporting, known)
        if rt != "QuestionnaireResponse" and rt != "Bundle":
            return issues  # no QuestionnaireResponse to judge against its Questionnaire
        for path, qr, holder in _responses(resource, rt):
            q = self._find_questionnaire(qr, holder, ctx, supporting)
            if q is not None and "_wrong_type" in q:
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"The questionnaire canonical refers to a {q['_wrong_type']}",
                        f"{path}.questionnaire",
                    )
                )
            elif q is not None:
                issues += [
                    i.rebased(path) if path != "QuestionnaireResponse" else i
                    for i in questionnaire_issues(q, qr, known, self._kept_index(q))
                ]
            elif isinstance(qr.get("questionnaire"), str):
                found = known.canonical_type(qr["questionnaire"])
                if found is not None and found != "Questionnaire":
                    issues.append(
                        Issue(
                            "error",
                            "invalid",
                            f"The questionnaire canonical refers to a {found}, not a Questionnaire",
                            f"{path}.questionnaire",
                        )
                    )
        return issues

    def _kept_index(self, q: JsonObject) -> QuestionnaireIndex | None:
        kept = self._questionnaire_indexes.get(id(q))
        return kept[1] if kept is not None and kept[0] is q else None

    def _find_questionnaire(
        self,
        qr: JsonObject,
        holder: JsonObject,
        ctx: ValidationContext,
        supporting: list[JsonObject],
    ) -> JsonObject | None:
        url = qr.get("questionnaire")
        if not isinstance(url, str):
            return None
        key = _canonical_key(url)
        candidates: list[JsonObject] = list(supporting)
        candidates += [c for c in holder.get("contained") or [] if isinstance(c, dict)]
        candidates += [res for _, _, res in ctx.bundle_resources()]
        if url.startswith("#"):
            return next(
                (
                    c
                    for c in candidates
                    if c.get("resourceType") == "Questionnaire" and c.get("id") == url[1:]
                ),
                None,
            )
        for c in candidates:
            if (
                c.get("resourceType") == "Questionnaire"
                and isinstance(c.get("url"), str)
                and (_canonical_key(c["url"]) == key)
            ):
                return c
        found = self.profiles.questionnaire(key)
        if found is not None:
            return found
        if self.questionnaire_lookup is not None:
            found = self.questionnaire_lookup(url)
            if found is not None:
                return found
        if ctx.store_lookup is not None and "/Questionnaire/" in key:
            return ctx.store_lookup("Questionnaire", key.rsplit("/", 1)[-1])
        return None


def _global_profiles(supporting: list[JsonObject], rt: str) -> list[str]:
    """ImplementationGuide.global: profiles every resource of a type covered by the guide meets."""
    return [
        str(g["profile"])
        for ig in supporting
        if ig.get("resourceType") == "ImplementationGuide"
        for g in ig.get("global") or []
        if isinstance(g, dict) and g.get("type") == rt and isinstance(g.get("profile"), str)
    ]


def _responses(resource: JsonObject, rt: str) -> list[tuple[str, JsonObject, JsonObject]]:
    """(path, QuestionnaireResponse, resource holding its contained) for the resource and entries."""
    if rt == "QuestionnaireResponse":
        return [("QuestionnaireResponse", resource, resource)]
    out: list[tuple[str, JsonObject, JsonObject]] = []
    if rt == "Bundle":
        for i, entry in enumerate(resource.get("entry") or []):
            res = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(res, dict) and res.get("resourceType") == "QuestionnaireResponse":
                out.append((f"Bundle.entry[{i}].resource", res, res))
    return out
