"""The issuers file: which CDS clients (EHRs) this service trusts, and where their keys are.

Format (JSON; see docs/authentication.md and config/issuers/)::

    {"issuers": [{"iss": "https://ehr.example.org",
                  "jwks_url": "https://ehr.example.org/.well-known/jwks.json",
                  "jku_allowlist": ["https://ehr.example.org/.well-known/jwks.json"],
                  "tenants": ["hospital-a"]}]}

Each issuer needs at least one key source: ``jwks`` (an inline JWK Set), ``jwks_file`` (relative
paths are relative to the issuers file) or ``jwks_url``, or a ``jku_allowlist``. The file is
checked completely at start-up; any error stops the service with a message naming the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cds_service.auth.keys import (
    FileKeys,
    JwksError,
    KeyStore,
    PublicKey,
    UrlKeys,
    check_key_url,
    parse_jwks,
    world_writable,
)
from cds_service.errors import describe_validation_error

# Its signing key is published in the sandbox's public repository, so anyone can mint its tokens.
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_HOST = "sandbox.cds-hooks.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"


class IssuerConfigError(ValueError):
    """The issuers file cannot be used; the message names the file and the field."""


class IssuerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    iss: str = Field(min_length=1, description="The exact 'iss' claim the client sends.")
    description: str | None = None
    jwks: dict[str, Any] | None = Field(None, description="Inline JWK Set with the public keys.")
    jwks_file: Path | None = Field(None, description="File holding a JWK Set (re-read on an unknown kid).")
    jwks_url: str | None = Field(None, description="URL of the JWK Set (fetched, cached, refreshed).")
    jku_allowlist: list[str] = Field(
        default_factory=list, description="'jku' header values accepted from this issuer (exact match)."
    )
    tenants: list[str] | None = Field(None, description="If given, the 'tenant' claim must be one of these.")

    @field_validator("iss")
    @classmethod
    def _no_blank_iss(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("must not start or end with whitespace (iss is compared exactly)")
        return value

    @field_validator("jwks_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_key_url(value)

    @field_validator("jku_allowlist")
    @classmethod
    def _jku_urls(cls, value: list[str]) -> list[str]:
        return [check_key_url(url) for url in value]

    @field_validator("tenants")
    @classmethod
    def _tenants(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not [t for t in value if t]:
            raise ValueError("an empty tenant list would reject every call; omit 'tenants' to accept any")
        return value

    @model_validator(mode="after")
    def _has_keys(self) -> Self:
        if not (self.jwks or self.jwks_file or self.jwks_url or self.jku_allowlist):
            raise ValueError("give at least one of jwks, jwks_file, jwks_url or jku_allowlist")
        return self


class IssuersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    issuers: list[IssuerConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        seen: set[str] = set()
        for issuer in self.issuers:
            if issuer.iss in seen:
                raise ValueError(f"issuer '{issuer.iss}' is listed twice")
            seen.add(issuer.iss)
        return self


@dataclass
class TrustedIssuer:
    """An issuer ready for verification: its static keys and its refreshable key sources."""

    iss: str
    static_keys: dict[str, PublicKey]
    sources: list[FileKeys | UrlKeys]
    jku_allowlist: frozenset[str]
    tenants: frozenset[str] | None
    keystore: KeyStore = field(repr=False)

    @property
    def testing_only(self) -> bool:
        """Does this issuer accept tokens anyone can mint? True for the public sandbox's ``iss``,
        and for any issuer that takes its keys from the sandbox or holds the sandbox's key."""
        if self.iss.rstrip("/") == SANDBOX_ISSUER:
            return True
        urls = set(self.jku_allowlist) | {s.url for s in self.sources if isinstance(s, UrlKeys)}
        if any(urlsplit(url).hostname == SANDBOX_HOST for url in urls):
            return True
        kids = set(self.static_keys).union(*(s.keys for s in self.sources if isinstance(s, FileKeys)))
        return SANDBOX_KID in kids

    def find_key(self, kid: str, jku: str | None) -> PublicKey | None:
        """The key named ``kid``: written-down keys first, then files and URLs, then the token's
        ``jku`` (the caller has already checked it is allow-listed)."""
        key = self.static_keys.get(kid)
        if key is not None:
            return key
        sources = list(self.sources)
        if jku is not None and not any(isinstance(s, UrlKeys) and s.url == jku for s in sources):
            sources.append(self.keystore.url(jku))
        for source in sources:
            key = source.find(kid)
            if key is not None:
                return key
        return None


def read_issuers_file(path: Path) -> IssuersFile:
    problem = world_writable(Path(path))
    if problem:
        raise IssuerConfigError(f"issuers file {problem}")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise IssuerConfigError(f"cannot read issuers file {path}: {exc.strerror or exc}") from None
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise IssuerConfigError(f"issuers file {path} is not valid JSON: {exc}") from None
    try:
        return IssuersFile.model_validate_json(text)
    except ValidationError as exc:
        raise IssuerConfigError(f"issuers file {path}: {describe_validation_error(exc)}") from None


def build_issuers(path: Path, keystore: KeyStore) -> dict[str, TrustedIssuer]:
    """Read and check the issuers file; every inline key and key file is parsed now."""
    document = read_issuers_file(path)
    base = Path(path).parent
    issuers: dict[str, TrustedIssuer] = {}
    for config in document.issuers:
        try:
            static = parse_jwks(config.jwks, strict=True, origin="jwks") if config.jwks is not None else {}
            sources: list[FileKeys | UrlKeys] = []
            if config.jwks_file is not None:
                key_file = config.jwks_file if config.jwks_file.is_absolute() else base / config.jwks_file
                sources.append(keystore.file(key_file))
            if config.jwks_url is not None:
                sources.append(keystore.url(config.jwks_url))
        except (JwksError, OSError) as exc:
            raise IssuerConfigError(f"issuers file {path}: issuer '{config.iss}': {exc}") from None
        issuers[config.iss] = TrustedIssuer(
            iss=config.iss,
            static_keys=static,
            sources=sources,
            jku_allowlist=frozenset(config.jku_allowlist),
            tenants=frozenset(config.tenants) if config.tenants is not None else None,
            keystore=keystore,
        )
    return issuers
