"""SMART App Launch 2.0, EHR launch: discovery, the authorisation request, the code exchange.

* **Which EHRs.** Only an ``iss`` on ``CDS_SMART_ISSUERS`` (FHIR base URLs or host patterns, the
  syntax of ``CDS_FHIR_ALLOWED_SERVERS``, checked by the same function) is ever contacted: the
  app never fetches a discovery document, sends a code or a token anywhere else. https is
  required except on loopback (or with ``CDS_FHIR_ALLOW_HTTP``), for the issuer and for the
  endpoints its discovery document names.
* **Discovery** reads ``<iss>/.well-known/smart-configuration`` (SMART 2.0; the deprecated
  CapabilityStatement extensions are not read), with timeouts, no redirects, no proxy or
  ``.netrc`` credentials and a size cap, and requires ``S256`` among
  ``code_challenge_methods_supported`` (and ``launch-ehr`` among ``capabilities`` when the
  server lists them). A good document is remembered for 5 minutes per issuer.
* **OAuth** is Authlib's OAuth 2.0 client (``OAuth2Session``): the authorisation URL with
  ``response_type=code``, ``client_id``, ``redirect_uri``, ``scope``, ``state``, ``aud`` (the
  issuer), ``launch`` and the PKCE ``code_challenge`` (S256) it derives from our verifier; then
  the code exchange as a public client (``client_id`` in the body, ``code_verifier``), without
  following redirects. Why Authlib and not ``fhirclient``: docs/smart-app.md.

Failures raise ``LaunchError`` whose ``reason`` is a short sentence fit for the page a clinician
sees: never a URL, a code, a token or what the EHR answered.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError  # type: ignore[import-untyped]

from cds_service.fhir.client import server_problem
from cds_service.net import is_loopback_host

DISCOVERY_PATH = "/.well-known/smart-configuration"
DISCOVERY_MAX_BYTES = 256 * 1024
DISCOVERY_CACHE_SECONDS = 300.0
# OAuth error codes (RFC 6749 4.1.2.1 and 5.2) a page may name; anything else is "refused".
OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "unauthorized_client",
        "access_denied",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
        "invalid_client",
        "invalid_grant",
        "unsupported_grant_type",
    }
)


class LaunchError(Exception):
    """A launch that cannot go on; ``reason`` is safe to show and to log."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class SmartConfiguration:
    """What the app uses of an issuer's ``.well-known/smart-configuration``."""

    authorization_endpoint: str
    token_endpoint: str


def issuer_problem(iss: str, trusted: list[str], *, allow_http: bool) -> str | None:
    """``None`` when ``iss`` may be contacted, else why not (the FHIR client's own rule)."""
    problem = server_problem(iss, trusted, allow_http=allow_http)
    return None if problem is None else problem.replace("FHIR server", "its FHIR server")


def _endpoint(value: Any, *, allow_http: bool) -> str | None:
    """An absolute https URL (http on loopback, or with ``allow_http``) without credentials or
    fragment; else ``None``."""
    if not isinstance(value, str) or not value or len(value) > 2048:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
        return None
    if parts.fragment:
        return None
    if parts.scheme == "http" and not (allow_http or is_loopback_host(parts.hostname)):
        return None
    return value


class Discovery:
    """Reads and checks issuers' SMART configuration, remembering good ones for a while."""

    def __init__(self, *, allow_http: bool, connect_timeout: float = 2.0, read_timeout: float = 5.0):
        self.allow_http = allow_http
        self.timeout = (connect_timeout, read_timeout)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, SmartConfiguration]] = {}
        session = requests.Session()
        session.trust_env = False  # no proxy variables, no .netrc credentials
        self._session = session

    def close(self) -> None:
        self._session.close()

    def configuration(self, iss: str) -> SmartConfiguration:
        base = iss.rstrip("/")
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(base)
            if cached is not None and cached[0] > now:
                return cached[1]
        found = self._parse(self._fetch(base + DISCOVERY_PATH))
        with self._lock:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[base] = (now + DISCOVERY_CACHE_SECONDS, found)
        return found

    def _fetch(self, url: str) -> Any:
        unreachable = "The EHR's SMART configuration could not be read"
        try:
            with self._session.get(
                url, headers={"Accept": "application/json"}, timeout=self.timeout, allow_redirects=False, stream=True
            ) as response:
                if response.status_code != 200:
                    raise LaunchError(f"{unreachable} (it answered {response.status_code}).", 502)
                body = b""
                for chunk in response.iter_content(64 * 1024):
                    body += chunk
                    if len(body) > DISCOVERY_MAX_BYTES:
                        raise LaunchError(f"{unreachable} (too large).", 502)
        except requests.RequestException:
            raise LaunchError(f"{unreachable} (no answer).", 502) from None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise LaunchError(f"{unreachable} (not JSON).", 502) from None

    def _parse(self, data: Any) -> SmartConfiguration:
        if not isinstance(data, dict):
            raise LaunchError("The EHR's SMART configuration is not a JSON object.", 502)
        authorize = _endpoint(data.get("authorization_endpoint"), allow_http=self.allow_http)
        token = _endpoint(data.get("token_endpoint"), allow_http=self.allow_http)
        if authorize is None or token is None:
            raise LaunchError(
                "The EHR's SMART configuration names no usable authorization and token endpoints (https required).",
                502,
            )
        methods = data.get("code_challenge_methods_supported")
        if not isinstance(methods, list) or "S256" not in methods:
            raise LaunchError(
                "The EHR does not declare PKCE with S256 (code_challenge_methods_supported), which this app requires.",
                502,
            )
        capabilities = data.get("capabilities")
        if isinstance(capabilities, list) and "launch-ehr" not in capabilities:
            raise LaunchError("The EHR's SMART configuration does not offer the EHR launch (launch-ehr).", 502)
        return SmartConfiguration(authorization_endpoint=authorize, token_endpoint=token)


def authorization_url(
    config: SmartConfiguration,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str,
    state: str,
    code_verifier: str,
    launch: str,
    aud: str,
) -> str:
    """The EHR's authorisation URL for this launch (the code challenge is S256 of the verifier)."""
    client = OAuth2Session(client_id=client_id, redirect_uri=redirect_uri, scope=scope, code_challenge_method="S256")
    try:
        url, _ = client.create_authorization_url(
            config.authorization_endpoint, state=state, code_verifier=code_verifier, launch=launch, aud=aud
        )
    finally:
        client.close()
    return str(url)


def exchange_code(
    token_endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    code: str,
    code_verifier: str,
    timeout: tuple[float, float] = (2.0, 10.0),
) -> dict[str, Any]:
    """The token response for ``code`` (a dict), or ``LaunchError``."""
    client = OAuth2Session(client_id=client_id, redirect_uri=redirect_uri, code_challenge_method="S256")
    client.trust_env = False
    try:
        token = client.fetch_token(
            token_endpoint,
            grant_type="authorization_code",
            code=code,
            code_verifier=code_verifier,
            timeout=timeout,
            allow_redirects=False,
        )
    except OAuthError as exc:
        error = exc.error if exc.error in OAUTH_ERRORS else "refused"
        raise LaunchError(f"The EHR refused to issue an access token ({error}).", 502) from None
    except requests.RequestException:
        raise LaunchError("The EHR's token endpoint could not be reached.", 502) from None
    except ValueError:
        raise LaunchError("The EHR's token endpoint did not answer with a token.", 502) from None
    finally:
        client.close()
    return dict(token)
