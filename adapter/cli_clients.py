"""`adapter clients add|list|remove|demo|token`: the SMART client registry, from the command line.

`demo` registers the documented development backend client (key generated on first run into the
git-ignored .dev-keys/); `token` gets an access token for a backend client holding a private JWK.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from adapter.auth.clients import ClientRegistry, ClientRegistryError
from adapter.auth.settings import AuthSettings
from adapter.settings import Settings

app = typer.Typer(help="SMART client registry (apps and backend services)", no_args_is_help=True)
console = Console(stderr=True)
DEMO_SCOPE = "system/ServiceRequest.cruds system/Patient.cruds system/*.rs system/*.c system/*.u"


def _registry() -> tuple[ClientRegistry, Settings]:
    from adapter.store.migrate import upgrade
    from adapter.store.sql import build_engine

    settings = Settings()
    if settings.auto_migrate:
        upgrade(settings.database_url, schema=settings.database_schema)
    return ClientRegistry(build_engine(settings.database_url, settings.database_schema)), settings


def _read_jwks(value: str | None) -> str | None:
    if value is None:
        return None
    path = Path(value)
    return path.read_text() if not value.lstrip().startswith("{") and path.exists() else value


@app.command("add")
def add(
    client_id: Annotated[str, typer.Argument(help="The client_id")],
    kind: Annotated[str, typer.Option(help="backend (client_credentials) or app")] = "backend",
    scope: Annotated[str, typer.Option(help="Allowed scopes, space-separated")] = "system/*.rs",
    jwks: Annotated[str | None, typer.Option(help="Public JWKS/JWK: JSON text or a file")] = None,
    jwks_uri: Annotated[str | None, typer.Option(help="URL of the client's JWKS")] = None,
    redirect_uri: Annotated[
        list[str] | None, typer.Option(help="App redirect URI (repeat)")
    ] = None,
    secret: Annotated[
        str | None, typer.Option(help="Client secret (confidential symmetric apps)")
    ] = None,
    name: Annotated[str | None, typer.Option()] = None,
    replace: Annotated[bool, typer.Option(help="Replace an existing registration")] = False,
) -> None:
    """Register a client. Backend clients need --jwks or --jwks-uri; apps need --redirect-uri."""
    registry, _ = _registry()
    if kind not in ("backend", "app"):
        raise typer.BadParameter("kind must be backend or app")
    try:
        client = registry.add(
            client_id,
            kind="backend" if kind == "backend" else "app",
            scope=scope,
            name=name,
            jwks=_read_jwks(jwks),
            jwks_uri=jwks_uri,
            redirect_uris=tuple(redirect_uri or ()),
            secret=secret,
            replace=replace,
        )
    except (ClientRegistryError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(client.summary()))


@app.command("list")
def list_clients() -> None:
    """Print every registered client as one JSON line (no secrets, no keys)."""
    registry, _ = _registry()
    for client in registry.list():
        typer.echo(json.dumps(client.summary()))


@app.command("remove")
def remove(client_id: str) -> None:
    registry, _ = _registry()
    if not registry.remove(client_id):
        console.print(f"[red]no client {client_id!r}[/red]")
        raise typer.Exit(1)
    typer.echo(f"removed {client_id}")


@app.command("demo")
def demo() -> None:
    """Register the development backend client `demo-backend` (key in .dev-keys/, made on first run)."""
    from adapter.auth.devclient import demo_key, public_jwks_json

    auth = AuthSettings()
    registry, _ = _registry()
    key = demo_key(auth.demo_key_path)
    client = registry.add(
        auth.demo_client_id,
        kind="backend",
        scope=DEMO_SCOPE,
        name="Demo backend client (development only)",
        jwks=public_jwks_json(key),
        replace=True,
    )
    typer.echo(json.dumps({**client.summary(), "private_key_path": str(auth.demo_key_path)}))


@app.command("token")
def token(
    base_url: Annotated[str, typer.Option(help="FHIR base URL")] = "http://127.0.0.1:8080/fhir",
    client_id: Annotated[str | None, typer.Option(help="Default: the demo client")] = None,
    key: Annotated[
        Path | None, typer.Option(help="Private JWK file; default: the demo key")
    ] = None,
    scope: Annotated[str, typer.Option()] = "system/*.rs system/*.c system/*.u",
) -> None:
    """Get a backend-services access token (client_credentials + private_key_jwt); prints it."""
    import httpx

    from adapter.auth.devclient import client_assertion
    from adapter.auth.keys import load_or_create_private_jwk

    auth = AuthSettings()
    path = key or auth.demo_key_path
    if not path.exists():
        console.print(f"[red]{path} does not exist; run `adapter clients demo` first[/red]")
        raise typer.Exit(1)
    private = load_or_create_private_jwk(path, alg="RS384")
    token_url = f"{base_url.rstrip('/')}/auth/token"
    assertion = client_assertion(
        private, client_id=client_id or auth.demo_client_id, token_url=token_url
    )
    response = httpx.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
        timeout=10,
    )
    if response.status_code != 200:
        console.print(f"[red]{response.status_code} {response.text}[/red]")
        raise typer.Exit(1)
    typer.echo(response.json()["access_token"])
