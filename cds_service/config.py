"""All configuration in one typed place.

Every knob is read from an environment variable ``CDS_<NAME>`` (e.g. ``CDS_PORT``) and
documented in the README's configuration table (a test keeps the two in step).
List-valued settings accept a comma-separated string (``CDS_CORS_ORIGINS=https://a,https://b``)
or a JSON array. Every secret setting is also read from a file named by ``CDS_<NAME>_FILE`` (the
Docker and Kubernetes secrets convention; see ``secret_setting_names``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]

# The folder holding the ``cds_service`` package: in a source checkout (``pip install -e .``, which
# ``make run`` uses) this is the project directory, the one with pyproject.toml.
PROJECT_DIR = Path(__file__).resolve().parent.parent

# Asymmetric JWS algorithms a CDS client may sign with (RFC 7518 names, as PyJWT spells them).
JWT_SIGNING_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}
)


def _split_list(value: Any) -> list[Any]:
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


def data_dir() -> Path:
    """The fixed base a relative ``CDS_FEEDBACK_DB`` is resolved against, whatever the working
    directory: the project directory in a source checkout (the folder with pyproject.toml), else
    ``$XDG_DATA_HOME/calciphylaxis-cds`` (``~/.local/share/calciphylaxis-cds``) for an installed
    package, so that nothing is ever written into site-packages."""
    if (PROJECT_DIR / "pyproject.toml").is_file():
        return PROJECT_DIR
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "calciphylaxis-cds"


# --- secrets from files (issue 22) -------------------------------------------------------------
# The settings that are secrets: named here, or by their name's ending (a new ``*_secret``,
# ``*_token`` or ``*_password`` setting is one without being listed). Each is also accepted as
# ``CDS_<NAME>_FILE``: the path of a file holding the value (/run/secrets/... under Docker or
# Kubernetes), so that the value is not in the process environment (``docker inspect``, /proc).
SECRET_SETTINGS = frozenset({"database_url", "database_password", "redis_url", "metrics_token"})
_SECRET_SUFFIXES = ("_secret", "_token", "_password")
SECRET_FILE_MAX_BYTES = 64 * 1024


def secret_setting_names(settings_cls: type[BaseSettings] | None = None) -> list[str]:
    """The settings that are secrets, each also accepted from the file ``CDS_<NAME>_FILE`` names."""
    fields = (settings_cls or Settings).model_fields
    return [name for name in fields if name in SECRET_SETTINGS or name.endswith(_SECRET_SUFFIXES)]


def secret_file_env_names() -> list[str]:
    """``CDS_<NAME>_FILE`` of every secret setting (used by docs and the deployment tests)."""
    return [f"CDS_{name.upper()}_FILE" for name in secret_setting_names()]


def read_secret_file(path: str, variable: str) -> str:
    """The value in the file a ``*_FILE`` variable names: its text less trailing newlines (what
    ``echo`` and editors add). Every error names the variable and the path, never the content."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(SECRET_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{variable}: cannot read {path} ({exc.strerror or type(exc).__name__})") from None
    if len(data) > SECRET_FILE_MAX_BYTES:
        raise ValueError(
            f"{variable}: {path} is larger than {SECRET_FILE_MAX_BYTES // 1024} KiB; it must hold one value"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{variable}: {path} is not UTF-8 text") from None
    text = text.rstrip("\r\n")
    if not text.strip():
        raise ValueError(f"{variable}: {path} is empty")
    return text


class SecretFilesSource(PydanticBaseSettingsSource):
    """``CDS_<NAME>_FILE`` for each secret setting. It comes after keyword arguments (command-line
    flags) and before ``CDS_<NAME>``; setting both variables is refused, as is a file that cannot be
    read, with an error that names the variable (a pydantic ValidationError, as for any setting)."""

    def __init__(self, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._given = set(getattr(init_settings, "init_kwargs", {}))

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads all the files at once

    def __call__(self) -> dict[str, Any]:
        environ = {key.upper(): value for key, value in os.environ.items()}
        values: dict[str, Any] = {}
        problems: list[tuple[str, str]] = []
        for name in secret_setting_names(self.settings_cls):
            variable = f"CDS_{name.upper()}"
            path = environ.get(f"{variable}_FILE", "").strip()
            if not path or name in self._given:
                continue
            if environ.get(variable, "").strip():
                problems.append((name, f"both {variable} and {variable}_FILE are set; set only one of them"))
                continue
            try:
                values[name] = read_secret_file(path, f"{variable}_FILE")
            except ValueError as exc:
                problems.append((name, str(exc)))
        if problems:
            raise ValidationError.from_exception_data(
                self.settings_cls.__name__,
                [
                    {"type": "value_error", "loc": (name,), "input": None, "ctx": {"error": ValueError(message)}}
                    for name, message in problems
                ],
                hide_input=True,
            )
        return values


def _public_base_url(url: str) -> str:
    """One externally visible base URL: absolute http(s), no query, fragment or credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{url}' is not an absolute http(s) URL such as https://cds.example.org")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"'{url}' must not carry a query, a fragment or credentials")
    base = url.rstrip("/")
    if base.endswith("/cds-services"):
        raise ValueError(f"'{url}' is the discovery URL; give the base URL in front of /cds-services")
    return base


class Settings(BaseSettings):
    # hide_input_in_errors: a refused value (a secret, perhaps read from a file) is never printed
    # with its error, whoever prints the exception (a WSGI server's start-up traceback).
    model_config = SettingsConfigDict(
        env_prefix="CDS_", extra="ignore", validate_default=True, hide_input_in_errors=True
    )

    # --- HTTP server -----------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address the server binds to.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port the server listens on.")
    threads: int = Field(8, ge=1, le=256, description="Worker threads of the WSGI server (waitress).")
    max_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Largest request body accepted; larger bodies get 413."
    )
    cors_origins: CommaList = Field(default_factory=lambda: ["*"], description="Origins allowed by CORS ('*' = any).")
    log_level: str = Field("INFO", description="Python log level (DEBUG, INFO, WARNING, ERROR).")
    public_base_url: CommaList = Field(
        default_factory=list,
        description="Externally visible base URL(s) the EHR calls (e.g. https://cds.example.org); "
        "the JWT audience is built from these only, never from request headers. Required when "
        "issuers are configured.",
    )

    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Worker processes sharing the port (serve --workers); more than one needs the shared "
        "replay store (CDS_REDIS_URL) whenever JWT authentication is on.",
    )
    shutdown_timeout_seconds: float = Field(
        20.0,
        ge=0,
        le=600,
        description="On SIGTERM/SIGINT: how long calls in progress may take to finish before the process "
        "stops (new connections are refused at once); then the served-card log is written out.",
    )
    header_timeout_seconds: float = Field(
        10.0,
        ge=1,
        le=600,
        description="A connection that has not sent a complete request line and headers this long after it "
        "was opened, or after the first byte of its next request, is closed, however slowly it trickles "
        "bytes (docs/security.md, 'Slow clients and request framing').",
    )
    connection_limit: int = Field(
        1000,
        ge=10,
        le=100_000,
        description="Open connections per process; at the limit, the connection that has waited longest for "
        "its request headers (then the longest idle one) is closed to let a new one in.",
    )

    # --- feedback store ----------------------------------------------------------------------
    feedback_db: Path = Field(
        Path("var/feedback.sqlite3"),
        description="SQLite file for served cards and feedback (created on first use); a relative "
        "path is resolved against data_dir(), never the working directory. Unused when "
        "database_url is set.",
    )
    database_url: str | None = Field(
        None,
        description="PostgreSQL URL (postgresql://user:password@host:5432/dbname) for served cards and "
        "feedback, shared by every replica; unset = the embedded SQLite file (feedback_db).",
    )
    database_password: SecretStr | None = Field(
        None,
        description="Password for database_url when that URL carries none (typically from CDS_DATABASE_PASSWORD_FILE, "
        "the file the database's own container reads too); put into the URL at start-up.",
    )
    database_pool_size: int = Field(
        8, ge=1, le=200, description="Most PostgreSQL connections per process (psycopg_pool)."
    )
    database_connect_timeout: float = Field(
        5.0, gt=0, le=120, description="Timeout for opening a PostgreSQL connection or waiting for a pooled one (s)."
    )
    served_card_retention_days: int = Field(
        365,
        ge=0,
        description="Served-card rows older than this are deleted in the background; 0 = keep for ever "
        "(feedback rows have their own retention, CDS_FEEDBACK_RETENTION_DAYS).",
    )
    served_card_purge_interval_seconds: int = Field(
        3600, ge=1, description="How often the background purge of old served-card rows runs (s)."
    )
    served_card_queue_size: int = Field(
        10_000,
        ge=10,
        description="Hook calls whose served-card rows may wait to be written (they are written in batches "
        "off the request thread); when full, a hook call waits up to 2 s, then its rows are dropped and counted.",
    )

    # --- shared JWT replay store ---------------------------------------------------------------
    redis_url: str | None = Field(
        None,
        description="Redis URL (redis://host:6379/0, rediss:// for TLS) of the JWT replay store shared by "
        "every process and replica; unset = in process memory (one process only).",
    )
    redis_key_prefix: str = Field(
        "calciphylaxis-cds:jti:", min_length=1, max_length=100, description="Prefix of the replay keys in Redis."
    )
    redis_timeout: float = Field(0.5, gt=0, le=30, description="Connect and command timeout for Redis (s).")

    # --- operations ------------------------------------------------------------------------------
    metrics_token: str | None = Field(
        None,
        min_length=16,
        description="Bearer token Prometheus presents to GET /metrics when JWT authentication is on "
        "(without one, /metrics is off while authentication is on); with authentication off, /metrics "
        "is as open as every other endpoint.",
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
    allow_sandbox_issuer_on_network: bool = Field(
        False,
        description="Allow trusting the public CDS Hooks sandbox issuer (whose private key is "
        "published) while listening on a non-loopback address.",
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
        32, ge=1, le=256, description="Threads fetching FHIR data in parallel (shared by all calls)."
    )
    # The cap is at least the number of prefetch keys (14: one hook call is never serialised) and
    # below the fetch threads (a slow server leaves some for the others). The breaker counts GETs:
    # a hook call whose every key times out (a network blip) counts 14: two such calls do not open
    # it, three in a row do.
    fhir_server_concurrency: int = Field(
        16,
        ge=1,
        le=256,
        description="Most FHIR calls in progress at once per FHIR server (scheme, host, port); keep it at "
        "least the number of prefetch keys and below fhir_workers so one slow server leaves threads for the others.",
    )
    fhir_breaker_threshold: int = Field(
        40,
        ge=1,
        description="Consecutive FHIR timeouts or connection failures after which that server's circuit opens.",
    )
    fhir_breaker_cooldown: float = Field(
        30.0, gt=0, description="Seconds an open circuit fails calls to that FHIR server at once before one trial call."
    )

    # --- snoozes (issue 13) ---------------------------------------------------------------------
    snooze_enabled: bool = Field(
        True,
        description="Let override reasons that carry a period (cards/common.toml) stop patient-view repeating "
        "that card for that patient and drug until it ends.",
    )

    snooze_lookup_timeout: float = Field(
        0.2,
        gt=0,
        le=5,
        description="Longest a hook call waits for the feedback store (the snooze lookup, and writing its "
        "served cards before answering when several processes share the store), seconds; past it, and for "
        "10 s after a failure, cards are served without snoozes and their served-card rows are queued.",
    )

    # --- feedback bounds and retention (issue 20) --------------------------------------------------
    feedback_max_per_card: int = Field(
        4,
        ge=1,
        le=100,
        description="Most feedback items stored per card (per caller and service); further distinct items "
        "on that card are refused (answered per item, nothing stored).",
    )
    feedback_unserved_per_day: int = Field(
        1000,
        ge=0,
        description="Most feedback items a caller (JWT issuer and tenant; everyone when authentication is off) "
        "may have stored in 24 hours on cards not in its served-card log for that service; past it they are "
        "refused per item.",
    )
    feedback_retention_days: int = Field(
        365,
        ge=0,
        description="Feedback rows received longer ago than this are deleted in the background (with the "
        "served-card purge, at its interval); 0 = keep for ever.",
    )

    # --- signed links to the governance report (issue 22) --------------------------------------
    report_link_secret: str | None = Field(
        None,
        min_length=32,
        description="Secret (32+ characters) that signs and checks the expiring links to GET /governance/report "
        "made by `calciphylaxis-cds report-link` (HMAC-SHA256); the same value on every replica and wherever "
        "report-link runs. Unset = no links (the report needs the usual authentication). Changing it revokes "
        "every link made with the old value.",
    )
    report_link_max_days: int = Field(
        31,
        ge=1,
        le=366,
        description="Longest validity of a report link, in days: report-link refuses more, and the service refuses "
        "a link dated further ahead.",
    )

    # --- traceable logs and tracing (issue 22) -----------------------------------------------------
    trusted_proxies: CommaList = Field(
        default_factory=list,
        description="IP addresses or CIDR networks of the reverse proxies / load balancers in front of the "
        "service: only a peer on this list may name the client in X-Forwarded-For (the log's client address). "
        "Empty = the peer itself is the client, whatever it sends.",
    )
    otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP endpoint (http://collector:4318, or the full .../v1/traces URL) to export "
        "OpenTelemetry traces to: a span per call, child spans per stage and FHIR fetch. Unset = no tracing "
        "(needs the 'tracing' extra).",
    )

    _trusted_proxy_list = field_validator("trusted_proxies", mode="before")(_split_list)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        networks = []
        for entry in value:
            try:
                networks.append(str(ipaddress.ip_network(entry.strip("[]"), strict=False)))
            except ValueError:
                raise ValueError(
                    f"'{entry}' is not an IP address or CIDR network (10.0.0.0/8, 192.0.2.7, ::1)"
                ) from None
        return list(dict.fromkeys(networks))

    @field_validator("otlp_endpoint")
    @classmethod
    def _otlp_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{value}' is not an http(s) URL such as http://otel-collector:4318")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials")
        return value

    # --- SMART companion page (issue 23; docs/smart-app.md) ------------------------------------------
    smart_client_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="The client id the EHR registered the SMART app under (/app/launch); unset = the app is off "
        "and cards carry no SMART link.",
    )
    smart_issuers: CommaList = Field(
        default_factory=list,
        description="FHIR base URLs (https://ehr.example.org/fhir) or host patterns (ehr.example.org, *.example.org) "
        "of the EHRs that may launch the SMART app: the only servers it reads discovery, tokens and data from; "
        "empty = the app is off.",
    )
    smart_session_seconds: int = Field(
        900,
        ge=60,
        le=12 * 3600,
        description="Longest life of a SMART app session (its access token is kept server-side, never past the "
        "token's own expires_in).",
    )
    smart_fhir_deadline: float = Field(
        10.0, gt=0, le=120, description="Overall FHIR budget of one SMART app page (all reads together), seconds."
    )
    smart_max_sessions: int = Field(
        2000,
        ge=10,
        le=1_000_000,
        description="Most SMART app sessions kept in process memory (without CDS_REDIS_URL); when full, the oldest "
        "launch still waiting for the EHR's authorisation makes room first.",
    )

    _smart_lists = field_validator("smart_issuers", mode="before")(_split_list)

    # --- benchmarking ----------------------------------------------------------------------------
    bench_echo: bool = Field(
        False, description="Expose POST /bench/echo (decode body, answer empty cards) for benchmarks."
    )

    _normalise_lists = field_validator(
        "cors_origins", "jwt_algorithms", "fhir_allowed_servers", "public_base_url", mode="before"
    )(_split_list)

    @field_validator("public_base_url")
    @classmethod
    def _base_urls(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(_public_base_url(url) for url in value))

    @field_validator("feedback_db")
    @classmethod
    def _fixed_base(cls, value: Path) -> Path:
        # The server and `feedback-report` must find the same file wherever they are started.
        if str(value) == ":memory:":
            return value
        value = value.expanduser()
        return value if value.is_absolute() else data_dir() / value

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

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        scheme = urlsplit(value).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError(
                "must be a PostgreSQL URL (postgresql://user:password@host:5432/dbname); leave it unset "
                "for the embedded SQLite file (CDS_FEEDBACK_DB)"
            )
        return value

    @field_validator("database_password")
    @classmethod
    def _password_for_the_url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            return None
        if not value.get_secret_value().strip():
            return None
        if "database_url" not in info.data:  # the URL is invalid: its own error says so
            return value
        url = info.data["database_url"]
        if url is None:
            raise ValueError("is set but CDS_DATABASE_URL is not: give the URL, without a password")
        if urlsplit(url).password is not None:
            raise ValueError("given twice: CDS_DATABASE_URL carries a password too; keep one of them")
        return value

    @model_validator(mode="after")
    def _password_into_url(self) -> Settings:
        if self.database_password is not None and self.database_url:
            parts = urlsplit(self.database_url)
            userinfo, _, host = parts.netloc.rpartition("@")
            password = quote(self.database_password.get_secret_value(), safe="")
            self.database_url = parts._replace(netloc=f"{userinfo}:{password}@{host}").geturl()
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword arguments (command-line flags) win, then CDS_<NAME>_FILE, then CDS_<NAME>.
        secret_files = SecretFilesSource(settings_cls, init_settings)
        return init_settings, secret_files, env_settings, dotenv_settings, file_secret_settings

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a Redis URL (redis://host:6379/0, rediss://... or unix:///path)")
        return value

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


def redact_url(url: str) -> str:
    """A database or Redis URL fit for a log line or an error message: scheme, host, port and
    path, never the user name or password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def env_var_names() -> list[str]:
    """The environment variable of every setting (used by docs and a README test)."""
    return [f"CDS_{name.upper()}" for name in Settings.model_fields]
