"""Errors the API answers with, as FHIR OperationOutcome bodies.

Messages are written for a developer integrating an EHR: they name the member at fault and
what was expected, and never echo the value that was sent (it may hold a token or PHI).
"""

from __future__ import annotations

from typing import Any

# HTTP status -> OperationOutcome issue type (http://hl7.org/fhir/issue-type)
_ISSUE_CODE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    412: "incomplete",
    413: "too-long",
    415: "not-supported",
    500: "exception",
}


class ApiError(Exception):
    """An error with the HTTP status and the words to say to the caller."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class PreconditionFailed(ApiError):
    """412: FHIR data the service needs could neither be taken from prefetch nor fetched."""

    def __init__(self, message: str):
        super().__init__(412, message)


def operation_outcome(status: int, message: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "fatal" if status >= 500 else "error",
                "code": _ISSUE_CODE.get(status, "processing"),
                "diagnostics": message,
            }
        ],
    }


def describe_validation_error(exc, prefix: str = "") -> str:
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
