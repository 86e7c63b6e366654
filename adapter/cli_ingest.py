"""`adapter ingest` (files through a mapping, with a progress bar, summary and dead-letter file) and
`adapter mllp` (an HL7 v2 listener). Both go through the same pipeline as the REST facade."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from adapter.errors import SourceParseError
from adapter.issue import Issue
from adapter.mapping.inbound import Inbound
from adapter.mapping.loader import load_registry
from adapter.mapping.unit import UnitOutcome
from adapter.settings import Settings
from adapter.sources import read_extract, record_from_resource
from adapter.sources.hl7v2 import read_messages
from adapter.sources.record import SourceRecord

app = typer.Typer(help="Mapped feeds: extracts and HL7 v2")
console = Console(stderr=True)


def _inbound(settings: Settings) -> tuple[Inbound, object]:
    import logging

    from adapter.runtime import settle_heap
    from adapter.wiring import build_services

    services = build_services(settings)
    inbound = Inbound(
        services.pipeline,
        load_registry(settings.mappings_dir),
        v2_default_charset=settings.v2_default_charset,
        v2_sender_charsets=settings.v2_sender_charsets,
    )
    overrides = settings.v2_sender_charsets
    # a warning when any is set: those senders' MSH-18 labels are not trusted (no patient data)
    logging.getLogger(__name__).log(
        logging.WARNING if overrides else logging.INFO,
        "v2 sender character-set overrides in force: %d",
        len(overrides),
        extra={"v2_sender_charsets": dict(sorted(overrides.items()))},
    )
    settle_heap()  # a long ingest or listener: freeze the start-up heap (adapter/runtime.py)
    return inbound, services


def _records(
    path: Path,
    kind: str,
    *,
    v2_default_charset: str = "utf-8",
    v2_sender_charsets: dict[str, str] | None = None,
) -> list[SourceRecord]:
    data = path.read_bytes()
    if kind == "hl7v2":
        # each message decoded by its own MSH-18 (or its sender's configured set); one that cannot
        # be is dead-lettered on its own
        return read_messages(
            data,
            path.name,
            default_charset=v2_default_charset,
            sender_charsets=v2_sender_charsets,
        )
    if kind == "fhir":
        return fhir_records(data, path.name)
    return list(read_extract(data, path.name))


def fhir_records(data: bytes, name: str) -> list[SourceRecord]:
    """One FHIR resource, or each entry of a searchset/collection Bundle (e.g. e-RS worklist results)."""
    from adapter.fhir import jsonio

    try:
        resource = jsonio.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, jsonio.JsonSyntaxError) as exc:
        raise SourceParseError(
            [Issue("fatal", "structure", f"{name} is not a JSON FHIR resource: {exc}")]
        ) from exc
    if not isinstance(resource, dict):
        raise SourceParseError([Issue("fatal", "structure", f"{name} is not a FHIR resource")])
    if resource.get("resourceType") == "Bundle" and resource.get("type") in (
        "searchset",
        "collection",
    ):
        return [
            record_from_resource(e["resource"], f"{name} entry {i}")
            for i, e in enumerate(resource.get("entry") or [])
            if isinstance(e.get("resource"), dict)
        ]
    return [record_from_resource(resource, name)]


def _dead_letter(handle: object, outcome: UnitOutcome) -> None:
    line = {
        "locator": outcome.result.record.locator,
        "mapping": outcome.result.mapping_id,
        "reasons": [
            {"severity": i.severity, "code": i.code, "field": i.expression, "text": i.text}
            for i in outcome.issues
            if i.severity != "information"
        ],
        "original": outcome.result.record.raw,
    }
    handle.write(json.dumps(line) + "\n")  # type: ignore[attr-defined]


def _dead_letter_file(handle: object, path: Path, mapping: str, issues: list[Issue]) -> None:
    line = {
        "locator": path.name,
        "mapping": mapping,
        "reasons": [
            {"severity": i.severity, "code": i.code, "field": i.expression, "text": i.text}
            for i in issues
        ],
        "original": None,  # the file itself, kept where it is
    }
    handle.write(json.dumps(line) + "\n")  # type: ignore[attr-defined]


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="CSV/JSON extracts or HL7 v2 files")],
    mapping: Annotated[str, typer.Option("--mapping", help="Mapping id, e.g. csv-dialog")],
    dead_letter: Annotated[Path, typer.Option(help="Rejected rows, one JSON line each")] = Path(
        "dead-letter.jsonl"
    ),
    trace: Annotated[
        bool, typer.Option("--trace", help="Print source field and rule per output element")
    ] = False,
    batch_size: Annotated[
        int, typer.Option(help="Rows per database commit (each row still all or nothing)")
    ] = 100,
) -> None:
    """Maps every row/message and stores each as one all-or-nothing unit; exit 1 if any was rejected."""
    settings = Settings()
    inbound, services = _inbound(settings)
    spec = inbound.registry.get(mapping)
    counts: Counter[str] = Counter()
    unmapped: Counter[str] = Counter()
    with dead_letter.open("a", encoding="utf-8") as dl, Progress(console=console) as progress:
        for path in files:
            try:
                records = _records(
                    path,
                    spec.source_kind,
                    v2_default_charset=settings.v2_default_charset,
                    v2_sender_charsets=settings.v2_sender_charsets,
                )
            except (SourceParseError, OSError) as exc:
                # the whole file is unreadable: dead-letter it and go on with the next file
                issues = (
                    exc.issues
                    if isinstance(exc, SourceParseError)
                    else [Issue("fatal", "exception", f"cannot read {path.name}: {exc.strerror}")]
                )
                counts["rejected"] += 1
                _dead_letter_file(dl, path, mapping, issues)
                console.print(f"{path.name}: unreadable, dead-lettered", highlight=False)
                continue
            task = progress.add_task(path.name, total=len(records))
            for start in range(0, len(records), max(batch_size, 1)):
                chunk = records[start : start + max(batch_size, 1)]
                # one commit per chunk; a row counts as stored only once its chunk has committed
                for outcome in inbound.ingest_batch(spec, chunk):
                    counts[outcome.status] += 1
                    counts["resources written"] += len(outcome.written)
                    counts["resources superseded"] += len(outcome.superseded)
                    unmapped.update(outcome.result.unmapped)
                    if outcome.status == "rejected":
                        _dead_letter(dl, outcome)
                    if trace:
                        for entry in outcome.result.trace:
                            console.print(entry.render(), highlight=False)
                progress.advance(task, len(chunk))
    table = Table(title=f"ingest --mapping {mapping}")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    for key in ("stored", "unchanged", "rejected", "resources written", "resources superseded"):
        table.add_row(key, str(counts[key]))
    for field, n in sorted(unmapped.items()):
        table.add_row(f"unmapped field {field}", str(n))
    console.print(table)
    if counts["rejected"]:
        console.print(f"rejected rows written to {dead_letter}")
    getattr(services, "close", lambda: None)()
    raise typer.Exit(code=1 if counts["rejected"] else 0)


@app.command()
def mllp(
    port: Annotated[int, typer.Option(help="TCP port")] = 2575,
    host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
    tls_cert: Annotated[
        Path | None,
        typer.Option(help="PEM certificate chain: TLS on (with --tls-key) [ADAPTER_MLLP_TLS_CERT]"),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="PEM private key of --tls-cert [ADAPTER_MLLP_TLS_KEY]")
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(
            help="PEM CA: require a client certificate it signed (mutual TLS) "
            "[ADAPTER_MLLP_TLS_CLIENT_CA]"
        ),
    ] = None,
) -> None:
    """Listen for HL7 v2 over MLLP; each message is answered with an AA/AE/AR ACK.

    Plain TCP unless given a certificate and key (then TLS 1.2 or later). With a client CA too,
    only senders holding a certificate it signed get past the handshake (mutual TLS)."""
    from adapter.mllp import TlsConfigurationError, run, server_tls_context

    settings = Settings()
    cert = tls_cert or settings.mllp_tls_cert
    key = tls_key or settings.mllp_tls_key
    client_ca = tls_client_ca or settings.mllp_tls_client_ca
    if (cert is None) != (key is None):
        missing = "--tls-key" if key is None else "--tls-cert"
        raise typer.BadParameter(
            f"{missing} is missing: TLS needs both --tls-cert and --tls-key "
            "(or ADAPTER_MLLP_TLS_CERT and ADAPTER_MLLP_TLS_KEY)",
            param_hint=f"'{missing}'",
        )
    if client_ca is not None and cert is None:
        raise typer.BadParameter(
            "a client CA needs TLS: give --tls-cert and --tls-key too",
            param_hint="'--tls-client-ca'",
        )
    tls = None
    if cert is not None and key is not None:
        try:
            tls = server_tls_context(cert, key, client_ca)
        except TlsConfigurationError as exc:
            raise typer.BadParameter(str(exc)) from exc

    inbound, _ = _inbound(settings)
    if tls is None:
        mode = "plain TCP, no TLS: messages cross the network unencrypted"
    elif client_ca is None:
        mode = "TLS 1.2+ on, mutual TLS off (any client may connect)"
    else:
        mode = f"TLS 1.2+ on, mutual TLS on (client certificates signed by {client_ca})"
    console.print(f"MLLP listening on {host}:{port} ({mode})", soft_wrap=True, markup=False)
    run(inbound, host, port, tls)
