"""`jsonio.dumps` writes compact JSON with the standard library's encoder unless the tree holds a
Decimal, when simplejson writes it. The two must agree byte for byte, or a stored resource's text
(and its ETag-bearing body) would depend on which encoder wrote it. Checked over every official
R4 example, as parsed (with Decimals: simplejson) and with its decimals made plain numbers (the
standard library's path), against simplejson alone."""

from __future__ import annotations

import tarfile
from pathlib import Path

import simplejson

from adapter.fhir import jsonio
from tests.corpus.harness import require_corpora
from tests.support.corpus import EXAMPLES_TGZ, example_files


def _simplejson(obj: object) -> str:
    return str(simplejson.dumps(obj, use_decimal=True, ensure_ascii=False, separators=(",", ":")))


def test_both_encoders_write_every_official_example_identically() -> None:
    tgz = require_corpora() / EXAMPLES_TGZ
    compared = 0
    for name, data in example_files(tgz, _all_types(tgz)):
        try:
            parsed = jsonio.loads(data)
        except jsonio.JsonSyntaxError:
            continue
        plain = jsonio.to_plain(parsed)
        assert jsonio.dumps(parsed) == _simplejson(parsed), name
        assert jsonio.dumps(plain) == _simplejson(plain), name
        compared += 1
    assert compared > 2000


def _all_types(tgz: Path) -> frozenset[str]:
    with tarfile.open(tgz) as tar:
        return frozenset(m.name.rsplit("/", 1)[-1].split("-", 1)[0] for m in tar.getmembers())
