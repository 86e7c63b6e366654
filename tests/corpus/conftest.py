"""Corpus suite: prints the validator agreement table at the end of the session."""

from __future__ import annotations

import pytest

from tests.corpus import agreement


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    table = agreement.table_markdown()
    if table:
        terminalreporter.write_sep("=", "conformance corpus agreement")
        terminalreporter.write_line(table)
