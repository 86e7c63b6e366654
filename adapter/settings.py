"""Configuration: one pydantic-settings class, prefix ADAPTER_, nesting with "__".

`DATABASE_URL` (unprefixed, the common convention) is honoured as well as ADAPTER_DATABASE_URL.
Tests build a Settings and pass it to `create_app`; nothing reads the environment at import time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
