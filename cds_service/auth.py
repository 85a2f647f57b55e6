"""Authenticating the CDS client (the EHR). JWT verification lands here (issue #5).

The app calls ``authenticator.authenticate(authorization_header, audience)`` before every
discovery, service and feedback call (never on CORS preflight). It returns what the request
context may use (e.g. ``{"iss": ..., "tenant": ...}``) or raises ``ApiError(401)``.
"""

from __future__ import annotations

from typing import Any, Protocol


class Authenticator(Protocol):
    def authenticate(self, authorization_header: str | None, audience: str) -> dict[str, Any] | None: ...


class NoAuthentication:
    """Open access: only allowed on loopback or with an explicit opt-out (see cli.serve)."""

    enabled = False

    def authenticate(self, authorization_header: str | None, audience: str) -> dict[str, Any] | None:
        return None


def build_authenticator(settings) -> Authenticator:
    return NoAuthentication()
