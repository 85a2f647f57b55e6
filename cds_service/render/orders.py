"""Writing FHIR orders for the cards' suggestions: a substitute draft order, or the existing
order marked stopped, in the FHIR version of the order under review (R4 and R5
MedicationRequest, DSTU2 MedicationOrder for the public sandbox).

``validate_substitute_orders`` runs at start-up: every substitute order the service can create
is built for a placeholder patient and validated against the ``fhir.resources`` models (R4B for
R4, R5), so a broken template in ``cards/substitutes.toml`` stops start-up like broken card
content, never a hook call. DSTU2 has no model in ``fhir.resources`` 8; its shape is covered by
tests.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from cds_service.knowledge.content import CardContent, CardContentError, SubstituteSpec, fill
from cds_service.patient import terminology as term
from cds_service.patient.model import MedicationOrder

FhirVersion = Literal["R4", "R5", "DSTU2"]

# A FHIR resource nests a dozen levels at most; one nested deeper than this is not echoed back in
# an update (copying and serialising it would exhaust the recursion limits): no stop or hold
# action is offered for it, and the card still says what to do.
MAX_RESOURCE_DEPTH = 64


class TooDeep(ValueError):
    """The order under review nests deeper than ``MAX_RESOURCE_DEPTH``."""


def copy_resource(resource: dict[str, Any]) -> dict[str, Any]:
    """A copy of a JSON resource (dicts, lists, scalars), made without recursion; ``TooDeep`` when
    it nests deeper than ``MAX_RESOURCE_DEPTH``."""
    root: dict[str, Any] = {}
    stack: list[tuple[Any, Any, int]] = [(resource, root, 1)]
    while stack:
        source, target, depth = stack.pop()
        if depth > MAX_RESOURCE_DEPTH:
            raise TooDeep(f"nested deeper than {MAX_RESOURCE_DEPTH} levels")
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, value in items:
            if isinstance(value, dict | list):
                child: Any = {} if isinstance(value, dict) else [None] * len(value)
                stack.append((value, child, depth + 1))
                value = child
            target[key] = value
    return root


def fhir_version(order: MedicationOrder) -> FhirVersion:
    """The FHIR version of the order under review, so the substitute matches it."""
    if order.resource_type == "MedicationOrder":
        return "DSTU2"
    medication = order.raw.get("medication")
    if isinstance(medication, dict) and ("concept" in medication or "reference" in medication):
        return "R5"
    return "R4"


def substitute_resource(
    spec: SubstituteSpec,
    order: MedicationOrder,
    patient_id: str,
    encounter_id: str | None = None,
    indications: tuple[str, ...] = (),
    dose_note: str = "",
) -> dict[str, Any]:
    """The new order: R4 MedicationRequest by default; R5 or DSTU2 MedicationOrder to match."""
    return new_order(spec, fhir_version(order), patient_id, encounter_id, indications, dose_note)


# Routes by the name the substitutes give them (SNOMED CT; docs/clinical/codes.md).
_ROUTE_DISPLAY = {"26643006": "Oral route", "47625008": "Intravenous route"}


def _route(spec: SubstituteSpec) -> dict[str, Any]:
    route: dict[str, Any] = {"text": spec.route}
    if spec.route_code:
        display = _ROUTE_DISPLAY.get(spec.route_code, spec.route)
        route["coding"] = [{"system": term.SNOMED, "code": spec.route_code, "display": display}]
    return route


def _repeat(spec: SubstituteSpec, version: FhirVersion) -> dict[str, Any]:
    repeat: dict[str, Any] = {"frequency": spec.frequency, "period": spec.period}
    dstu2 = version == "DSTU2"
    repeat["periodUnits" if dstu2 else "periodUnit"] = spec.period_unit
    if spec.when:
        repeat["when"] = spec.when[0] if dstu2 else list(spec.when)  # DSTU2: a single code
    if spec.duration is not None and spec.duration_unit:
        repeat["duration"] = spec.duration
        if spec.duration_max is not None:
            repeat["durationMax"] = spec.duration_max
        repeat["durationUnits" if dstu2 else "durationUnit"] = spec.duration_unit
    if spec.bounds_value is not None and spec.bounds_unit and not dstu2:
        # The substitutes write units of time as UCUM codes already (min, h, d, wk, mo, a).
        unit = spec.bounds_unit
        repeat["boundsDuration"] = {"value": spec.bounds_value, "unit": unit, "system": term.UCUM, "code": unit}
    return repeat


def new_order(
    spec: SubstituteSpec,
    version: FhirVersion,
    patient_id: str,
    encounter_id: str | None = None,
    indications: tuple[str, ...] = (),
    dose_note: str = "",
) -> dict[str, Any]:
    """A draft order for a substitute in one FHIR version (``substitute_resource`` picks it):
    coded drug and route, dose, timing (with infusion time and course length where the regimen
    gives them), the indication's Conditions as its reason, and ``dose_note`` (what chose the
    dose, as the card words it) after the dosage text."""
    concept = {
        "coding": [{"system": term.RXNORM, "code": spec.rxnorm, "display": spec.display}],
        "text": spec.display,
    }
    dose = {"value": spec.dose_value, "unit": spec.dose_unit, "system": term.UCUM, "code": spec.dose_unit}
    text = fill(spec.dosage_text)
    if dose_note:
        text += f" {dose_note}"
    dosage: dict[str, Any] = {"text": text, "timing": {"repeat": _repeat(spec, version)}, "route": _route(spec)}
    patient = {"reference": f"Patient/{patient_id}"}
    reasons = [{"reference": reference} for reference in indications]
    if version == "DSTU2":
        dosage["doseQuantity"] = dose
        resource: dict[str, Any] = {
            "resourceType": "MedicationOrder",
            "status": "draft",
            "patient": patient,
            "medicationCodeableConcept": concept,
            "dosageInstruction": [dosage],
        }
        if reasons:
            resource["reasonReference"] = reasons[0]  # DSTU2: a single Reference
    else:
        dosage["doseAndRate"] = [{"doseQuantity": dose}]
        resource = {"resourceType": "MedicationRequest", "status": "draft", "intent": "order", "subject": patient}
        if version == "R5":
            resource["medication"] = {"concept": concept}
        else:
            resource["medicationCodeableConcept"] = concept
        resource["dosageInstruction"] = [dosage]
        if reasons:
            if version == "R5":
                resource["reason"] = [{"reference": r} for r in reasons]  # R5: CodeableReference
            else:
                resource["reasonReference"] = reasons
    if encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    return resource


_MICROGRAM_DOSE = re.compile(r"\b(0?\.\d+)\s*MG\b", re.IGNORECASE)


def clinical_drug_name(name: str) -> str:
    """A drug name as clinicians write doses: an RxNorm strength below 1 mg in micrograms
    ("calcitriol 0.00025 MG Oral Capsule" -> "calcitriol 0.25 mcg Oral Capsule")."""

    def micrograms(match: re.Match[str]) -> str:
        value = float(match.group(1)) * 1000
        return f"{value:.6g} mcg"

    return _MICROGRAM_DOSE.sub(micrograms, name)


def stopped_resource(c: CardContent, order: MedicationOrder) -> dict[str, Any]:
    """The whole existing order with status stopped (CDS Hooks: an update carries the entire
    resource), plus why, in the member each FHIR version has for it. ``TooDeep`` for an order
    nested too deeply to echo back."""
    resource = copy_resource(order.raw)
    resource["status"] = "stopped"
    reason = {"text": fill(c.text["stop_reason"])}
    if order.kind == "statement":
        resource["statusReason"] = [reason]  # MedicationStatement.statusReason is a list
    elif fhir_version(order) == "DSTU2":
        resource["reasonEnded"] = reason
    else:
        resource["statusReason"] = reason
    return resource


def held_resource(c: CardContent, order: MedicationOrder, why: str) -> dict[str, Any]:
    """The whole existing order with status on-hold (withheld, to be restarted later), plus
    ``why``. on-hold is a status of R4/R5 MedicationRequest, DSTU2 MedicationOrder and R4
    MedicationStatement."""
    resource = copy_resource(order.raw)
    resource["status"] = "on-hold"
    reason = {"text": why}
    if order.kind == "statement":
        resource["statusReason"] = [reason]
    elif fhir_version(order) != "DSTU2":  # DSTU2 MedicationOrder has no member for why it is held
        resource["statusReason"] = reason
    return resource


def validate_substitute_orders(c: CardContent) -> None:
    """Build every substitute order in R4 and R5 and validate it with ``fhir.resources``;
    raise ``CardContentError`` naming each one that does not validate."""
    from fhir.resources.medicationrequest import MedicationRequest as R5MedicationRequest
    from fhir.resources.R4B.medicationrequest import MedicationRequest as R4MedicationRequest
    from pydantic import ValidationError

    models: dict[FhirVersion, Any] = {"R4": R4MedicationRequest, "R5": R5MedicationRequest}
    problems: list[str] = []
    for key, spec in c.substitutes.items():
        for version, model in models.items():
            try:
                order = new_order(
                    spec, version, "example", "example", ("Condition/example",), "Dose chosen by: example."
                )
                model.model_validate(order)
            except ValidationError as exc:
                problems.append(
                    f"substitutes.{key} is not a valid {version} MedicationRequest: {exc.error_count()} error(s), first: {exc.errors()[0]['msg']}"
                )
    if problems:
        raise CardContentError("substitute order problems:\n  " + "\n  ".join(problems))
