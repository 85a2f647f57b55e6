"""Pydantic models of the CDS Hooks 2.0 wire format.

Incoming models (requests, feedback) are lenient about members the spec does not define
(``extra='allow'``: extensions and vendor additions must never fail a call) but strict about the
members it requires. Outgoing models (discovery, cards) enforce the spec's rules so that a bug in
card content fails a test instead of reaching an EHR:

* optional members are omitted, never ``null``, ``""``, ``[]`` or ``{}``;
* ``summary`` is shorter than 140 characters; ``indicator`` is info|warning|critical;
* every card and suggestion has a ``uuid``; ``selectionBehavior`` accompanies ``suggestions``;
* every override reason has a ``display``; actions carry ``resourceId`` (delete) or
  ``resource`` (create/update).
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

HOOKS = ("patient-view", "order-select", "order-sign")


def new_uuid() -> str:
    return str(uuid.uuid4())


# --------------------------------------------------------------------------------------------
# Outgoing
# --------------------------------------------------------------------------------------------


class OutModel(BaseModel):
    """Base for everything we send: rejects empty optional members, dumps without ``None``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Members the spec allows to be empty (e.g. ``{"cards": []}``).
    MAY_BE_EMPTY: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_empty_members(self) -> Self:
        # Runs for every card, suggestion and action: read the field values directly.
        for name, value in self.__dict__.items():
            if isinstance(value, (str, list, dict)) and not value and name not in self.MAY_BE_EMPTY:
                raise ValueError(f"'{name}' must be omitted rather than empty")
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)

    def to_json_bytes(self) -> bytes:
        """The same JSON as ``to_json``, encoded by pydantic-core directly (no dict in between)."""
        return self.__pydantic_serializer__.to_json(self, exclude_none=True, by_alias=True)


class Coding(OutModel):
    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    display: str | None = None


class OverrideReason(Coding):
    """An override reason offered on a card: the spec requires ``display``."""

    display: str = Field(min_length=1)


class Source(OutModel):
    label: str = Field(min_length=1)
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(OutModel):
    type: Literal["create", "update", "delete"]
    description: str = Field(min_length=1)
    resource: dict[str, Any] | None = None
    resourceId: str | None = None

    @model_validator(mode="after")
    def _target(self) -> Self:
        if self.type == "delete":
            if not self.resourceId:
                raise ValueError("a delete action needs resourceId")
        elif not self.resource or "resourceType" not in self.resource:
            raise ValueError(f"a {self.type} action needs a FHIR resource")
        return self


class Suggestion(OutModel):
    label: str = Field(min_length=1)
    uuid: str = Field(default_factory=new_uuid, min_length=1)
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Link(OutModel):
    label: str = Field(min_length=1)
    url: str = Field(min_length=1)
    type: Literal["absolute", "smart"]
    appContext: str | None = None
    autolaunchable: bool | None = None

    @model_validator(mode="after")
    def _app_context_only_for_smart(self) -> Self:
        if self.appContext is not None and self.type != "smart":
            raise ValueError("appContext is only valid on smart links")
        return self


class Card(OutModel):
    uuid: str = Field(default_factory=new_uuid, min_length=1)
    summary: str = Field(min_length=1, max_length=139)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[OverrideReason] | None = None
    links: list[Link] | None = None
    # Which clinical rule produced the card, and the drug it is about ("" for a chart review):
    # kept for the served-card log (feedback attribution, snoozes), never sent.
    rule_id: str | None = Field(default=None, exclude=True)
    subject: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _selection(self) -> Self:
        if self.suggestions and not self.selectionBehavior:
            raise ValueError("selectionBehavior is required when suggestions are present")
        if self.selectionBehavior == "at-most-one" and self.suggestions:
            recommended = sum(1 for s in self.suggestions if s.isRecommended)
            if recommended > 1:
                raise ValueError("at-most-one allows at most one recommended suggestion")
        return self


class CDSResponse(OutModel):
    cards: list[Card] = Field(default_factory=list)
    systemActions: list[Action] | None = None
    MAY_BE_EMPTY: ClassVar[frozenset[str]] = frozenset({"cards"})


class DiscoveryService(OutModel):
    hook: str = Field(min_length=1)
    id: str = Field(min_length=1)
    title: str | None = None
    description: str = Field(min_length=1)
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class DiscoveryResponse(OutModel):
    services: list[DiscoveryService]


# --------------------------------------------------------------------------------------------
# Incoming
# --------------------------------------------------------------------------------------------


class InModel(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=False)


NonEmpty = Field(min_length=1)


class FhirAuthorization(InModel):
    access_token: str = Field(min_length=1, repr=False)
    token_type: str = Field(min_length=1)
    expires_in: int
    scope: str
    subject: str
    patient: str | None = None

    @field_validator("token_type")
    @classmethod
    def _bearer(cls, value: str) -> str:
        if value.lower() != "bearer":
            raise ValueError("token_type must be 'Bearer'")
        return value

    def __repr__(self) -> str:  # never let the token reach a log line
        return "FhirAuthorization(access_token=<redacted>)"

    __str__ = __repr__


class CDSRequest(InModel):
    hook: str = Field(min_length=1)
    hookInstance: str = Field(min_length=1)
    fhirServer: str | None = Field(default=None, min_length=1)
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None

    @field_validator("fhirServer")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError("fhirServer must be an absolute http(s) URL")
        return value

    @model_validator(mode="after")
    def _server_with_token(self) -> Self:
        if self.fhirAuthorization is not None and not self.fhirServer:
            raise ValueError("fhirServer is required when fhirAuthorization is present")
        return self


class _ContextBase(InModel):
    userId: str = Field(min_length=1)
    patientId: str = Field(min_length=1)
    encounterId: str | None = Field(default=None, min_length=1)


class DraftOrdersBundle(InModel):
    resourceType: Literal["Bundle"]
    entry: list[dict[str, Any]] | None = None


class PatientViewContext(_ContextBase):
    pass


class OrderSelectContext(_ContextBase):
    # May be empty: an EHR can fire order-select before anything is selected (nothing to check).
    selections: list[str]
    draftOrders: DraftOrdersBundle


class OrderSignContext(_ContextBase):
    draftOrders: DraftOrdersBundle


CONTEXT_MODELS: dict[str, type[_ContextBase]] = {
    "patient-view": PatientViewContext,
    "order-select": OrderSelectContext,
    "order-sign": OrderSignContext,
}


class FeedbackCoding(InModel):
    code: str = Field(min_length=1)
    system: str | None = None  # the sandbox sends code without system at times
    display: str | None = None


class FeedbackOverrideReason(InModel):
    reason: FeedbackCoding | None = None
    userComment: str | None = None


class AcceptedSuggestion(InModel):
    id: str = Field(min_length=1)


class FeedbackItem(InModel):
    card: str = Field(min_length=1)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: FeedbackOverrideReason | None = None
    outcomeTimestamp: AwareDatetime

    @model_validator(mode="after")
    def _accepted_needs_suggestions(self) -> Self:
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions is required when outcome is 'accepted'")
        return self


class FeedbackRequest(InModel):
    feedback: list[FeedbackItem] = Field(min_length=1)
