"""All configuration in one typed place.

Every knob is read from an environment variable ``CDS_<NAME>`` (e.g. ``CDS_PORT``) and
documented in the README's configuration table (a test keeps the two in step).
List-valued settings accept a comma-separated string (``CDS_CORS_ORIGINS=https://a,https://b``)
or a JSON array.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]

# Asymmetric JWS algorithms a CDS client may sign with (RFC 7518 names, as PyJWT spells them).
JWT_SIGNING_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}
)


def _split_list(value):
    """Accept a JSON array, a comma-separated string, or a list."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            return [str(v).strip() for v in json.loads(text) if str(v).strip()]
        return [part.strip() for part in text.split(",") if part.strip()]
    return list(value)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDS_", extra="ignore", validate_default=True)

    # --- HTTP server -----------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address the server binds to.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port the server listens on.")
    threads: int = Field(8, ge=1, le=256, description="Worker threads of the WSGI server (waitress).")
    max_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Largest request body accepted; larger bodies get 413."
    )
    cors_origins: CommaList = Field(default_factory=lambda: ["*"], description="Origins allowed by CORS ('*' = any).")
    log_level: str = Field("INFO", description="Python log level (DEBUG, INFO, WARNING, ERROR).")
    public_base_url: str | None = Field(
        None,
        description="Externally visible base URL (e.g. https://cds.example.org) used as the JWT "
        "audience behind a proxy; default: the URL the request arrived on.",
    )

    # --- feedback store ----------------------------------------------------------------------
    feedback_db: Path = Field(
        Path("var/feedback.sqlite3"),
        description="SQLite file for served cards and feedback (created on first use).",
    )

    # --- authentication (JWT from the CDS client) --------------------------------------------
    issuers_file: Path | None = Field(
        None,
        description="JSON file listing trusted JWT issuers and their keys (docs/authentication.md); "
        "unset = no authentication, allowed on loopback only.",
    )
    allow_unauthenticated: bool = Field(
        False, description="Allow serving without JWT issuers on a non-loopback address."
    )
    jwt_algorithms: CommaList = Field(
        default_factory=lambda: ["ES384", "RS384"], description="Accepted JWT signing algorithms."
    )
    jwt_leeway_seconds: int = Field(30, ge=0, le=300, description="Clock skew tolerated on exp/iat.")
    jwt_max_lifetime_seconds: int = Field(
        3600,
        ge=0,
        description="Longest accepted JWT lifetime (exp - iat), which bounds how long a jti is "
        "remembered; 0 = no limit.",
    )
    jwt_replay_cache_size: int = Field(
        100_000,
        ge=100,
        description="Most unexpired jti values remembered against replay; when full, new tokens "
        "are refused (fail closed) until entries expire.",
    )
    jwks_fetch_timeout: float = Field(
        2.0, gt=0, le=30, description="Connect and read timeout when fetching an issuer's JWKS URL (s)."
    )
    jwks_max_age_seconds: int = Field(
        3600, ge=60, description="A fetched JWKS is fetched again on use once older than this."
    )
    jwks_refresh_min_seconds: int = Field(
        60,
        ge=1,
        description="Least time between two fetches of one JWKS (an unknown kid triggers a refresh).",
    )

    # --- FHIR server access (fetching what prefetch did not bring; docs/fhir-access.md) -------
    fhir_allowed_servers: CommaList = Field(
        default_factory=list,
        description="FHIR base URLs (https://fhir.example.org/r4) or host patterns (fhir.example.org, "
        "*.example.org, host:port) the service may contact with the client's token; empty = none.",
    )
    fhir_allow_http: bool = Field(
        False, description="Allow plain-http FHIR servers that are not on loopback (testing only)."
    )
    # Defaults sized for a FHIR server on the local network: the whole hook call must stay well
    # under the spec's ~500 ms guidance, so FHIR access gets at most 300 ms of it.
    fhir_connect_timeout: float = Field(0.1, gt=0, description="Connect timeout per FHIR call (s).")
    fhir_read_timeout: float = Field(0.25, gt=0, description="Read timeout per FHIR call (s).")
    fhir_deadline: float = Field(
        0.3, gt=0, description="Overall FHIR budget per hook call, all keys and pages together (s)."
    )
    fhir_max_pages: int = Field(5, ge=1, description="Most pages read per prefetch key.")
    fhir_max_response_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest FHIR response body read per call."
    )
    fhir_workers: int = Field(
        16, ge=1, le=256, description="Threads fetching FHIR data in parallel (shared by all calls)."
    )

    # --- benchmarking ----------------------------------------------------------------------------
    bench_echo: bool = Field(
        False, description="Expose POST /bench/echo (decode body, answer empty cards) for benchmarks."
    )

    _normalise_lists = field_validator("cors_origins", "jwt_algorithms", "fhir_allowed_servers", mode="before")(
        _split_list
    )

    @field_validator("jwt_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        # The spec forbids 'none' and every symmetric (HMAC) algorithm: with HS*, anyone who
        # knows the issuer's *public* key could forge tokens.
        if not value:
            raise ValueError("at least one algorithm is required (ES384 and RS384 are recommended)")
        for alg in value:
            if alg.lower() == "none" or alg.upper().startswith("HS"):
                raise ValueError(f"'{alg}' is never accepted: CDS Hooks forbids 'none' and HMAC algorithms")
            if alg not in JWT_SIGNING_ALGORITHMS:
                known = ", ".join(sorted(JWT_SIGNING_ALGORITHMS))
                raise ValueError(f"unknown algorithm '{alg}'; choose from {known}")
        return value

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


def env_var_names() -> list[str]:
    """The environment variable of every setting (used by docs and a README test)."""
    return [f"CDS_{name.upper()}" for name in Settings.model_fields]
