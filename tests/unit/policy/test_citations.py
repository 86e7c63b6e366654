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


@pytest.mark.skipif(not SEEDS.is_dir(), reason=f"seed documents not found at {SEEDS}")
@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_quote_is_verbatim_in_the_cited_seed(rule) -> None:
    seed_file = rule.citation.split(":", 1)[0]
    assert re.fullmatch(r"\d{3}_[0-9a-f]{16}\.txt", seed_file), rule.citation
    text = _seed(seed_file)
    for fragment in re.split(r"\u2026|\.\.\.", rule.quote):
        fragment = _norm(fragment).strip(" ;,.[]")
        if len(fragment) > 3:
            assert fragment in text, f"{rule.id}: {fragment!r} not in {seed_file}"
