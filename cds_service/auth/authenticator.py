"""Authenticating the CDS client (the EHR): CDS Hooks 2.0 JWT verification (spec §8, issue #5).

The app calls ``authenticator.authenticate(authorization_header, audience)`` before every
discovery, service and feedback call (never on CORS preflight). It returns what the request
context may use (``{"iss", "tenant", "jti"}``) or raises ``Unauthorized`` (answered 401).
``audience`` is the URL that was called, built from the configured public base URL(s) only
(``CDS_PUBLIC_BASE_URL``), never from request headers: one URL, or several accepted alike.

The caller only ever learns that authentication failed; the precise reason is logged with the
token's iss, kid and jti (never the token itself), which is what an integrator needs to debug.
Checks, in order: Bearer header -> JOSE header (alg allowed, typ JWT, kid) -> iss trusted ->
jku allow-listed -> key found by kid and fitting alg -> signature, aud, required claims ->
exp, iat, lifetime -> tenant -> jti not seen before (last, so that only tokens with a valid
signature can occupy the replay cache).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jwt

from cds_service.auth.issuers import SANDBOX_ISSUER, IssuerConfigError, TrustedIssuer, build_issuers
from cds_service.auth.keys import KeyStore
from cds_service.auth.replay import (
    InMemoryReplayCache,
    RedisReplayCache,
    ReplayCache,
    ReplayCacheFull,
    ReplayStoreUnavailable,
)
from cds_service.calllog import event
from cds_service.config import Settings
from cds_service.errors import ServiceUnavailable, Unauthorized
from cds_service.net import is_loopback_host

__all__ = [
    "Authenticator",
    "IssuerConfigError",
    "JwtAuthenticator",
    "NoAuthentication",
    "build_authenticator",
    "build_replay_cache",
]

log = logging.getLogger("cds_service.auth")

AUTH_FAILED = "Authentication failed."
REPLAY_STORE_DOWN = "The service cannot check tokens right now; send the request again shortly."
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="cds-services"'}
_REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]


Audience = str | Sequence[str]


class Authenticator(Protocol):
    @property
    def enabled(self) -> bool: ...

    def authenticate(self, authorization_header: str | None, audience: Audience) -> dict[str, Any] | None: ...


class NoAuthentication:
    """Open access: only allowed on loopback or with an explicit opt-out (see cli.serve)."""

    enabled = False

    def authenticate(self, authorization_header: str | None, audience: Audience) -> dict[str, Any] | None:
        return None


class _Rejected(Exception):
    """Internal: why a token was refused (logged, never sent)."""


def _short(value: Any) -> Any:
    # Claims come from an unauthenticated caller: keep log lines bounded.
    return value[:200] if isinstance(value, str) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class JwtAuthenticator:
    """Verifies CDS Hooks client JWTs against a fixed set of trusted issuers."""

    enabled = True

    def __init__(
        self,
        issuers: dict[str, TrustedIssuer],
        *,
        algorithms: list[str],
        leeway: float = 30,
        max_lifetime: float = 3600,
        replay_cache: ReplayCache | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.issuers = issuers
        self.algorithms = list(algorithms)
        self.leeway = leeway
        self.max_lifetime = max_lifetime
        self.replay_cache = replay_cache if replay_cache is not None else InMemoryReplayCache()
        self.clock = clock

    def authenticate(self, authorization_header: str | None, audience: Audience) -> dict[str, Any]:
        audiences = [audience] if isinstance(audience, str) else list(audience)
        seen: dict[str, Any] = {}
        # What is logged goes on the call's one request line (calllog), or on a line of its own
        # when no call is open.
        try:
            return self._verify(authorization_header, audiences, seen)
        except _Rejected as exc:
            event(
                log,
                logging.WARNING,
                "authentication failed",
                reason=str(exc),
                audience=[_short(a) for a in audiences],
                **{k: _short(v) for k, v in seen.items()},
            )
        except ReplayCacheFull as exc:
            event(
                log,
                logging.ERROR,
                "authentication refused: replay cache full (raise CDS_JWT_REPLAY_CACHE_SIZE or lower "
                "CDS_JWT_MAX_LIFETIME_SECONDS)",
                reason=str(exc),
                **{k: _short(v) for k, v in seen.items()},
            )
        except ReplayStoreUnavailable as exc:
            # Fail closed, but say "try again" (503), not "your token is bad" (401).
            event(
                log,
                logging.ERROR,
                "authentication not possible: the shared replay store (Redis) cannot be reached",
                reason=str(exc),
                **{k: _short(v) for k, v in seen.items()},
            )
            raise ServiceUnavailable(REPLAY_STORE_DOWN) from None
        raise Unauthorized(AUTH_FAILED, headers=dict(WWW_AUTHENTICATE))

    def _verify(self, authorization_header: str | None, audiences: list[str], seen: dict[str, Any]) -> dict[str, Any]:
        if not audiences:
            raise _Rejected("no audience to check against (CDS_PUBLIC_BASE_URL is not set)")
        token = self._bearer_token(authorization_header)
        header = self._jose_header(token, seen)
        alg, kid, jku = header["alg"], header["kid"], header.get("jku")

        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise _Rejected(f"malformed token payload ({exc})") from None
        iss = unverified.get("iss")
        seen.update(iss=iss, jti=unverified.get("jti"))
        if not isinstance(iss, str):
            raise _Rejected("iss claim missing or not a string")
        issuer = self.issuers.get(iss)
        if issuer is None:
            raise _Rejected("iss is not a trusted issuer")
        if jku is not None and jku not in issuer.jku_allowlist:
            # Never fetch a URL that an unauthenticated caller chose.
            raise _Rejected("jku header is not on this issuer's allow-list")

        key = issuer.find_key(kid, jku)
        if key is None:
            raise _Rejected("no key with this kid for this issuer")
        if not key.fits(alg):
            kind = " ".join(filter(None, (key.kty, key.crv, key.alg and f"pinned to {key.alg}")))
            raise _Rejected(f"key '{kid}' ({kind}) cannot verify alg {alg}")

        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=audiences,
                issuer=iss,
                options={
                    "require": _REQUIRED_CLAIMS,
                    # Time claims are checked below against our own (injectable) clock.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.InvalidSignatureError:
            raise _Rejected("signature does not verify with the issuer's key") from None
        except jwt.InvalidAudienceError:
            raise _Rejected("aud does not name the URL that was called") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _Rejected(f"required claim '{exc.claim}' is missing") from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise _Rejected(f"token rejected ({type(exc).__name__}: {exc})") from None

        self._check_times(claims)
        tenant = claims.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise _Rejected("tenant claim is not a string")
        seen["tenant"] = tenant
        if issuer.tenants is not None and tenant not in issuer.tenants:
            raise _Rejected("tenant is not on this issuer's tenant allow-list")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise _Rejected("jti claim is not a non-empty string")
        # Remember the jti for as long as the token itself could still be accepted.
        if not self.replay_cache.remember(f"{iss}\n{jti}", claims["exp"] + self.leeway, self.clock()):
            raise _Rejected("jti already used (replayed token)")
        return {"iss": iss, "tenant": tenant, "jti": jti}

    @staticmethod
    def _bearer_token(authorization_header: str | None) -> str:
        if not authorization_header:
            raise _Rejected("no Authorization header")
        scheme, _, token = authorization_header.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise _Rejected("Authorization scheme is not Bearer")
        token = token.strip()
        if not token or any(c.isspace() for c in token):
            raise _Rejected("Authorization header holds no single Bearer token")
        return token

    def _jose_header(self, token: str, seen: dict[str, Any]) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _Rejected(f"malformed token ({exc})") from None
        alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
        seen.update(kid=kid, alg=alg)
        if alg not in self.algorithms:
            raise _Rejected(f"alg '{_short(alg)}' is not accepted (accepted: {', '.join(self.algorithms)})")
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise _Rejected("typ header is not JWT")
        if not isinstance(kid, str) or not kid:
            raise _Rejected("kid header is missing")
        jku = header.get("jku")
        if jku is not None and not isinstance(jku, str):
            raise _Rejected("jku header is not a string")
        return header

    def _check_times(self, claims: dict[str, Any]) -> None:
        exp, iat, now = claims["exp"], claims["iat"], self.clock()
        if not _is_number(exp):
            raise _Rejected("exp is not a number")
        if not _is_number(iat):
            raise _Rejected("iat is not a number")
        if exp <= now - self.leeway:
            raise _Rejected("token expired (exp is in the past)")
        if iat > now + self.leeway:
            raise _Rejected("iat is in the future")
        nbf = claims.get("nbf")
        if nbf is not None and (not _is_number(nbf) or nbf > now + self.leeway):
            raise _Rejected("token not yet valid (nbf)")
        if self.max_lifetime and exp - iat > self.max_lifetime:
            raise _Rejected(f"token lifetime exp - iat exceeds {self.max_lifetime:g} s")


def build_authenticator(settings: Settings, *, clock: Callable[[], float] = time.time) -> Authenticator:
    """JWT verification when an issuers file is configured, otherwise open access (which the
    ``serve`` command allows on loopback only).

    Raises ``IssuerConfigError`` (one line, naming the fix) for a bad issuers or key file, for
    issuers without ``CDS_PUBLIC_BASE_URL`` (the audience must never come from request
    headers), and for the public sandbox issuer on a non-loopback address without
    ``CDS_ALLOW_SANDBOX_ISSUER_ON_NETWORK``."""
    if settings.issuers_file is None:
        return NoAuthentication()
    if not settings.public_base_url:
        raise IssuerConfigError(
            "an issuers file is configured but CDS_PUBLIC_BASE_URL is not: set it to the base URL the "
            "EHR calls, e.g. CDS_PUBLIC_BASE_URL=https://cds.example.org (or serve --public-base-url); "
            "the JWT audience is never taken from request headers"
        )
    keystore = KeyStore(
        timeout=settings.jwks_fetch_timeout,
        min_refresh=settings.jwks_refresh_min_seconds,
        max_age=settings.jwks_max_age_seconds,
    )
    issuers = build_issuers(settings.issuers_file, keystore)
    mintable = sorted(iss for iss, issuer in issuers.items() if issuer.testing_only)
    if mintable and not is_loopback_host(settings.host):
        if not settings.allow_sandbox_issuer_on_network:
            raise IssuerConfigError(
                f"the issuers file trusts the public CDS Hooks sandbox ({', '.join(mintable)}), whose "
                f"private key is published, and the service would listen on {settings.host}: bind to "
                "127.0.0.1, or pass --allow-public-sandbox-issuer-on-network "
                "(CDS_ALLOW_SANDBOX_ISSUER_ON_NETWORK=true) to let anyone who reaches it call it"
            )
        log.error(
            "TRUSTING THE PUBLIC CDS HOOKS SANDBOX ON A NETWORK ADDRESS (%s): anyone who can reach "
            "this service can mint a token it accepts. Never use it with real patient data.",
            settings.host,
            extra={"issuers": mintable},
        )
    elif mintable:
        log.warning(
            "trusting the public CDS Hooks sandbox (%s): its private key is published, so anyone "
            "can sign its tokens. Use this issuer for testing only.",
            SANDBOX_ISSUER,
            extra={"issuers": mintable},
        )
    log.info("JWT authentication on", extra={"issuers": sorted(issuers), "algorithms": settings.jwt_algorithms})
    return JwtAuthenticator(
        issuers,
        algorithms=settings.jwt_algorithms,
        leeway=settings.jwt_leeway_seconds,
        max_lifetime=settings.jwt_max_lifetime_seconds,
        replay_cache=build_replay_cache(settings),
        clock=clock,
    )


def build_replay_cache(settings: Settings) -> ReplayCache:
    """Redis when ``CDS_REDIS_URL`` is set (shared by every process and replica), else in memory."""
    if settings.redis_url:
        return RedisReplayCache(settings.redis_url, prefix=settings.redis_key_prefix, timeout=settings.redis_timeout)
    return InMemoryReplayCache(settings.jwt_replay_cache_size)
