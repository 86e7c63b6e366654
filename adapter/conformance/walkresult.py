"""The state of one instance walk (structure.py): its options in, its findings out.

The validator makes a `WalkResult` per resource with the call's options (known artefacts, the
unknown-extension policy, the reference validator's text options); the walk adds its issues and
every Reference it finds (`FoundReference`, with the target types its element allows, for
references.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapter.conformance.extensions import UnknownExtensionPolicy
from adapter.conformance.terminology import KnownArtefacts, core_artefacts
from adapter.fhir.types import JsonObject
from adapter.issue import Issue


@dataclass(frozen=True, slots=True)
class FoundReference:
    expression: str  # path of the Reference element
    reference: JsonObject
    targets: tuple[str, ...]  # allowed target types; empty or ("Resource",) means any
    resource: JsonObject  # the (possibly contained) resource holding it
    root: JsonObject


@dataclass(slots=True)
class WalkResult:
    issues: list[Issue] = field(default_factory=list)
    references: list[FoundReference] = field(default_factory=list)
    #: Code systems and extension definitions known for this call.
    known: KnownArtefacts = field(default_factory=core_artefacts)
    unknown_extensions: UnknownExtensionPolicy = "allow"
    #: Reference-validator options (off by default): HTML tags in markdown, HTML in strings.
    no_html_in_markdown: bool = False
    security_checks: bool = False
    #: The reference validator's `examples: false`: example URLs (example.org, …) are errors.
    no_example_urls: bool = False
    #: Any of the three text options above is on (worked out once, read at every primitive).
    text_checks: bool = field(init=False)

    def __post_init__(self) -> None:
        self.text_checks = self.no_html_in_markdown or self.security_checks or self.no_example_urls
