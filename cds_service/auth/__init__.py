"""Authenticating the CDS client (the EHR): its JWT, the trusted issuers, their keys, replay.

``authenticator`` verifies tokens; ``issuers`` reads the trusted-issuer file; ``keys`` holds and
fetches JWKS; ``replay`` remembers each accepted ``jti``.
"""

from __future__ import annotations

from cds_service.auth.authenticator import (
    Authenticator,
    IssuerConfigError,
    JwtAuthenticator,
    NoAuthentication,
    build_authenticator,
    build_replay_cache,
)
from cds_service.auth.replay import InMemoryReplayCache, RedisReplayCache, ReplayCache, ReplayStoreUnavailable

__all__ = [
    "Authenticator",
    "InMemoryReplayCache",
    "IssuerConfigError",
    "JwtAuthenticator",
    "NoAuthentication",
    "RedisReplayCache",
    "ReplayCache",
    "ReplayStoreUnavailable",
    "build_authenticator",
    "build_replay_cache",
]
