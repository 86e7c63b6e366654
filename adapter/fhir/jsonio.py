"""FHIR JSON in and out, keeping decimal precision (`1.50` stays `1.50`, as R4 requires)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import simplejson

from adapter.fhir.types import JsonObject


class JsonSyntaxError(ValueError):
    def __init__(self, msg: str, line: int, column: int):
        super().__init__(msg)
        self.line = line
        self.column = column


def loads(data: bytes | str) -> Any:
    """Parses JSON with decimals as `Decimal`. Rejects NaN/Infinity and duplicate keys."""

    def _no_constant(name: str) -> Any:
        raise JsonSyntaxError(f"{name} is not valid JSON", 0, 0)

    def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise JsonSyntaxError(f"duplicate property {k!r}", 0, 0)
            out[k] = v
        return out

    try:
        return simplejson.loads(
            data,
            use_decimal=True,
            object_pairs_hook=_pairs,
            parse_constant=_no_constant,
        )
    except simplejson.JSONDecodeError as exc:
        raise JsonSyntaxError(exc.msg, exc.lineno, exc.colno) from exc
    except UnicodeDecodeError as exc:
        raise JsonSyntaxError("payload is not UTF-8", 0, 0) from exc
    except RecursionError as exc:
        raise JsonSyntaxError("JSON nested too deeply", 0, 0) from exc


class _HasDecimal(Exception):
    """A Decimal met by the standard library's encoder: the tree goes to simplejson instead."""


def _refuse_decimal(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        raise _HasDecimal
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


#: The standard library's C encoder writes compact JSON about twice as fast as simplejson's, but
#: cannot write a Decimal as a number; a tree with one is written by simplejson. The two agree
#: byte for byte on everything else (tests/unit/core/test_jsonio.py checks the official examples).
_COMPACT = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_refuse_decimal
)


def dumps(obj: JsonObject | list[Any], *, indent: int | None = None) -> str:
    if indent is None:
        try:
            return _COMPACT.encode(obj)
        except _HasDecimal:
            pass
    return str(
        simplejson.dumps(
            obj,
            use_decimal=True,
            ensure_ascii=False,
            indent=indent,
            separators=None if indent else (",", ":"),
        )
    )


def copy_json(obj: Any) -> Any:
    """A deep copy of a JSON tree (dicts and lists copied; str, numbers, Decimal, bool and None
    are immutable and shared). Several times faster than `copy.deepcopy`, which the pipeline
    used to spend a tenth of its time in."""
    if isinstance(obj, dict):
        return {k: copy_json(v) if isinstance(v, dict | list) else v for k, v in obj.items()}
    if isinstance(obj, list):
        return [copy_json(v) if isinstance(v, dict | list) else v for v in obj]
    return obj


def to_plain(obj: Any) -> Any:
    """Decimals to int/float, for libraries (fhirpathpy, pydantic) that want plain JSON types."""
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Decimal):
        return int(obj) if obj == obj.to_integral_value() and "." not in str(obj) else float(obj)
    return obj
