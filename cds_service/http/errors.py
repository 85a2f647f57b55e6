"""Errors as HTTP answers: every error status is a FHIR OperationOutcome.

The domain errors of ``cds_service.errors`` get their status here and nowhere else; ``ApiError``
is for what only HTTP can get wrong (content type, body size).
"""

from __future__ import annotations

from typing import Any

from cds_service.errors import BadRequest, CdsError, DataUnavailable, NotFound, ServiceUnavailable, Unauthorized

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
    431: "too-long",
    500: "exception",
    501: "not-supported",
    503: "transient",
}

_STATUS: dict[type[CdsError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    NotFound: 404,
    DataUnavailable: 412,
    ServiceUnavailable: 503,
}


class ApiError(CdsError):
    """An error only the HTTP layer can detect, with its status."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)
        self.status = status


def http_status(exc: CdsError) -> int:
    """The status a domain error is answered with."""
    if isinstance(exc, ApiError):
        return exc.status
    for kind in type(exc).__mro__:
        if kind in _STATUS:
            return _STATUS[kind]
    return 500


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
