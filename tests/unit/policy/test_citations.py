"""Every rule's quote is verbatim from the seed file its citation names (ellipses allowed)."""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

import pytest

from adapter.policy.rulepack import load_pack

ROOT = Path(__file__).resolve().parents[3]
SEEDS = Path(os.environ.get("ADAPTER_SEEDS_DIR", ROOT.parent / "shared" / "seeds"))
RULES = [
    r
    for d in sorted((ROOT / "profiles" / "policy").iterdir())
    if (d / "pack.yaml").exists()
    for r in load_pack(d).rules
]


def _norm(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"')
    text = text.replace("\u201d", '"').replace("\u2013", "-").replace("\u2014", "-")
    text = re.sub(r"-\s*\n\s*", "-", text)
    return re.sub(r"\s+", " ", text).lower()


@cache
def _seed(name: str) -> str:
    return _norm((SEEDS / name).read_text(encoding="utf-8", errors="replace"))


@cache
def _lines(name: str) -> list[str]:
    return (SEEDS / name).read_text(encoding="utf-8", errors="replace").splitlines()


def _cited_ranges(citation: str, seed_file: str) -> list[tuple[int, int]]:
    """Line ranges of `seed_file` in a citation like `f.txt:12-14 (s); 20; g.txt:5`."""
    ranges, current = [], seed_file
    for m in re.finditer(r"(?:(\d{3}_[0-9a-f]{16}\.txt):)?(\d+)(?:-(\d+))?(?![\d.])", citation):
        current = m.group(1) or current
        if current == seed_file:
            ranges.append((int(m.group(2)), int(m.group(3) or m.group(2))))
    return ranges


def _fragments(quote: str) -> list[str]:
    parts = (_norm(f).strip(" ;,.[]") for f in re.split(r"\u2026|\.\.\.", quote))
    return [p for p in parts if len(p) > 3]


@pytest.mark.skipif(not SEEDS.is_dir(), reason=f"seed documents not found at {SEEDS}")
@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_quote_is_verbatim_in_the_cited_seed(rule) -> None:
    seed_file = rule.citation.split(":", 1)[0]
    assert re.fullmatch(r"\d{3}_[0-9a-f]{16}\.txt", seed_file), rule.citation
    text = _seed(seed_file)
    for fragment in _fragments(rule.quote):
        assert fragment in text, f"{rule.id}: {fragment!r} not in {seed_file}"


@pytest.mark.skipif(not SEEDS.is_dir(), reason=f"seed documents not found at {SEEDS}")
@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_quote_lies_within_the_cited_lines(rule) -> None:
    """One line of slack either side: PDF extraction splits sentences across lines."""
    seed_file = rule.citation.split(":", 1)[0]
    lines = _lines(seed_file)
    ranges = _cited_ranges(rule.citation, seed_file)
    assert ranges, rule.citation
    windows = [_norm("\n".join(lines[max(a - 2, 0) : b + 1])) for a, b in ranges]
    for fragment in _fragments(rule.quote):
        assert any(fragment in w for w in windows), (
            f"{rule.id}: {fragment!r} is not within {seed_file} lines {ranges}"
        )
