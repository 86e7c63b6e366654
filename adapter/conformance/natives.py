"""Python equivalents of the hottest R4 invariants, so they skip the FHIRPath interpreter.

fhirpathpy costs 0.1-1 ms per evaluation; these run in microseconds. Each function returns what the
invariant's expression returns on a node (True = passes) and is checked against fhirpathpy in
tests/unit/conformance/test_natives.py. Keys not listed here are evaluated with fhirpathpy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Final

from adapter.fhir.types import JsonObject, JsonValue

_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")
Native = Callable[[JsonObject, JsonObject, JsonObject], bool]


def _has(node: JsonObject, name: str) -> bool:
    """Whether element `name` (a choice stem like `value` included) is present with content."""
    if name in node or "_" + name in node:
        return True
    n = len(name)
    for k in node:  # noqa: SIM110  # a plain loop: this runs at every node, a generator costs more
        if k.startswith(name) and k[n : n + 1].isupper():
            return True
    return False


def has_matches(key: str, name: str) -> bool:
    """Whether property `key` alone makes `_has(node, name)` true."""
    return key in (name, "_" + name) or (
        key.startswith(name) and key[len(name) : len(name) + 1].isupper()
    )


def _strings(node: JsonValue) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def _ref_1(node: JsonObject, _resource: JsonObject, root: JsonObject) -> bool:
    ref = node.get("reference")
    if not isinstance(ref, str) or not ref.startswith("#"):
        return True
    ids = {c.get("id") for c in root.get("contained") or [] if isinstance(c, dict)}
    return ref[1:] in ids


def _dom_3(node: JsonObject, resource: JsonObject, _root: JsonObject) -> bool:
    contained = [c for c in node.get("contained") or [] if isinstance(c, dict)]
    if not contained:
        return True
    values = set(_strings(resource))
    for c in contained:
        cid = c.get("id")
        if not isinstance(cid, str) or not _ID.fullmatch(cid):
            continue  # as the reference validator: an invalid id is not judged here
        if f"#{cid}" in values:
            continue
        if "#" in set(_strings(c)):
            continue
        return False
    return True


def _instant(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _per_1(node: JsonObject, _resource: JsonObject, _root: JsonObject) -> bool:
    start, end = node.get("start"), node.get("end")
    if not isinstance(start, str) or not isinstance(end, str):
        return True
    if "T" in start and "T" in end:
        a, b = _instant(start), _instant(end)
        if a is not None and b is not None and (a.tzinfo is None) == (b.tzinfo is None):
            return a <= b
        return True  # let the format check speak; never a false invariant error
    ds, de = start.split("T", 1)[0], end.split("T", 1)[0]
    n = min(len(ds), len(de))
    if ds[:n] != de[:n]:
        return ds[:n] < de[:n]
    # Equal at the shared precision: FHIRPath gives empty unless the precisions are equal.
    return start == end or (len(ds) == len(de) and "T" not in start and "T" not in end)


def _type(node: JsonObject) -> JsonValue:
    return node.get("type")


def _obs_7(node: JsonObject, resource: JsonObject, _root: JsonObject) -> bool:
    if not _has(node, "value"):
        return True
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    if not isinstance(codings, list) or not codings:
        return True
    for comp in node.get("component") or []:
        ccode = comp.get("code") if isinstance(comp, dict) else None
        for c in (ccode.get("coding") or []) if isinstance(ccode, dict) else []:
            if c in codings:
                return False
    return True


def _que_1(node: JsonObject, _resource: JsonObject, _root: JsonObject) -> bool:
    if _type(node) == "group" and not node.get("item"):
        return False
    return not (_type(node) == "display" and _has(node, "item"))


_QUE_5_TYPES: Final = frozenset(
    {
        "choice",
        "open-choice",
        "decimal",
        "integer",
        "date",
        "dateTime",
        "time",
        "string",
        "quantity",
    }
)


def _codings(node: JsonObject, name: str) -> list[JsonObject]:
    cc = node.get(name)
    return [
        c for c in (cc.get("coding") or [] if isinstance(cc, dict) else []) if isinstance(c, dict)
    ]


def _coded(node: JsonObject, name: str, system: str, codes: frozenset[str]) -> bool:
    return any(c.get("system") == system and c.get("code") in codes for c in _codings(node, name))


_CLINICAL: Final = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_VER_STATUS: Final = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def _consent_scope(code: str) -> Native:
    """ppc-2..5: a Consent with that scope needs a patient (R4 spells the system 'something')."""
    codes = frozenset({code})
    return lambda n, _r, _o: _has(n, "patient") or not _coded(n, "scope", "something", codes)


def _linkids(node: JsonValue, out: list[JsonValue]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "linkId":
                out.append(v)
            else:
                _linkids(v, out)
    elif isinstance(node, list):
        for v in node:
            _linkids(v, out)


def _que_2(node: JsonObject, _resource: JsonObject, _root: JsonObject) -> bool:
    found: list[JsonValue] = []
    for k, v in node.items():
        if k != "linkId":
            _linkids(v, found)
    keys = [str(x) for x in found]
    return len(keys) == len(set(keys))


def _que_7(node: JsonObject, _resource: JsonObject, _root: JsonObject) -> bool:
    if node.get("operator") != "exists":
        return True
    answers = [k for k in node if k.startswith("answer")]
    return not answers or "answerBoolean" in answers


def _ras_2(node: JsonObject, _resource: JsonObject, _root: JsonObject) -> bool:
    p = node.get("probabilityDecimal")
    return p is None or isinstance(p, bool) or not isinstance(p, (int, float, Decimal)) or p <= 100


def _inv_1(node: JsonObject, _resource: JsonObject, _root: JsonObject) -> bool:
    part, value, res = _has(node, "part"), _has(node, "value"), _has(node, "resource")
    return (part and not value and not res) or (not part and (value != res))


#: Natives that pass on any node where `_has(node, name)` is false: the walk skips them there.
#: Checked in tests/unit/conformance/test_native_guards.py.
HAS_GUARD: Final[dict[str, str]] = {
    "qrs-1": "item",
    "obs-6": "dataAbsentReason",
    "att-1": "data",
    "qty-3": "code",
    "cpt-2": "value",
    "que-4": "answerOption",
    "prr-1": "orderDetail",
    "cpl-3": "detail",
    "con-4": "abatement",
}

NATIVES: Final[dict[str, Native]] = {
    "con-4": lambda n, _r, _o: (
        not _has(n, "abatement")
        or _coded(n, "clinicalStatus", _CLINICAL, frozenset({"resolved", "remission", "inactive"}))
    ),
    "con-5": lambda n, _r, _o: (
        not _coded(n, "verificationStatus", _VER_STATUS, frozenset({"entered-in-error"}))
        or not _has(n, "clinicalStatus")
    ),
    "inv-1": _inv_1,
    "ppc-2": _consent_scope("patient-privacy"),
    "ppc-3": _consent_scope("research"),
    "ppc-4": _consent_scope("adr"),
    "ppc-5": _consent_scope("treatment"),
    "que-2": _que_2,
    "que-7": _que_7,
    "que-12": lambda n, _r, _o: len(n.get("enableWhen") or []) <= 1 or _has(n, "enableBehavior"),
    "ras-2": _ras_2,
    "org-2": lambda n, _r, _o: n.get("use") != "home",
    "org-3": lambda n, _r, _o: n.get("use") != "home",
    "att-1": lambda n, _r, _o: not _has(n, "data") or _has(n, "contentType"),
    "con-2": lambda n, _r, _o: _has(n, "code") or _has(n, "detail"),
    "cmp-1": lambda n, _r, _o: _has(n, "text") or _has(n, "entry") or _has(n, "section"),
    "ref-1": _ref_1,
    "dom-3": _dom_3,
    "per-1": _per_1,
    "cpt-2": lambda n, _r, _o: not _has(n, "value") or _has(n, "system"),
    "qty-3": lambda n, _r, _o: not _has(n, "code") or _has(n, "system"),
    "obs-6": lambda n, _r, _o: not _has(n, "dataAbsentReason") or not _has(n, "value"),
    "obs-7": _obs_7,
    "que-1": _que_1,
    "que-5": lambda n, _r, _o: (
        _type(n) in _QUE_5_TYPES or (not _has(n, "answerValueSet") and not _has(n, "answerOption"))
    ),
    "qrs-1": lambda n, _r, _o: not (_has(n, "answer") and _has(n, "item")),
    "dom-2": lambda n, _r, _o: (
        not any(isinstance(c, dict) and c.get("contained") for c in n.get("contained") or [])
    ),
    "dom-4": lambda n, _r, _o: (
        not any(
            isinstance(c, dict)
            and isinstance(c.get("meta"), dict)
            and (_has(c["meta"], "versionId") or _has(c["meta"], "lastUpdated"))
            for c in n.get("contained") or []
        )
    ),
    "dom-5": lambda n, _r, _o: (
        not any(
            isinstance(c, dict) and isinstance(c.get("meta"), dict) and _has(c["meta"], "security")
            for c in n.get("contained") or []
        )
    ),
    "obs-3": lambda n, _r, _o: _has(n, "low") or _has(n, "high") or _has(n, "text"),
    "prr-1": lambda n, _r, _o: not _has(n, "orderDetail") or _has(n, "code"),
    "que-4": lambda n, _r, _o: not _has(n, "answerOption") or not _has(n, "answerValueSet"),
    "org-1": lambda n, _r, _o: _has(n, "identifier") or _has(n, "name"),
    "ppc-1": lambda n, _r, _o: _has(n, "policy") or _has(n, "policyRule"),
    "pat-1": lambda n, _r, _o: any(
        _has(n, k) for k in ("name", "telecom", "address", "organization")
    ),
    "que-3": lambda n, _r, _o: _type(n) != "display" or not _has(n, "code"),
    "que-6": lambda n, _r, _o: (
        _type(n) != "display" or (not _has(n, "required") and not _has(n, "repeats"))
    ),
    "que-8": lambda n, _r, _o: _type(n) not in ("group", "display") or not _has(n, "initial"),
    "que-9": lambda n, _r, _o: _type(n) != "display" or not _has(n, "readOnly"),
    "que-10": lambda n, _r, _o: (
        _type(n) in ("boolean", "decimal", "integer", "string", "text", "url", "open-choice")
        or not _has(n, "maxLength")
    ),
    "cpl-3": lambda n, _r, _o: not _has(n, "detail") or not _has(n, "reference"),
}
