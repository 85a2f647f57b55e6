"""Network facts shared by the server start-up, the FHIR client and the JWKS fetcher."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str | None) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1), in any usual spelling."""
    if not host:
        return False
    host = host.strip("[]").rstrip(".").lower()
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
