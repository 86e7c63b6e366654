"""RiO/SystmOne-style table extracts: CSV with a header row, or JSON (an array of row objects).

Each row becomes one SourceRecord keyed by column name (JSON rows may nest: `goals[0].text`). A row
that cannot be read (wrong number of cells, not an object) still becomes a record, carrying
`header["error"]`, so the caller can dead-letter it with its original text instead of stopping.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from adapter.errors import SourceParseError
from adapter.fhir import jsonio
from adapter.issue import Issue
from adapter.sources.fhir_json import flatten
from adapter.sources.record import ERROR_KEY, SourceRecord, prefix_groups

__all__ = ["ERROR_KEY", "read_extract"]


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceParseError(
            [
                Issue(
                    "fatal",
                    "structure",
                    f"{name} is not UTF-8 text (byte {exc.start})",
                    expression=name,
                )
            ]
        ) from exc


def read_extract(data: bytes, name: str = "extract") -> Iterator[SourceRecord]:
    text = _decode(data, name)
    stripped = text.lstrip()
    if stripped.startswith("["):
        yield from _read_json(text, name)
    else:
        yield from _read_csv(text, name)


def _read_csv(text: str, name: str) -> Iterator[SourceRecord]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        columns = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise SourceParseError(
            [Issue("fatal", "structure", f"header row: {exc}", expression=f"{name} line 1")]
        ) from exc
    columns = [c.strip() for c in columns]
    line = 1
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield SourceRecord(
                "csv", f"{name} line {start}", {}, raw="", header={ERROR_KEY: str(exc)}
            )
            continue
        line = start
        raw = _row_text(cells)
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(columns):
            yield SourceRecord(
                "csv",
                f"{name} line {line}",
                {},
                raw=raw,
                header={ERROR_KEY: f"{len(cells)} cells for {len(columns)} columns"},
            )
            continue
        values = {col: cell.strip() for col, cell in zip(columns, cells, strict=True)}
        positions = {col: f"{name} line {line} column {col}" for col in columns}
        yield SourceRecord(
            "csv", f"{name} line {line}", values, positions, raw=raw, group_finder=prefix_groups
        )


def _row_text(cells: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="")
    writer.writerow(cells)
    return buffer.getvalue()


def _read_json(text: str, name: str) -> Iterator[SourceRecord]:
    try:
        rows = jsonio.loads(text)
    except ValueError as exc:
        raise SourceParseError(
            [Issue("fatal", "structure", f"not JSON: {exc}", expression=name)]
        ) from exc
    if not isinstance(rows, list):
        raise SourceParseError(
            [Issue("fatal", "structure", "a JSON extract is an array of rows", expression=name)]
        )
    for i, row in enumerate(rows):
        locator = f"{name} row {i}"
        if not isinstance(row, dict):
            yield SourceRecord(
                "json",
                locator,
                {},
                raw=jsonio.dumps([row]),
                header={ERROR_KEY: "row is not an object"},
            )
            continue
        values = flatten(row)
        positions = {k: f"{locator} {k}" for k in values}
        yield SourceRecord(
            "json", locator, values, positions, raw=jsonio.dumps(row), group_finder=prefix_groups
        )
