"""`adapter outbox status|retry|replay ID|purge|work`: operating the outbox of the remote backing store.

`replay` sends a dead letter's original payload back through the pipeline (validated again, as every
write is), so it lands in the local store and a fresh outbox message; `retry` re-queues dead messages
unchanged. `work` runs a delivery worker; several may run at once on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from adapter.settings import Settings

app = typer.Typer(help="The outbox of the remote backing store", no_args_is_help=True)
console = Console(stderr=True)


def _outbox(settings: Settings):  # type: ignore[no-untyped-def]  # returns adapter.store.outbox.Outbox
    from adapter.store.migrate import upgrade
    from adapter.store.outbox import Outbox
    from adapter.store.sql import build_engine

    if settings.auto_migrate:
        upgrade(settings.database_url, schema=settings.database_schema)
    return Outbox(build_engine(settings.database_url, settings.database_schema))


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Counts of pending, delivered and dead messages, and open dead letters."""
    counts = _outbox(Settings()).status()
    if as_json:
        sys.stdout.write(json.dumps(counts) + "\n")
        return
    table = Table("state", "count")
    for key, value in counts.items():
        table.add_row(key, str(value))
    Console().print(table)


@app.command()
def retry(message_ids: Annotated[list[int] | None, typer.Argument()] = None) -> None:
    """Re-queue dead messages (all, or the given ids) and make pending ones due now."""
    count = _outbox(Settings()).retry(message_ids or None)
    console.print(f"{count} message(s) queued for delivery")


@app.command()
def replay(dead_letter_id: Annotated[int, typer.Argument(help="Dead letter id")]) -> None:
    """Send a dead letter's original payload through the pipeline again (validated, then queued)."""
    from adapter.errors import AdapterError
    from adapter.wiring import build_services

    settings = Settings(outbox_worker_in_process=False)
    services = build_services(settings)
    try:
        outbox = _outbox(settings)
        entries, _errors = outbox.dead_letter(dead_letter_id)
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        try:
            services.pipeline.transaction(bundle)
        except AdapterError as exc:
            console.print(f"replay rejected ({exc.status}): {exc}")
            raise typer.Exit(code=1) from exc
        outbox.mark_replayed(dead_letter_id)
        console.print(f"dead letter {dead_letter_id} replayed through the pipeline")
    finally:
        services.close()


@app.command()
def purge(
    older_than_hours: Annotated[
        float, typer.Option(help="Delivered messages older than this")
    ] = 24.0,
) -> None:
    """Delete delivered messages and replayed dead letters (pending work and open dead letters
    stay), and Idempotency-Key responses older than their window."""
    from adapter.idempotency import IdempotencyStore

    settings = Settings()
    outbox = _outbox(settings)
    count = outbox.purge(timedelta(hours=older_than_hours))
    window = timedelta(hours=settings.idempotency_window_hours)
    keys = IdempotencyStore(outbox.engine, window=window).purge()
    console.print(f"{count} outbox row(s) and {keys} idempotency record(s) purged")


@app.command()
def work(
    stop_when_idle_seconds: Annotated[
        float, typer.Option(help="Exit after this long with nothing to deliver (0: run forever)")
    ] = 0.0,
) -> None:
    """Run one delivery worker in this process (start several for more throughput on PostgreSQL)."""
    from adapter.store.outbox import CircuitBreaker, DeliveryWorker, RetryPolicy
    from adapter.store.remote import AsyncFhirClient

    settings = Settings()
    outbox = _outbox(settings)
    worker = DeliveryWorker(
        outbox,
        AsyncFhirClient.from_settings(settings),
        policy=RetryPolicy(
            settings.outbox_max_attempts,
            settings.outbox_backoff_base_seconds,
            settings.outbox_backoff_max_seconds,
        ),
        breaker=CircuitBreaker(
            settings.outbox_breaker_threshold, settings.outbox_breaker_reset_seconds
        ),
        batch_size=settings.outbox_batch_size,
        messages_per_bundle=settings.outbox_messages_per_bundle,
    )

    async def main() -> None:
        idle_since: float | None = None
        loop = asyncio.get_running_loop()
        try:
            while True:
                settled = await worker.run_once()
                if settled:
                    idle_since = None
                    continue
                idle_since = idle_since or loop.time()
                if (
                    stop_when_idle_seconds
                    and loop.time() - idle_since >= stop_when_idle_seconds
                    and outbox.status()["pending"] == 0
                ):
                    return
                await asyncio.sleep(settings.outbox_poll_seconds)
        finally:
            await worker.client.aclose()

    asyncio.run(main())
    sys.stdout.write(
        json.dumps(
            {
                "worker": worker.worker_id,
                "delivered": worker.delivered_count,
                "dead": worker.dead_count,
            }
        )
        + "\n"
    )
