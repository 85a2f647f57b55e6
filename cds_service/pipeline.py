"""One hook call, start to finish, without HTTP: validate, resolve prefetch, evaluate.

The Flask view and the ``evaluate`` command both call ``run_hook`` so they cannot disagree.
Stage timings (validate, prefetch, record: reading the chart; the engine adds the building of
the record to it, then checks and render) go to the call's record (``calllog``) when the HTTP
layer has opened one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from cds_service import engine
from cds_service.calllog import event, timed
from cds_service.checks.findings import Snooze
from cds_service.errors import BadRequest, NotFound, describe_validation_error
from cds_service.fhir.resolver import PrefetchResolver, require
from cds_service.patient.chart import EntrySieve, read_chart
from cds_service.protocol import CONTEXT_MODELS, CDSRequest, CDSResponse
from cds_service.services import SERVICES, ServiceDefinition

log = logging.getLogger("cds_service.patient")


def find_service(service_id: str) -> ServiceDefinition:
    service = SERVICES.get(service_id)
    if service is None:
        known = ", ".join(sorted(SERVICES))
        raise NotFound(f"No CDS service with id '{service_id}'. Services offered: {known}.")
    return service


def sieve_for(body: dict[str, Any]) -> EntrySieve | None:
    """For a very large body (``http.decoding``), given its members decoded before ``prefetch``:
    the sieve that keeps what reading this patient's chart could use; None (decode it whole)
    when the context naming the patient has not come first."""
    context = body.get("context")
    patient_id = context.get("patientId") if isinstance(context, dict) else None
    return EntrySieve(patient_id) if isinstance(patient_id, str) and patient_id else None


def validate_request(service: ServiceDefinition, body: Any) -> CDSRequest:
    if not isinstance(body, dict):
        raise BadRequest(f"The request body must be a JSON object, not a JSON {_json_type(body)}.")
    try:
        request = CDSRequest.model_validate(body)
    except ValidationError as exc:
        raise BadRequest("Invalid CDS Hooks request: " + describe_validation_error(exc)) from None
    if request.hook != service.hook:
        raise BadRequest(f"Service '{service.id}' does not serve hook '{request.hook}'; it serves: {service.hook}.")
    context_model = CONTEXT_MODELS.get(request.hook)
    if context_model is not None:
        try:
            context_model.model_validate(request.context)
        except ValidationError as exc:
            raise BadRequest(
                f"Invalid context for hook '{request.hook}': " + describe_validation_error(exc, prefix="context."),
            ) from None
    return request


def run_hook(
    service: ServiceDefinition,
    body: Any,
    resolver: PrefetchResolver,
    *,
    now: Callable[[], datetime] | None = None,
    snoozes: Callable[[str, datetime], tuple[Snooze, ...]] | None = None,
) -> tuple[CDSRequest, CDSResponse]:
    """``snoozes``: the snoozes that hold for a patient now (the feedback store's), or None."""
    with timed("validate"):
        request = validate_request(service, body)
    if request.hook == "order-select" and not request.context.get("selections"):
        # Fired before anything was selected: no order to review, so no cards, and no reason to
        # fetch FHIR data.
        return request, CDSResponse(cards=[])
    with timed("prefetch"):
        resolved = resolver.resolve(request, service.prefetch)
    patient_id = request.context.get("patientId")
    patient_id = patient_id if isinstance(patient_id, str) else ""
    with timed("record"):
        chart = read_chart(resolved, patient_id)
    for key, dropped in chart.other_patient.items():  # counted, never named
        event(log, logging.WARNING, "prefetch resources about another patient ignored", key=key, resources=dropped)
    # A required key that held only another patient's data is as missing as one never sent.
    require(request.hook, service.prefetch, chart.unavailable)
    moment = (now or _utcnow)()
    call = engine.HookCall(
        service_id=service.id,
        hook=request.hook,
        hook_instance=request.hookInstance,
        context=request.context,
        chart=chart,
        now=moment,
        snoozes=snoozes(patient_id, moment) if snoozes and patient_id else (),
    )
    cards = engine.evaluate(call)
    return request, CDSResponse(cards=cards)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
