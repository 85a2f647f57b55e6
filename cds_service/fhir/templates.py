"""Prefetch keys as a service declares them, and filling their CDS Hooks 2.0 templates.

A template uses only 2.0 tokens (``{{context.patientId}}``, ``{{userPractitionerId}}`` ...) and
the 2.0 restricted query subset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class PrefetchKey:
    """One prefetch key of a service: its template, what a clinician would call the data, and
    what happens when it cannot be had."""

    template: str
    # What a clinician would call this data (used in the 412 message).
    description: str
    # Labs: only the newest N results matter (the template's ``_count``), so pagination stops once
    # N are in hand. ``None``: the whole result set is needed (conditions, medications); then a
    # ``_count`` is a page size, not a limit.
    newest: int | None = None
    # Required: without it the hook cannot do its job (412). Optional: the cards say what could
    # not be checked.
    required: bool = False


@dataclass(frozen=True)
class Shape:
    """What a filled template returns: a read gives one resource, a search a searchset Bundle."""

    resource_type: str
    is_read: bool
    newest: int | None


@cache  # keys are declared once per service; every hook call asks again
def shape_of(key: PrefetchKey) -> Shape:
    path, _, query = key.template.partition("?")
    segments = [s for s in path.split("/") if s]
    is_read = not query and len(segments) == 2
    return Shape(segments[0] if segments else "", is_read, key.newest)


_TOKEN = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


class TemplateError(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def fill_template(template: str, context: dict[str, Any]) -> str:
    """Replace the 2.0 prefetch tokens; raise ``TemplateError`` when one cannot be filled.

    Values are percent-encoded so that an id can never add a query parameter or a path segment.
    """

    def value_of(match: re.Match[str]) -> str:
        token = match.group(1)
        if token.startswith("context."):
            name = token[len("context.") :]
            value = context.get(name)
            # 2.0: only first-level primitive context fields are tokens.
            if isinstance(value, bool):
                value = "true" if value else "false"
            if not isinstance(value, (str, int, float)) or value == "":
                raise TemplateError(f"request has no usable context.{name}")
            return quote(str(value), safe="-._~")
        if token in _USER_TOKENS:
            user = context.get("userId")
            kind, _, user_id = user.partition("/") if isinstance(user, str) else ("", "", "")
            if kind != _USER_TOKENS[token] or not user_id:
                raise TemplateError(f"request has no {_USER_TOKENS[token]} user")
            return quote(user_id, safe="-._~")
        raise TemplateError("template uses a token this service cannot fill")

    return _TOKEN.sub(value_of, template)
