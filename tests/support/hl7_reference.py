"""The reference flattening of an HL7 v2 message: python-hl7's full parse tree, walked.

`adapter.sources.hl7v2.parse_message` splits with `str.split` for speed; the differential test
(`tests/unit/mapping/test_hl7v2_parse.py`) checks it against this on every v2 fixture and on
crafted messages (repetitions, components, subcomponents, escapes, empty fields).
"""

from __future__ import annotations

import hl7


def _value(node: object, message: hl7.Message) -> str:
    if isinstance(node, list):
        return "&".join(_value(n, message) for n in node)
    return str(message.unescape(str(node))) if "\\" in str(node) else str(node)


def flatten(raw: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(values, positions, aliases) exactly as the adapter keys them (`PID-3.1`, `OBX[2]-5`)."""
    message = hl7.parse(raw)
    values: dict[str, str] = {}
    positions: dict[str, str] = {}
    aliases: dict[str, str] = {}
    counts: dict[str, int] = {}
    for seg_no, segment in enumerate(message, start=1):
        seg_id = str(segment[0])
        counts[seg_id] = counts.get(seg_id, 0) + 1
        k = counts[seg_id]
        prefix = seg_id if k == 1 else f"{seg_id}[{k}]"
        first_field = 3 if seg_id == "MSH" else 1
        for n in range(first_field, len(segment)):
            field = segment[n]
            where = f"segment {seg_no} ({seg_id}) field {n}"
            reps = (
                list(field)
                if isinstance(field, hl7.Field) and field and isinstance(field[0], list)
                else [field]
            )
            for r, rep in enumerate(reps, start=1):
                base = f"{prefix}-{n}" if r == 1 else f"{prefix}-{n}[{r}]"
                comps = list(rep) if isinstance(rep, list) and len(rep) > 1 else None
                if comps is None:
                    value = _value(rep, message)
                    if value:
                        values[base] = value
                        positions[base] = where
                        aliases[f"{base}.1"] = base
                    continue
                for c, comp in enumerate(comps, start=1):
                    value = _value(comp, message)
                    if value:
                        key = f"{base}.{c}"
                        values[key] = value
                        positions[key] = f"{where} component {c}"
    return values, positions, aliases
