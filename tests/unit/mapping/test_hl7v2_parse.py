"""The v2 splitter keys every field exactly as walking python-hl7's full parse tree does."""

from __future__ import annotations

import random

import pytest

from adapter.errors import SourceParseError
from adapter.sources.hl7v2 import parse_message, split_messages
from tests.support.hl7_reference import flatten
from tests.unit.mapping.golden import FIXTURES

V2_FIXTURES = sorted(FIXTURES.glob("hl7v2-*/*/input.hl7"))

CRAFTED = [
    # repetitions, components, subcomponents, escapes, empty and null fields, trailing separators
    'MSH|^~\\&|A|B\rPID|1||A&B||X~Y|P^Q&R~S|T\\F\\U|^^|~|""|',
    "MSH|^~\\&|A|B\rZZZ|A^B&C^|~X^Y||\\E\\\\S\\\\T\\\\R\\|^^^^5",
    "MSH|^~\\&|SND|FAC|RCV|RFAC|20261120101500||ORU^R01^ORU_R01|C1|P|2.5.1\r"
    "PID|1||9990000018^^^NHS^NH~X1^^^RIO^MR||SMITH^ANN^^^MS||19800101|F\r"
    "OBX|1|NM|1234^Item^SCT||5||||||F\rOBX|2|ST|||a\\T\\b c",
]


def _keys(raw: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    record = parse_message(raw)
    return dict(record.values), dict(record.positions), dict(record.aliases)


@pytest.mark.parametrize(
    "path", V2_FIXTURES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}"
)
def test_every_v2_fixture_is_keyed_as_python_hl7_keys_it(path):
    for message in split_messages(path.read_bytes()):
        assert _keys(message) == flatten(message)


@pytest.mark.parametrize("raw", CRAFTED)
def test_crafted_messages_are_keyed_as_python_hl7_keys_them(raw):
    assert _keys(raw) == flatten(raw)


def test_randomly_shaped_fields_are_keyed_as_python_hl7_keys_them():
    rng = random.Random(2026)
    atoms = ["a", "B1", "", "\\F\\", "x\\T\\y", '""', "9990000018"]
    for _ in range(300):
        segments = ["MSH|^~\\&|A|B|C|D|20261120||ORU^R01|C1|P|2.5.1"]
        for _s in range(rng.randint(1, 4)):
            fields = []
            for _f in range(rng.randint(1, 8)):
                reps = []
                for _r in range(rng.choice([1, 1, 1, 2, 3])):
                    comps = [
                        "&".join(rng.choice(atoms) for _ in range(rng.choice([1, 1, 2])))
                        for _c in range(rng.choice([1, 1, 2, 4]))
                    ]
                    reps.append("^".join(comps))
                fields.append("~".join(reps))
            segments.append("|".join([rng.choice(["PID", "OBX", "ZZ1"]), *fields]))
        raw = "\r".join(segments)
        assert _keys(raw) == flatten(raw), raw


@pytest.mark.parametrize(
    ("raw", "expression"),
    [
        ("PID|1", "MSH"),
        ("MSH|^~", "MSH"),
        ("MSH|^~\\&|A\rP-D|x", "segment 2"),
        ("MSH|^~\\&|A\rpid|x", "segment 2"),
    ],
)
def test_malformed_messages_are_refused_naming_where(raw, expression):
    with pytest.raises(SourceParseError) as caught:
        parse_message(raw)
    assert caught.value.issues[0].expression == expression
