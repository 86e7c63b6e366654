"""What one record mapped to: the resources built, the issues, the source fields used, ignored or
left unmapped, the trace (each output element's source field with its rule, built on first read).
"""

from __future__ import annotations

from dataclasses import dataclass

from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.mapping.trace import TraceEntry
from adapter.sources.record import SourceRecord


@dataclass(slots=True)
class MappedResource:
    name: str
    resource: JsonObject
    #: (identifier system, value) when the resource is found-or-created by identifier
    match: tuple[str, str] | None = None

    @property
    def reference(self) -> str:
        return f"{self.resource['resourceType']}/{self.resource['id']}"


@dataclass(slots=True, init=False, eq=False)
class MappingResult:
    """What one record mapped to. The trace is kept as plain rows while the engine runs and becomes
    TraceEntry objects only when someone reads `trace` (`--trace`, `source_of`): most records are
    never asked, and building ~100 frozen entries per record was a fifth of the engine's cost."""

    mapping_id: str
    record: SourceRecord
    resources: list[MappedResource]
    issues: list[Issue]
    used: set[str]
    unmapped: list[str]
    ignored: list[str]
    #: [resource, path, source, rule, position] per entry, in order, until `trace` is first read
    trace_rows: list[list[str]] | None
    _trace: list[TraceEntry]

    def __init__(
        self,
        mapping_id: str,
        record: SourceRecord,
        resources: list[MappedResource] | None = None,
        issues: list[Issue] | None = None,
        trace: list[TraceEntry] | None = None,
        used: set[str] | None = None,
        unmapped: list[str] | None = None,
        ignored: list[str] | None = None,
    ) -> None:
        self.mapping_id = mapping_id
        self.record = record
        self.resources = [] if resources is None else resources
        self.issues = [] if issues is None else issues
        self._trace = [] if trace is None else trace
        self.trace_rows = None
        self.used = set() if used is None else used
        self.unmapped = [] if unmapped is None else unmapped
        self.ignored = [] if ignored is None else ignored

    def __eq__(self, other: object) -> bool:
        """Equal content, whether or not either trace has been built yet."""
        if not isinstance(other, MappingResult):
            return NotImplemented
        return self._key() == other._key()

    def _key(self) -> tuple[object, ...]:
        return (
            self.mapping_id,
            self.record,
            self.resources,
            self.issues,
            self.used,
            self.unmapped,
            self.ignored,
            self.trace,
        )

    @property
    def trace(self) -> list[TraceEntry]:
        """For each output element, the source field and rule behind it (built on first read)."""
        if self.trace_rows is not None:
            self._trace.extend([TraceEntry(*row) for row in self.trace_rows])
            self.trace_rows = None
        return self._trace

    @trace.setter
    def trace(self, entries: list[TraceEntry]) -> None:
        self._trace = entries
        self.trace_rows = None

    def source_of(self, resource_ref: str, path: str) -> str | None:
        """The source key behind an output element (for pointing pipeline issues back at the source)."""
        for entry in self.trace:
            related = (
                path == entry.path
                or path.startswith(entry.path + ".")
                or entry.path.startswith(path)
            )
            synthetic = entry.source == "const" or entry.source.startswith(
                ("ref:", "aggregate:", "setting:")
            )
            if entry.resource == resource_ref and related and not synthetic:
                return entry.source
        return None
