"""Whose cards, feedback and snoozes these are: the scope of a caller.

A snooze hides a card for a patient id, and patient ids are only unique within one EHR: two
hospitals (two trusted issuers, or two tenants of one issuer) may both have a patient "12345".
Every served-card row, feedback row and snooze therefore carries the scope of the verified caller,
and a hook call reads only the snoozes of its own scope; an override counts only on a card served
to the same scope (and the same service).

* Authentication on: ``jwt:`` and the SHA-256 of the verified token's issuer (``iss``) and tenant
  (the CDS Hooks ``tenant`` claim, or none): fixed length whatever the claims hold, and two
  different (issuer, tenant) pairs never share a scope.
* Authentication off: one fixed scope, ``unauthenticated``. Every caller is the same tenant, which
  is right for development and the sandbox only (docs/security.md); nothing done unauthenticated
  ever reaches a scope an authenticated caller reads, even on a shared database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

UNAUTHENTICATED = "unauthenticated"


def scope_of(auth: Mapping[str, Any] | None) -> str:
    """The scope of a call from what the authenticator returned (None: authentication is off)."""
    if not auth:
        return UNAUTHENTICATED
    iss = auth.get("iss")
    tenant = auth.get("tenant")
    if not isinstance(iss, str) or not iss:
        raise ValueError("an authenticated call without an issuer has no scope")
    canonical = json.dumps([iss, tenant if isinstance(tenant, str) else None], separators=(",", ":"))
    return "jwt:" + hashlib.sha256(canonical.encode()).hexdigest()
