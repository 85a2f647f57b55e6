"""Domain errors: what went wrong with a call, in words fit to show the caller.

The layers below HTTP (authentication, the pipeline, the FHIR resolver) raise these; only the
HTTP layer (``cds_service.http.errors``) knows which status each maps to. Messages are written
for a developer integrating an EHR: they name the member at fault and what was expected, and
never echo the value that was sent (it may hold a token or PHI).
"""

from __future__ import annotations

from pydantic import ValidationError


class CdsError(Exception):
    """Base of the errors a caller is told about; ``message`` is safe to send and to log."""

    def __init__(self, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(CdsError):
    """The request is malformed or asks for something this service does not do."""


class NotFound(CdsError):
    """No such service."""


class Unauthorized(CdsError):
    """The caller could not be authenticated (the reason is logged, never sent)."""


class DataUnavailable(CdsError):
    """FHIR data a hook cannot do without could be had neither from prefetch nor from a
    trusted FHIR server."""


class ServiceUnavailable(CdsError):
    """A store the call needs (the database, the shared replay store) cannot be reached right now;
    the caller may retry (answered 503 with Retry-After). The cause is logged, never sent."""

    def __init__(
        self, message: str, *, retry_after: int = 1, headers: dict[str, str] | None = None, detail: str | None = None
    ):
        super().__init__(message, headers={"Retry-After": str(retry_after), **(headers or {})})
        self.detail = detail  # for the operator (start-up refusal, log), never sent to the caller


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """Turn a pydantic ValidationError into one readable sentence naming each field.

    Only the location and the message are used; the offending input is never echoed.
    """
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
        msg = err.get("msg", "invalid value")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        where = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "body"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) if parts else "request body is not valid"
