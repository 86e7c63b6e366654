"""Collects error/no-error agreement per corpus slice, for the summary table and docs."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.corpus.harness import CaseResult


@dataclass
class Slice:
    name: str
    results: list[CaseResult] = field(default_factory=list)

    @property
    def agreeing(self) -> int:
        return sum(r.agrees for r in self.results)

    @property
    def false_errors(self) -> int:
        return sum(r.got_error and not r.expected_error for r in self.results)

    @property
    def missed(self) -> int:
        return sum(r.expected_error and not r.got_error for r in self.results)

    @property
    def ratio(self) -> float:
        return self.agreeing / len(self.results) if self.results else 1.0


SLICES: dict[str, Slice] = {}


def record(name: str, results: list[CaseResult]) -> Slice:
    SLICES[name] = Slice(name, results)
    return SLICES[name]


def table_markdown() -> str:
    if not SLICES:
        return ""
    lines = [
        "| corpus slice | cases | agree | agreement | false errors | missed errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in SLICES.values():
        lines.append(
            f"| {s.name} | {len(s.results)} | {s.agreeing} | {s.ratio:.1%} | "
            f"{s.false_errors} | {s.missed} |"
        )
    return "\n".join(lines)
