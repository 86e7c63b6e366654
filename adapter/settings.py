"""Configuration: one pydantic-settings class, prefix ADAPTER_, nesting with "__".

`DATABASE_URL` (unprefixed, the common convention) is honoured as well as ADAPTER_DATABASE_URL.
Tests build a Settings and pass it to `create_app`; nothing reads the environment at import time.
"""

from __future__ import annotations

import codecs
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ADAPTER_", env_nested_delimiter="__", extra="ignore"
    )

    #: SQLAlchemy URL of the embedded store. SQLite file by default; postgresql+psycopg://... for PostgreSQL.
    database_url: str = Field(
        default=f"sqlite:///{PROJECT_ROOT / 'var' / 'adapter.sqlite3'}",
        validation_alias=AliasChoices("ADAPTER_DATABASE_URL", "DATABASE_URL"),
    )
    #: Schema to use on PostgreSQL (tests use one per session). None means the default search_path.
    database_schema: str | None = None
    #: Run alembic upgrade at start-up (the embedded default does; production runs `adapter db upgrade`).
    auto_migrate: bool = True

    host: str = "127.0.0.1"
    port: int = 8080
    #: The public base URL of the FHIR facade, used in Location headers and Bundle links.
    #: None means "derive from the request".
    public_base_url: str | None = None

    #: `adapter mllp` over TLS (1.2 or later): PEM certificate chain and private key, both or
    #: neither (plain TCP). With a client CA, mutual TLS: a client certificate signed by that CA is
    #: required. The `--tls-cert`, `--tls-key` and `--tls-client-ca` options override these.
    mllp_tls_cert: Path | None = None
    mllp_tls_key: Path | None = None
    mllp_tls_client_ca: Path | None = None

    profiles_dir: Path = PROJECT_ROOT / "profiles"
    mappings_dir: Path = PROJECT_ROOT / "mappings"

    #: Policy packs to evaluate; the data may add one (a Welsh health board as performer -> wales-measure).
    policy_packs: list[str] = Field(default_factory=lambda: ["england-cmht"])
    trust_overrides: str | None = None

    #: Search paging
    default_page_size: int = 20
    max_page_size: int = 500

    #: Backing store: "embedded" (SQL) or "remote" (any FHIR R4 server at fhir_base_url, via the outbox).
    backend: Literal["embedded", "remote"] = "embedded"
    fhir_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ADAPTER_FHIR_BASE_URL", "FHIR_BASE_URL")
    )
    fhir_bearer_token: SecretStr | None = None

    #: SMART: when false the facade is open (local development only; logged loudly at start-up).
    auth_required: bool = False
    issuer: str | None = None

    log_level: str = "INFO"

    # --- issue #7: the remote backing store, its outbox and idempotency (see docs/backing-store.md)
    #: How we authenticate to the backing server: nothing, fhir_bearer_token, or SMART Backend
    #: Services (client_credentials with a private_key_jwt assertion).
    fhir_auth: Literal["none", "bearer", "client_credentials"] = "none"
    fhir_token_url: str | None = None
    fhir_client_id: str | None = None
    fhir_private_key_path: Path | None = None
    fhir_key_id: str | None = None
    fhir_scope: str = "system/*.read system/*.write"
    fhir_timeout_seconds: float = 10.0
    fhir_max_connections: int = 20
    #: While the backing server is down: "accept" (202 + status location) or "refuse" (503 + Retry-After).
    outbox_when_down: Literal["accept", "refuse"] = "accept"
    outbox_max_attempts: int = 12
    outbox_backoff_base_seconds: float = 0.5
    outbox_backoff_max_seconds: float = 300.0
    outbox_batch_size: int = 50
    #: Claimed messages joined into one transaction Bundle per request (1: one request each).
    outbox_messages_per_bundle: int = 10
    outbox_poll_seconds: float = 0.5
    #: Consecutive failed deliveries that open the circuit, and how long it stays open.
    outbox_breaker_threshold: int = 5
    outbox_breaker_reset_seconds: float = 10.0
    #: Run a delivery worker inside the app (off when separate `adapter outbox work` processes run).
    outbox_worker_in_process: bool = True
    #: How long a stored Idempotency-Key response is replayed.
    idempotency_window_hours: int = 24
    #: A key whose first request has not finished after this long is taken to be abandoned (the
    #: process died) and may run again.
    idempotency_in_flight_seconds: float = 300.0

    #: Character set of an HL7 v2 message whose MSH-18 is empty: a Python codec name ("utf-8",
    #: "latin-1", "cp1252"), decoded strictly. UTF-8 by default, a superset of table 0211's ASCII.
    #: A message that names its set in MSH-18 is decoded in that set (sources/v2_charset.py).
    v2_default_charset: str = "utf-8"

    @field_validator("v2_default_charset")
    @classmethod
    def _v2_default_charset_is_an_ascii_compatible_codec(cls, value: str) -> str:
        """An unknown codec, or one that does not read the ASCII delimiters as ASCII (UTF-16,
        EBCDIC), would garble every message without MSH-18, so it stops start-up instead."""
        try:
            codec = codecs.lookup(value).name
            ascii_read = bytes(range(128)).decode(codec, errors="replace")
        except LookupError as exc:
            raise ValueError(f"{value!r} is not a text codec Python knows") from exc
        if ascii_read != "".join(map(chr, range(128))):
            raise ValueError(f"{value!r} does not read ASCII bytes as ASCII")
        return codec

    #: Character set per HL7 v2 sender, JSON keyed `MSH-3|MSH-4` (first components), e.g.
    #: {"RIO|RT5": "cp1252"}: that sender's messages are decoded strictly in this Python codec when
    #: MSH-18 is empty or a single-byte label (a channel configured to fix Windows-1252 labelled
    #: 8859/1); a UTF-8 label and a refused MSH-18 still decide (sources/v2_charset.py).
    v2_sender_charsets: dict[str, str] = Field(default_factory=dict)

    @field_validator("v2_sender_charsets")
    @classmethod
    def _v2_sender_charsets_are_ascii_compatible_codecs_by_sender(
        cls, value: dict[str, str]
    ) -> dict[str, str]:
        """Each codec checked as v2_default_charset is; each key `APP|FACILITY`, both non-empty
        and free of HL7 delimiters and surrounding space, or it could never match a message (or
        would match every message with an empty MSH-4)."""
        checked: dict[str, str] = {}
        for key, codec in value.items():
            application, separator, facility = key.partition("|")
            parts = (application, facility)
            if not separator or not all(
                part
                and part.isascii()
                and part.isprintable()
                and part == part.strip()
                and not set(part) & set("|^~\\&")
                for part in parts
            ):
                raise ValueError(
                    f"sender {key!r} is not `MSH-3|MSH-4` (application|facility, both non-empty "
                    "ASCII without HL7 delimiters)"
                )
            try:
                checked[key] = cls._v2_default_charset_is_an_ascii_compatible_codec(codec)
            except ValueError as exc:
                raise ValueError(f"sender {key!r}: {exc}") from exc
        return checked


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
