"""The `adapter` command: serve, validate, db upgrade (and sub-apps other modules contribute)."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from adapter.errors import AdapterError
from adapter.fhir import jsonio
from adapter.issue import has_blocking
from adapter.outcome import operation_outcome
from adapter.settings import Settings

app = typer.Typer(
    help="FHIR R4 adapter for UK community mental health services", no_args_is_help=True
)
db_app = typer.Typer(help="The embedded store's schema")
app.add_typer(db_app, name="db")
console = Console(stderr=True)

#: Sub-apps contributed by other modules: (module, attribute, name). Missing ones are skipped.
SUB_APPS = (
    ("adapter.cli_policy", "app", "policy"),
    ("adapter.cli_clients", "app", "clients"),
    ("adapter.cli_outbox", "app", "outbox"),
    ("adapter.cli_ingest", "app", None),
    ("adapter.cli_monitor", "app", None),
)
for _module, _attr, _name in SUB_APPS:
    try:
        _sub = getattr(importlib.import_module(_module), _attr)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise
        continue
    if _name is None:
        for _cmd in _sub.registered_commands:
            app.registered_commands.append(_cmd)
    else:
        app.add_typer(_sub, name=_name)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080)")] = None,
    log_level: Annotated[str, typer.Option()] = "info",
) -> None:
    """Run the FHIR facade with uvicorn on the embedded store (or the configured backend)."""
    import uvicorn

    from adapter.api.app import create_app

    settings = Settings()
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level=log_level,
        access_log=False,  # it prints query strings, which carry identifiers; see api/access_log.py
    )


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="FHIR JSON files (resources or Bundles)")],
) -> None:
    """Validate files with the same engine as the facade; prints an OperationOutcome per file.

    Exit code 1 when any file has an error; nothing is stored.
    """
    from adapter.wiring import build_services

    settings = Settings(auto_migrate=False)
    services = build_services(settings, repo=_NullRepository())  # type: ignore[arg-type]
    services.pipeline.check_store_references = False
    failed = False
    for path in files:
        try:
            resource = jsonio.loads(path.read_bytes())
            if not isinstance(resource, dict):
                raise ValueError("not a JSON object")
            issues = services.pipeline.validate(resource)
        except AdapterError as exc:
            issues = exc.issues
        except (OSError, ValueError) as exc:
            from adapter.issue import Issue

            issues = [Issue("fatal", "structure", f"Cannot read file: {exc}")]
        failed = failed or has_blocking(issues)
        sys.stdout.write(f"# {path}\n{jsonio.dumps(operation_outcome(issues), indent=2)}\n")
    raise typer.Exit(code=1 if failed else 0)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply alembic migrations to the configured database (DATABASE_URL / ADAPTER_DATABASE_URL)."""
    from adapter.store.migrate import upgrade

    settings = Settings()
    upgrade(settings.database_url, schema=settings.database_schema, revision=revision)
    console.print(f"database upgraded to {revision}")


class _NullRepository:
    """For `adapter validate`: validation never touches a store; references outside the file are
    not checked for existence."""

    def read(self, resource_type: str, id: str):  # type: ignore[no-untyped-def]
        from adapter.errors import NotFound

        raise NotFound("offline validation")

    def supported_search_params(self, resource_type: str) -> list[str]:
        return []

    def close(self) -> None:
        return None


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
