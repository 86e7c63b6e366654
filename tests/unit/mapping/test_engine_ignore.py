"""`ignore` patterns: the first matching pattern's reason, exactly as fnmatch (case-sensitive) says."""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest

from adapter.mapping.engine import _ignore_matcher

PATTERNS = (
    ("MSH-7*", "message time is not clinical"),
    ("OBX[[]*]-1", "set ids"),
    ("PID-*", "demographics come from PDS"),
    ("EVN-?", "event type"),
    ("note_*.text", "free text"),
)
KEYS = [
    "MSH-7",
    "MSH-7.1",
    "MSH-70",
    "OBX[2]-1",
    "OBX-1",
    "PID-5.1",
    "pid-5",
    "EVN-1",
    "EVN-10",
    "note_a.text",
    "note_a.textx",
    "ZZZ",
    "",
]


@pytest.mark.parametrize("key", KEYS)
def test_the_first_matching_pattern_gives_the_reason_as_fnmatchcase_would(key):
    expected = next((why for pattern, why in PATTERNS if fnmatchcase(key, pattern)), None)
    assert _ignore_matcher(PATTERNS)(key) == expected


def test_no_patterns_ignore_nothing():
    assert _ignore_matcher(())("MSH-7") is None
