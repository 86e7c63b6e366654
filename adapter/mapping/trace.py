"""The mapping trace: for each output element, which source field and which mapping rule produced it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TraceEntry:
    #: `Patient/3f2a…` (the deterministic id) or `Patient?identifier=…` for a conditional match
    resource: str
    #: element path inside the resource, e.g. `identifier[0].value`
    path: str
    #: source key (`PID-3.1`, `care_coordinator`), or `const`, `ref:<name>`, `aggregate:<fn>`
    source: str
    #: `<mapping id>@<version>#<rule locator>`, e.g. `hl7v2-ref-i12-referral@1.0.0#patient.rules[0]`
    rule: str
    #: human position of the source field (`segment 2 (PID) field 3 component 1`)
    position: str = ""

    def render(self) -> str:
        where = f" ({self.position})" if self.position and self.position != self.source else ""
        return f"{self.resource}.{self.path} <- {self.source}{where} [{self.rule}]"
