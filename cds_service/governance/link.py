"""Signed, expiring links to the governance report, for people without an EHR's JWT.

With authentication on, ``GET /governance/report`` needs a CDS Hooks JWT that only an EHR can
mint, so a committee member could not open the page in a browser. ``calciphylaxis-cds report-link``
prints a URL carrying an expiry time and an HMAC-SHA256 signature, made with the secret
``CDS_REPORT_LINK_SECRET``, over the path and that time:

    https://cds.example.org/governance/report?expires=1795000000&signature=<43 characters>

The service accepts the report path with either a valid JWT (as before) or such a link that is
unexpired and whose signature it recomputes with the same secret (compared in constant time).
The link opens that one page and nothing else: the signature covers the path, and the page holds
counts and labels only, never patient data. Anyone holding the link can open the page until it
expires; changing the secret revokes every link issued with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

REPORT_PATH = "/governance/report"
EXPIRES_PARAM = "expires"
SIGNATURE_PARAM = "signature"
# Domain separation: a signature made for this purpose means nothing anywhere else.
_PURPOSE = b"calciphylaxis-cds report-link v1"
# A link may be dated this far ahead of the service's clock and still be accepted as made by
# ``report-link`` on a machine whose clock runs a little fast.
CLOCK_SKEW_SECONDS = 300


class ReportLinkRefused(Exception):
    """A report link that does not open the page; the message says why, for the person holding it."""

    def __init__(self, message: str, *, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def signature(secret: str, path: str, expires: int) -> str:
    """HMAC-SHA256 of the purpose, the path and the expiry (Unix seconds), base64url without padding."""
    message = b"\n".join([_PURPOSE, path.encode("utf-8"), str(expires).encode("ascii")])
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def report_link(base_url: str, secret: str, expires: datetime) -> str:
    """The report's URL under ``base_url``, valid until ``expires`` (whole seconds, UTC)."""
    when = int(expires.timestamp())
    query = urlencode({EXPIRES_PARAM: when, SIGNATURE_PARAM: signature(secret, REPORT_PATH, when)})
    return f"{base_url.rstrip('/')}{REPORT_PATH}?{query}"


def check_report_link(
    secret: str | None,
    path: str,
    expires_value: str | None,
    signature_value: str | None,
    *,
    now: datetime,
    max_days: int,
) -> datetime:
    """When the link given by the query parameters is valid: its expiry; else ``ReportLinkRefused``.

    Refused: links while no secret is configured, a missing or malformed parameter, a signature
    that is not the one the secret makes for this path and expiry (altered, or made with another
    secret), a link past its expiry, and a link dated further ahead than ``max_days`` (no one can
    make a link that never expires, even with the secret). The signature is checked before the
    expiry, so the answer never tells a forger anything about the time they chose.
    """
    if not secret:
        raise ReportLinkRefused(
            "Report links are not enabled on this service (CDS_REPORT_LINK_SECRET is not set); "
            "open the report with the service's usual authentication."
        )
    if not expires_value or not signature_value:
        raise ReportLinkRefused(
            f"This report link is incomplete: it needs both '{EXPIRES_PARAM}' and '{SIGNATURE_PARAM}'. "
            "Copy the whole link, or ask for a new one (calciphylaxis-cds report-link)."
        )
    if not (expires_value.isascii() and expires_value.isdigit() and len(expires_value) <= 12):
        raise ReportLinkRefused(f"This report link's '{EXPIRES_PARAM}' is not a time; ask for a new link.")
    expires = int(expires_value)
    expected = signature(secret, path, expires)
    if not hmac.compare_digest(expected.encode("ascii"), signature_value.encode("utf-8", "replace")):
        raise ReportLinkRefused(
            "This report link's signature is not valid: the link was altered or made with another secret "
            "(a changed CDS_REPORT_LINK_SECRET revokes earlier links). Ask for a new one (calciphylaxis-cds report-link)."
        )
    until = datetime.fromtimestamp(expires, UTC)
    if until <= now:
        raise ReportLinkRefused(
            f"This report link expired at {until.isoformat(timespec='seconds').replace('+00:00', 'Z')}; "
            "ask for a new one (calciphylaxis-cds report-link)."
        )
    if until > now + timedelta(days=max_days, seconds=CLOCK_SKEW_SECONDS):
        raise ReportLinkRefused(
            f"This report link is valid for longer than this service allows ({max_days} days, "
            "CDS_REPORT_LINK_MAX_DAYS); ask for a new one with fewer days."
        )
    return until
