"""Talking to the CDS client's FHIR server: which servers may be contacted, and one safe GET.

Security rules kept here so no caller can forget them:

* only servers on the configured allow-list (``CDS_FHIR_ALLOWED_SERVERS``) are ever contacted, so a
  request naming another ``fhirServer`` can neither make us call it (SSRF) nor receive the token;
* https is required except on loopback, unless ``CDS_FHIR_ALLOW_HTTP`` says otherwise;
* redirects are never followed (a 3xx is a failure), so the token cannot be forwarded elsewhere;
* the session ignores proxy variables and ``.netrc`` (no credential is added behind our back) and
  keeps no cookies (one patient's call must not carry state into another's);
* every call has a connect and a read timeout, respects the hook call's deadline and stops reading
  past the response size cap.

Failures raise ``FhirFetchError`` whose ``reason`` is a short phrase fit to show a clinician
("timed out", "FHIR server answered 403"): never a URL, a token or a response body.
"""

from __future__ import annotations

import time
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import SplitResult, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError

from cds_service.net import is_loopback_host

_DEFAULT_PORTS = {"http": 80, "https": 443}
_CHUNK = 64 * 1024


class FhirFetchError(Exception):
    """A FHIR call that gave nothing usable; ``reason`` is safe to show and to log."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Which servers may be contacted
# --------------------------------------------------------------------------------------------


def _parts(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url.strip())
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts


def _origin(parts: SplitResult) -> tuple[str, str, int]:
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".").lower()
    return scheme, host, parts.port or _DEFAULT_PORTS[scheme]


def _path_under(path: str, base_path: str) -> bool:
    base_path = base_path.rstrip("/")
    path = path.rstrip("/")
    return path == base_path or path.startswith(base_path + "/")


def _matches_entry(parts: SplitResult, entry: str) -> bool:
    """One allow-list entry: a base URL (``https://fhir.example.org/r4``: same scheme, host and port,
    and a path at or below it) or a host pattern (``fhir.example.org``, ``fhir.example.org:8443``,
    ``*.example.org`` = any subdomain of example.org, never example.org itself)."""
    entry = entry.strip()
    if not entry:
        return False
    scheme, host, port = _origin(parts)
    if "://" in entry:
        allowed = _parts(entry)
        if allowed is None or allowed.query or allowed.fragment:
            return False
        return _origin(allowed) == (scheme, host, port) and _path_under(parts.path, allowed.path)
    try:
        pattern = urlsplit("//" + entry)
        pattern_port = pattern.port
    except ValueError:
        return False
    pattern_host = (pattern.hostname or "").rstrip(".").lower()
    if not pattern_host or pattern.path not in ("", "/"):
        return False
    if pattern_port is not None and pattern_port != port:
        return False
    if pattern_host.startswith("*."):
        return host.endswith(pattern_host[1:]) and host != pattern_host[2:]
    return host == pattern_host


def server_problem(url: str, allowed: list[str], *, allow_http: bool) -> str | None:
    """``None`` when ``url`` (a ``fhirServer``) may be contacted; otherwise the short reason why not."""
    parts = _parts(url)
    if parts is None or parts.username or parts.password or parts.query or parts.fragment:
        return "FHIR server address not usable"
    if not any(_matches_entry(parts, entry) for entry in allowed):
        return "FHIR server not trusted"
    if parts.scheme.lower() != "https" and not (allow_http or is_loopback_host(parts.hostname)):
        return "FHIR server not using https"
    return None


def is_under_base(url: str, base: str) -> bool:
    """True when ``url`` is on the same server as ``base`` and at or below its path (next links,
    absolute references): the token is only ever sent to the server the EHR named and we trust."""
    parts, base_parts = _parts(url), _parts(base)
    if parts is None or base_parts is None or parts.username or parts.password or parts.fragment:
        return False
    return _origin(parts) == _origin(base_parts) and _path_under(parts.path, base_parts.path)


# --------------------------------------------------------------------------------------------
# One GET
# --------------------------------------------------------------------------------------------


class FhirClient:
    """A pooled HTTP session for FHIR reads and searches, shared by the worker threads."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_response_bytes: int,
        pool_size: int = 16,
    ):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_response_bytes = max_response_bytes
        session = requests.Session()
        session.trust_env = False  # no proxy variables, no .netrc credentials
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # keep no cookies
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=pool_size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self.session = session

    @classmethod
    def from_settings(cls, settings) -> FhirClient:
        return cls(
            connect_timeout=settings.fhir_connect_timeout,
            read_timeout=settings.fhir_read_timeout,
            max_response_bytes=settings.fhir_max_response_bytes,
            pool_size=settings.fhir_workers,
        )

    def close(self) -> None:
        self.session.close()

    def get_json(self, url: str, *, token: str | None, deadline: float) -> dict[str, Any]:
        """GET ``url`` and return the FHIR resource it answered with, or raise ``FhirFetchError``.

        ``deadline`` is a ``time.monotonic()`` instant: no call outlives the hook call's budget.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FhirFetchError("timed out")
        headers = {"Accept": "application/fhir+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeout = (min(self.connect_timeout, remaining), min(self.read_timeout, remaining))
        try:
            with self.session.get(
                url, headers=headers, timeout=timeout, allow_redirects=False, stream=True
            ) as response:
                status = response.status_code
                if 300 <= status < 400:
                    raise FhirFetchError("FHIR server redirected (not followed)")
                if status != 200:
                    raise FhirFetchError(f"FHIR server answered {status}")
                body = self._read_capped(response, deadline)
        except requests.Timeout:
            raise FhirFetchError("timed out") from None
        except requests.ConnectionError:
            raise FhirFetchError("could not connect to FHIR server") from None
        except requests.RequestException:
            raise FhirFetchError("FHIR request failed") from None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise FhirFetchError("FHIR server response was not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            raise FhirFetchError("FHIR server response was not a FHIR resource")
        return data

    def _read_capped(self, response: requests.Response, deadline: float) -> bytes:
        cap = self.max_response_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise FhirFetchError("FHIR response too large")
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(_CHUNK):
                size += len(chunk)
                if size > cap:
                    raise FhirFetchError("FHIR response too large")
                if time.monotonic() > deadline:
                    raise FhirFetchError("timed out")
                chunks.append(chunk)
        except requests.ConnectionError as exc:
            # requests reports a read timeout met while streaming as a ConnectionError.
            if any(isinstance(arg, ReadTimeoutError) for arg in exc.args):
                raise FhirFetchError("timed out") from None
            raise FhirFetchError("connection to FHIR server lost") from None
        return b"".join(chunks)
