"""Public keys of trusted JWT issuers: parsing JWK Sets, and where they come from.

An issuer's keys come from any of: a JWKS written inline in the issuers file, a JWKS file, a JWKS
URL, or the ``jku`` URL of a token when that URL is on the issuer's allow-list. Files and URLs are
read again when a token names a ``kid`` we do not know (key rotation), at most once per
``min_refresh`` seconds per source, so a stream of made-up ``kid`` values cannot make the service
hammer an issuer. A URL is only ever one the configuration named.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests

from cds_service.calllog import event
from cds_service.config import JWT_SIGNING_ALGORITHMS
from cds_service.net import is_loopback_host

log = logging.getLogger("cds_service.auth")

# The curve each ECDSA algorithm is defined on (RFC 7518 §3.4).
_EC_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
# The key type each asymmetric algorithm needs.
_KTY = {alg: "EC" if alg.startswith("ES") else "OKP" if alg == "EdDSA" else "RSA" for alg in JWT_SIGNING_ALGORITHMS}
# NIST SP 800-131A / RFC 7518 §3.3: RSA signing keys shorter than this are refused.
MIN_RSA_BITS = 2048
# JWK members that only a private key has: a key set with them leaks the issuer's signing key.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
MAX_JWKS_BYTES = 512 * 1024


class JwksError(ValueError):
    """A JWK or JWK Set that cannot be used (the message says why; never the key material)."""


def world_writable(path: Path) -> str | None:
    """Why a trust file must not be used because anyone on the machine may change it, or None.

    A world-writable issuers or JWKS file lets any local user add a key and so forge tokens.
    (POSIX only: other systems do not report these permission bits.)
    """
    if os.name != "posix":
        return None
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # reading it will fail with its own, clearer message
    if mode & stat.S_IWOTH:
        return f"{path} is world-writable (mode {stat.filemode(mode)}): anyone on this machine could add a key; run chmod o-w {path}"
    return None


def _check_pinned_alg(kid: str, kty: str, jwk: dict[str, Any]) -> str | None:
    """The JWK's own ``alg``, when it pins one, checked against its key type and curve."""
    alg = jwk.get("alg")
    if alg is None:
        return None
    if not isinstance(alg, str) or alg not in JWT_SIGNING_ALGORITHMS:
        shown = alg[:40] if isinstance(alg, str) else type(alg).__name__
        raise JwksError(
            f"key '{kid}' is pinned to alg '{shown}', which is not an asymmetric signing algorithm "
            "('none' and HMAC are never accepted)"
        )
    if _KTY[alg] != kty:
        raise JwksError(f"key '{kid}' is pinned to alg {alg}, which needs a {_KTY[alg]} key, not {kty}")
    if alg in _EC_CURVE and jwk.get("crv") != _EC_CURVE[alg]:
        raise JwksError(f"key '{kid}' is pinned to alg {alg}, which needs curve {_EC_CURVE[alg]}")
    return alg


@dataclass(frozen=True)
class PublicKey:
    kid: str
    kty: str
    crv: str | None
    alg: str | None  # the JWK's own "alg", when it pins one
    key: Any  # a cryptography public-key object

    def fits(self, alg: str) -> bool:
        """May this key verify a signature made with ``alg``? (no algorithm confusion)"""
        if self.alg and self.alg != alg:
            return False
        if alg in _EC_CURVE:
            return self.kty == "EC" and self.crv == _EC_CURVE[alg]
        if alg.startswith(("RS", "PS")):
            return self.kty == "RSA"
        if alg == "EdDSA":
            return self.kty == "OKP"
        return False


def parse_jwk(jwk: Any) -> PublicKey:
    if not isinstance(jwk, dict):
        raise JwksError("a key must be a JSON object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise JwksError("a key has no 'kid' (CDS Hooks tokens select their key by kid)")
    kty = jwk.get("kty")
    if kty not in ("EC", "RSA", "OKP"):
        raise JwksError(f"key '{kid}': kty must be EC, RSA or OKP (symmetric keys are never accepted)")
    leaked = sorted(_PRIVATE_MEMBERS & jwk.keys())
    if leaked:
        raise JwksError(f"key '{kid}' holds private key members ({', '.join(leaked)}); publish only the public key")
    if jwk.get("use", "sig") != "sig":
        raise JwksError(f"key '{kid}': use is '{jwk.get('use')}', not 'sig'")
    alg = _check_pinned_alg(kid, kty, jwk)
    try:
        key = jwt.PyJWK(jwk).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise JwksError(f"key '{kid}' is not a valid {kty} public key ({exc})") from None
    if kty == "RSA":
        bits = getattr(key, "key_size", 0)
        if bits < MIN_RSA_BITS:
            raise JwksError(f"key '{kid}' is a {bits}-bit RSA key; at least {MIN_RSA_BITS} bits are required")
    crv = jwk.get("crv")
    return PublicKey(kid=kid, kty=kty, crv=crv if isinstance(crv, str) else None, alg=alg, key=key)


def parse_jwks(document: Any, *, strict: bool, origin: str) -> dict[str, PublicKey]:
    """JWK Set -> {kid: key}. ``strict``: one bad key is an error (configuration written by us);
    otherwise bad keys are skipped with a warning (a remote set may hold keys of other kinds)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError(f"{origin}: a JWK Set must be a JSON object with a 'keys' array")
    keys: dict[str, PublicKey] = {}
    for jwk in document["keys"]:
        try:
            parsed = parse_jwk(jwk)
        except JwksError as exc:
            if strict:
                raise JwksError(f"{origin}: {exc}") from None
            log.warning("ignoring a key of a JWK Set", extra={"jwks": origin, "reason": str(exc)})
            continue
        if parsed.kid in keys:
            # The spec makes kid unique within a set; two keys under one kid is ambiguous.
            raise JwksError(f"{origin}: kid '{parsed.kid}' appears twice")
        keys[parsed.kid] = parsed
    return keys


def check_key_url(url: str) -> str:
    """Key URLs must be https (plain http only on loopback, for local testing)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
        return url
    raise ValueError(f"'{url}' is not an https URL (plain http is allowed on loopback only)")


class _Refreshable:
    """A key set read from somewhere that can change; re-read on demand, rate-limited."""

    def __init__(self, origin: str, *, min_refresh: float, max_age: float | None, clock: Callable[[], float]):
        self.origin = origin
        self.min_refresh = min_refresh
        self.max_age = max_age
        self.clock = clock
        self.keys: dict[str, PublicKey] = {}
        self.loaded_at: float | None = None
        self.last_attempt: float | None = None
        self._lock = threading.Lock()

    def find(self, kid: str) -> PublicKey | None:
        with self._lock:
            stale = self.loaded_at is None or (
                self.max_age is not None and self.clock() - self.loaded_at >= self.max_age
            )
            if stale:
                self._refresh("never loaded" if self.loaded_at is None else "older than max age")
            key = self.keys.get(kid)
            if key is None:
                # Key rotation: the issuer may have published a new key since we last looked.
                self._refresh(f"unknown kid '{kid[:80]}'")
                key = self.keys.get(kid)
            return key

    def _refresh(self, why: str) -> None:
        now = self.clock()
        if self.last_attempt is not None and now - self.last_attempt < self.min_refresh:
            return
        self.last_attempt = now
        try:
            self.keys = self.load()
        except (JwksError, OSError, ValueError, requests.RequestException) as exc:
            # Keep the keys we had: a flaky endpoint must not lock every caller out.
            event(
                log,
                logging.WARNING,
                "could not refresh a JWK Set; keeping the keys already known",
                jwks=self.origin,
                why=why,
                reason=str(exc)[:300],
                known_keys=len(self.keys),
            )
            return
        self.loaded_at = now
        event(log, logging.INFO, "JWK Set loaded", jwks=self.origin, why=why, kids=sorted(self.keys))

    def load(self) -> dict[str, PublicKey]:
        raise NotImplementedError


class FileKeys(_Refreshable):
    def __init__(self, path: Path, *, min_refresh: float, clock: Callable[[], float]):
        super().__init__(str(path), min_refresh=min_refresh, max_age=None, clock=clock)
        self.path = path
        # Read once now so that a broken file stops start-up with a clear message.
        self.keys = self.load()
        self.loaded_at = self.last_attempt = self.clock()

    def load(self) -> dict[str, PublicKey]:
        problem = world_writable(self.path)
        if problem:
            raise JwksError(problem)
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise JwksError(f"{self.path}: not valid JSON ({exc})") from None
        return parse_jwks(document, strict=True, origin=str(self.path))


class UrlKeys(_Refreshable):
    """A JWKS URL, fetched lazily (no network at start-up) with timeouts and a size cap."""

    def __init__(
        self,
        url: str,
        *,
        session: requests.Session,
        timeout: float,
        min_refresh: float,
        max_age: float | None,
        clock: Callable[[], float],
    ):
        super().__init__(url, min_refresh=min_refresh, max_age=max_age, clock=clock)
        self.url = url
        self.session = session
        self.timeout = timeout

    def load(self) -> dict[str, PublicKey]:
        with self.session.get(
            self.url,
            timeout=(self.timeout, self.timeout),
            headers={"Accept": "application/json, application/jwk-set+json"},
            allow_redirects=False,  # only the URL the configuration names is trusted
            stream=True,
        ) as response:
            if response.status_code != 200:
                raise JwksError(f"HTTP {response.status_code} from {self.url}")
            body = bytearray()
            for chunk in response.iter_content(65536):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksError(f"{self.url}: JWK Set larger than {MAX_JWKS_BYTES} bytes")
        try:
            document = json.loads(bytes(body))
        except ValueError:
            raise JwksError(f"{self.url}: the response is not JSON") from None
        return parse_jwks(document, strict=False, origin=self.url)


class KeyStore:
    """Every issuer's key sources; URL sources are shared, so a URL configured both as
    ``jwks_url`` and on a ``jku`` allow-list is fetched once."""

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        timeout: float = 2.0,
        min_refresh: float = 60.0,
        max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.session = session or requests.Session()
        self.timeout = timeout
        self.min_refresh = min_refresh
        self.max_age = max_age
        self.clock = clock
        self._urls: dict[str, UrlKeys] = {}
        self._lock = threading.Lock()

    def url(self, url: str) -> UrlKeys:
        with self._lock:
            source = self._urls.get(url)
            if source is None:
                source = self._urls[url] = UrlKeys(
                    url,
                    session=self.session,
                    timeout=self.timeout,
                    min_refresh=self.min_refresh,
                    max_age=self.max_age,
                    clock=self.clock,
                )
            return source

    def file(self, path: Path) -> FileKeys:
        return FileKeys(path, min_refresh=self.min_refresh, clock=self.clock)
