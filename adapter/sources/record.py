"""`SourceRecord`: one unit of inbound data (a CSV row, an HL7 v2 message, a FHIR resource), flattened.

Every source turns bytes into SourceRecords whose `values` are leaf strings keyed by a path in the
source's own vocabulary (`PID-3.1`, `care_coordinator`, `subject.identifier.value`) and whose
`positions` say where each one sat (line/column, segment/field). The mapping engine reads only this
shape, so it never needs to know which kind of source it is looking at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

#: `SourceRecord.header` key of a record that could not be read (a malformed CSV row, an
#: unparseable v2 message): its value is the reason. Such a record is dead-lettered, never mapped.
ERROR_KEY: Final = "error"


@dataclass(frozen=True, slots=True)
class GroupInstance:
    """One occurrence of a repeating group (an OBX segment, a JSON array element)."""

    index: int
    #: local key (as a mapping rule writes it) -> global key in `SourceRecord.values`
    keys: dict[str, str]


@dataclass(slots=True)
class SourceRecord:
    kind: str
    #: Where the record came from, for reports: "file.csv line 4", "MSH-10=MSG0001".
    locator: str
    values: dict[str, str]
    positions: dict[str, str] = field(default_factory=dict)
    #: The original row or message text, kept whole for dead-letter files.
    raw: str = ""
    #: Facts about the record itself (message type, trigger event, resourceType).
    header: dict[str, str] = field(default_factory=dict)
    group_finder: Callable[[SourceRecord, str], list[GroupInstance]] | None = None
    #: Other spellings of a key (`PID-8.1` for a field without components is `PID-8`).
    aliases: dict[str, str] = field(default_factory=dict)
    #: groups already found (a record is read-only once built, so they never go stale)
    group_cache: dict[str, list[GroupInstance]] = field(default_factory=dict)

    def resolve(self, key: str) -> str | None:
        """The real key behind `key`, or None when the record has no non-empty value there."""
        real = self.aliases.get(key, key)
        return real if self.values.get(real, "") != "" else None

    def get(self, key: str) -> str | None:
        real = self.resolve(key)
        return None if real is None else self.values[real]

    def group(self, name: str) -> list[GroupInstance]:
        found = self.group_cache.get(name)
        if found is None:
            found = [] if self.group_finder is None else self.group_finder(self, name)
            self.group_cache[name] = found
        return found

    def position(self, key: str) -> str:
        return self.positions.get(key, key)

    def non_empty_keys(self) -> list[str]:
        return [k for k, v in self.values.items() if v != ""]


def prefix_groups(record: SourceRecord, name: str) -> list[GroupInstance]:
    """Groups for path-keyed sources: `item[0].linkId` is local `linkId` of instance 0 of `item`."""
    instances: dict[int, dict[str, str]] = {}
    opener = f"{name}["
    for key in record.values:
        if not key.startswith(opener):
            continue
        close = key.find("]", len(opener))
        index_text = key[len(opener) : close]
        if close < 0 or not index_text.isdigit():
            continue
        rest = key[close + 1 :]
        local = rest[1:] if rest.startswith(".") else rest
        instances.setdefault(int(index_text), {})[local or "."] = key
    return [GroupInstance(i, keys) for i, keys in sorted(instances.items())]
