"""`adapter monitor`: the timescale monitor (adapter/monitor.py) from a shell or a scheduler.

Prints a table of breaches (or one JSON object per line with `--json`) and exits 1 when there is
at least one, so a cron job or a CI-style scheduler can alert on the exit code. `--now` judges as
at another instant (for reports and tests). Nothing is written; no patient data is printed.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from adapter.clock import FixedClock
from adapter.settings import Settings

app = typer.Typer()
console = Console(stderr=True)


@app.command()
def monitor(
    now: Annotated[
        str | None,
        typer.Option(help="Judge as at this instant (ISO 8601 with a timezone); default: now"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per breach")] = False,
    include_closed: Annotated[
        bool, typer.Option(help="Also records in a terminal status (deadlines met late)")
    ] = False,
) -> None:
    """Stored records past a timescale the policy packs set (referral assessment, post-discharge
    follow-up, discharge letters, Part 3 assessments); exit 1 if there is any."""
    from adapter.monitor import sweep
    from adapter.wiring import build_services

    at: datetime | None = None
    if now is not None:
        try:
            at = datetime.fromisoformat(now)
        except ValueError as exc:
            raise typer.BadParameter(f"--now must be an ISO 8601 instant: {exc}") from exc
        if at.tzinfo is None:
            raise typer.BadParameter("--now needs a timezone (e.g. 2026-12-01T09:00:00+00:00)")
    services = build_services(Settings())
    try:
        ctx = services.pipeline.context(mode="validate")
        if at is not None:
            ctx.clock = FixedClock(at)
        breaches = list(sweep(services.repo, services.policy, ctx, include_closed=include_closed))
    finally:
        services.close()
    if as_json:
        for breach in breaches:
            sys.stdout.write(json.dumps(breach.as_json()) + "\n")
    else:
        table = Table(title=f"timescale breaches as at {ctx.clock.now().isoformat()}")
        for column in ("resource", "status", "rule", "severity", "finding", "citation"):
            table.add_column(column)
        for b in breaches:
            table.add_row(
                f"{b.resource_type}/{b.id}",
                b.status or "",
                b.rule_id,
                b.severity,
                f"{b.text} ({b.detail})" if b.detail else b.text,
                b.citation,
            )
        Console().print(table)
        console.print(f"{len(breaches)} breach(es)", highlight=False)
    raise typer.Exit(code=1 if breaches else 0)
