"""Settings of the SMART facade: `AuthSettings`, prefix ADAPTER_AUTH_.

Kept apart from `adapter.settings.Settings` so the authorisation knobs live with their code.
`auth_required`, `issuer` and `public_base_url` stay in `Settings` (they predate this module).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapter.settings import PROJECT_ROOT

DEV_KEYS_DIR = PROJECT_ROOT / ".dev-keys"


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADAPTER_AUTH_", extra="ignore")

    #: Private RSA JWK the embedded authorisation server signs access and ID tokens with.
    #: Generated on first use when missing (git-ignored .dev-keys/ by default).
    signing_key_path: Path = DEV_KEYS_DIR / "server-signing-key.json"

    #: Lifetimes. SMART Backend Services: access tokens SHOULD NOT exceed 300 s.
    backend_access_token_seconds: int = 300
    app_access_token_seconds: int = 3600
    authorization_code_seconds: int = 60
    online_refresh_token_seconds: int = 8 * 3600
    offline_refresh_token_seconds: int = 90 * 24 * 3600
    launch_context_seconds: int = 600
    #: The longest client-assertion lifetime accepted (`exp` at most this far ahead).
    client_assertion_max_seconds: int = 300
    clock_skew_seconds: int = 60
    #: How long a fetched client or external JWKS is cached (never longer than its Cache-Control).
    jwks_cache_seconds: int = 300

    #: Development only: /authorize approves at once as `dev_user`, without a login page.
    dev_auto_approve: bool = False
    #: The fhirUser of the development login (and of `dev_auto_approve`).
    dev_user: str = "Practitioner/dev-clinician"
    #: The patient a standalone launch asking for launch/patient gets when auto-approving.
    dev_patient: str | None = None
    #: Where the demo backend client's private key is written on first run.
    demo_key_path: Path = DEV_KEYS_DIR / "demo-backend-key.json"
    demo_client_id: str = "demo-backend"

    #: An external authorisation server (NHS CIS2, Keycloak...) whose tokens are also accepted.
    external_issuer: str | None = None
    external_jwks_uri: str | None = None
    #: Inline JWKS JSON of the external issuer (instead of external_jwks_uri).
    external_jwks: str | None = None
    #: Audience an external token must carry; None means the FHIR base URL.
    external_audience: str | None = None
    external_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "RS384", "ES256", "ES384"]
    )

    #: Interactive approval page password (development login). None: only dev_auto_approve works.
    login_password: SecretStr | None = None

    #: Browser origins (scheme://host[:port]) allowed to call /fhir/* and the OAuth endpoints
    #: cross-origin, preflights included. Empty (the default): no cross-origin access, except the
    #: public discovery documents and JWKS, which answer any origin.
    #: Env: ADAPTER_AUTH_CORS_ALLOWED_ORIGINS='["https://app.example.nhs.uk"]'
    cors_allowed_origins: list[str] = Field(default_factory=list)

    #: AuditEvents for every access and write. None means "when auth_required is on".
    audit_enabled: bool | None = None
