"""Classify raw FHIR JSON (medication orders, conditions, procedures) without model validation.

Everything here reads plain dicts defensively: a missing or malformed member makes a resource
unclassifiable (``None`` / no fact), never an exception. Shapes handled:

* R4 ``MedicationRequest``: ``medicationCodeableConcept`` or ``medicationReference`` (to a
  contained ``#id`` Medication, or to one in the bundle/prefetch by ``Medication/id``, full URL or
  ``urn:uuid:``);
* R5 ``MedicationRequest``: ``medication.concept`` / ``medication.reference`` (CodeableReference);
* DSTU2 ``MedicationOrder`` (the public sandbox's default): same member names as R4.

Codes first (RxNorm, ATC, SNOMED CT), then drug names in the text (``matched_by="text"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from cds_service.fhir.reading import (
    ResourceIndex,
    as_list,
    clean_text,
    codings,
    parse_fhir_datetime,
    resource_key,
    status_code,
    texts,
)
from cds_service.patient import terminology as term
from cds_service.patient.model import AllergyFact, ConditionFact, DrugMatch, ExposureKind, MedicationOrder, TextMatch

MEDICATION_ORDER_TYPES = frozenset({"MedicationRequest", "MedicationOrder"})
# Resources that show the patient takes (or was given) a drug: orders, home medication lists and
# administrations (e.g. an IV sterol given at dialysis).
EXPOSURE_KINDS: dict[str, ExposureKind] = {
    "MedicationRequest": "request",
    "MedicationOrder": "request",
    "MedicationStatement": "statement",
    "MedicationAdministration": "administration",
}
# An administration shows current exposure when given within this time: IV sterols are given at
# each dialysis session (three times a week), so two weeks covers a missed session or a week's
# break without counting a course that has ended.
ADMINISTRATION_RECENT = timedelta(days=14)
ADMINISTRATION_STATUSES = frozenset({"completed", "in-progress"})
# Medication orders that count as on the chart.
ACTIVE_MEDICATION_STATUSES = frozenset({"active", "on-hold"})
STATEMENT_STATUSES = frozenset({"active", "intended", "on-hold"})
# AllergyIntolerance statuses that make an entry not count.
INACTIVE_ALLERGY_STATUSES = frozenset({"inactive", "resolved"})

# A dialysis Procedure shows the patient is on dialysis now only if performed (or started) within
# this window. Maintenance haemodialysis is 3 sessions a week and dialysis units report monthly,
# so a month without any session means dialysis stopped (transplant, recovery, withdrawal) or the
# record is incomplete; either way an old Procedure is history, not current treatment (the bulk
# Synthea patient dialysed 1985-1990 is not on dialysis today).
DIALYSIS_PROCEDURE_RECENT = timedelta(days=30)

# Condition statuses (R4/R5 CodeableConcept codes; DSTU2 plain strings use the same words).
ACTIVE_CLINICAL_STATUSES = frozenset({"active", "recurrence", "relapse"})
INACTIVE_CLINICAL_STATUSES = frozenset({"inactive", "remission", "resolved"})
EXCLUDED_VERIFICATION_STATUSES = frozenset({"refuted", "entered-in-error"})
EXCLUDED_PROCEDURE_STATUSES = frozenset({"not-done", "entered-in-error"})


def _coding_display(coding: dict[str, Any], concept: Any) -> str:
    """What to show for a matched coding: its display, else the concept's text, else the code."""
    display = coding.get("display")
    if isinstance(display, str) and display.strip():
        return clean_text(display)
    names = texts(concept)
    return clean_text(names[0]) if names else str(coding.get("code"))


def is_medication_order(resource: Any) -> bool:
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    return isinstance(rtype, str) and rtype in MEDICATION_ORDER_TYPES


def _resolve(reference: Any, resource: Mapping[str, Any], index: Any) -> Mapping[str, Any] | None:
    if not isinstance(reference, str) or not reference:
        return None
    if reference.startswith("#"):
        for contained in as_list(resource.get("contained")):
            if isinstance(contained, dict) and contained.get("id") == reference[1:]:
                return contained
        return None
    if isinstance(index, ResourceIndex):
        return index.resolve(reference)
    if isinstance(index, Mapping):
        return ResourceIndex(((ref, res) for ref, res in index.items() if isinstance(res, Mapping))).resolve(reference)
    return None


# ------------------------------------------------------------------------------------------
# Medications
# ------------------------------------------------------------------------------------------


def _medication_sources(resource: Mapping[str, Any], index: Any) -> tuple[list[Any], list[str], bool]:
    """(CodeableConcepts to classify, extra names, whether the order names a medication at all)."""
    concepts: list[Any] = []
    names: list[str] = []
    reference: Any = None
    ref_display: Any = None

    if isinstance(resource.get("medicationCodeableConcept"), dict):  # R4, DSTU2
        concepts.append(resource["medicationCodeableConcept"])
    medication = resource.get("medication")
    if isinstance(medication, dict):  # R5 CodeableReference
        if isinstance(medication.get("concept"), dict):
            concepts.append(medication["concept"])
        if isinstance(medication.get("reference"), dict):
            reference = medication["reference"].get("reference")
            ref_display = medication["reference"].get("display")
    if isinstance(resource.get("medicationReference"), dict):  # R4, DSTU2
        reference = resource["medicationReference"].get("reference")
        ref_display = resource["medicationReference"].get("display")

    named = bool(concepts) or bool(reference) or bool(ref_display)
    target = _resolve(reference, resource, index)
    if target is not None:
        if isinstance(target.get("code"), dict):
            concepts.append(target["code"])
        for ingredient in as_list(target.get("ingredient")):
            if not isinstance(ingredient, dict):
                continue
            item = ingredient.get("itemCodeableConcept") or ingredient.get("item")
            if isinstance(item, dict) and isinstance(item.get("concept"), dict):  # R5
                item = item["concept"]
            if isinstance(item, dict):
                concepts.append(item)
    if isinstance(ref_display, str) and ref_display.strip():
        names.append(ref_display.strip())
    return concepts, names, named


def _drug_name(concepts: list[Any], names: list[str]) -> tuple[str, bool]:
    """The best human name of a drug, and whether it is in words (not a bare code)."""
    name = _named(concepts, names)
    if name is not None:
        return name, True
    # No words at all: the code itself under its system's short name ("SNOMED CT 48603004"),
    # never a system URL.
    for concept in concepts:
        for coding in codings(concept):
            if isinstance(coding.get("code"), str):
                return f"{term.system_name(coding.get('system'))} {clean_text(coding['code'])}", False
    return "unnamed medication", False


def _named(concepts: list[Any], names: list[str]) -> str | None:
    for concept in concepts:  # an RxNorm display is the most precise name
        for coding in codings(concept):
            display = coding.get("display")
            if (
                term.canonical_system(coding.get("system")) == term.RXNORM
                and isinstance(display, str)
                and display.strip()
            ):
                return clean_text(display)
    for concept in concepts:
        written = texts(concept)
        if written:
            return clean_text(written[0])
    if names:  # the display of a medicationReference
        return clean_text(names[0])
    # No words in the order: the name the code has in the service's tables (RxNorm, ATC, NDC).
    for concept in concepts:
        for coding in codings(concept):
            named = term.drug_name_for_code(coding.get("system"), coding.get("code"))
            if named:
                return clean_text(named)
    return None


@dataclass(frozen=True)
class DrugRecognition:
    """What a drug was recognised as, and how (a card must say when it was only by its name)."""

    classes: frozenset[str]
    matched_by: DrugMatch
    matched_code: str | None = None  # "system|code" that matched, when by code
    matched_text: str | None = None  # the words that matched, when by text
    text_match: TextMatch | None = None
    ingredients: tuple[str, ...] = ()
    text_cut: bool = False  # a text was longer than the matcher reads


def recognise_drug(concepts: list[Any], names: Iterable[str] = ()) -> DrugRecognition:
    """Codes first (RxNorm at every level, ATC), then the names, brands and shorthand in the text."""
    classes: set[str] = set()
    matched_codes: list[str] = []
    ingredients: list[str] = []
    for concept in concepts:
        for coding in codings(concept):
            found = term.drug_classes_for_code(coding.get("system"), coding.get("code"))
            if found is not None:
                classes |= found
                code = str(coding["code"]).strip()
                system = term.canonical_system(coding.get("system"))
                matched_codes.append(f"{system}|{code}")
                ingredients += term.code_ingredients(system, code)
    if matched_codes:
        # Prefer naming a code that carried a class (an ATC group might be recognised but empty).
        best = next((c for c in matched_codes if term.drug_classes_for_code(*c.split("|", 1))), matched_codes[0])
        return DrugRecognition(frozenset(classes), "code", best, ingredients=tuple(dict.fromkeys(ingredients)))
    written = [t for concept in concepts for t in texts(concept)] + list(names)
    first = None
    cut = False
    for text in written:
        bounded, was_cut = term.bounded_text(clean_text(text))
        cut = cut or was_cut
        match = term.match_drug_text(bounded)
        if match is None:
            continue
        classes |= match.classes
        ingredients.append(match.concept.replace("_", " "))
        first = first or match
    if "active_vitamin_d" in classes:
        classes.discard("nutritional_vitamin_d")
    if first is None:
        return DrugRecognition(frozenset(), "none", text_cut=cut)
    return DrugRecognition(
        frozenset(classes),
        "text",
        matched_text=first.matched_words,
        text_match=first.how,
        ingredients=tuple(dict.fromkeys(ingredients)),
        text_cut=cut,
    )


def classify_concepts(concepts: list[Any], names: Iterable[str] = ()) -> tuple[frozenset[str], DrugMatch, str | None]:
    """(classes, matched_by, "system|code") for a drug described by CodeableConcepts and names."""
    found = recognise_drug(concepts, names)
    return found.classes, found.matched_by, found.matched_code


def _exposure_time(resource: Mapping[str, Any]) -> datetime | None:
    period = resource.get("effectivePeriod")
    return (
        parse_fhir_datetime(resource.get("authoredOn"))
        or parse_fhir_datetime(resource.get("dateWritten"))
        or parse_fhir_datetime(resource.get("effectiveDateTime"))
        or (
            parse_fhir_datetime(period.get("end")) or parse_fhir_datetime(period.get("start"))
            if isinstance(period, dict)
            else None
        )
        or parse_fhir_datetime(resource.get("dateAsserted"))
    )


def classify_medication(resource: Any, index: Any = None) -> MedicationOrder | None:
    """A MedicationRequest / MedicationOrder (or a MedicationStatement / MedicationAdministration)
    as a classified ``MedicationOrder``.

    ``None`` when the resource is not one of those or names no medication at all (the sandbox's
    empty draft). ``index`` resolves ``medicationReference``: a ``ResourceIndex`` or a mapping of
    reference -> Medication resource.
    """
    if not isinstance(resource, dict):
        return None
    rtype = resource.get("resourceType")
    kind = EXPOSURE_KINDS.get(rtype) if isinstance(rtype, str) else None
    if kind is None:
        return None
    concepts, names, named = _medication_sources(resource, index)
    if not named:
        return None
    found = recognise_drug(concepts, names)
    rid = resource.get("id")
    drug_name, in_words = _drug_name(concepts, names)
    return MedicationOrder(
        resource_id=f"{rtype}/{rid}" if isinstance(rid, str) and rid else str(rtype),
        resource_type=str(rtype),
        status=status_code(resource.get("status")),
        drug_name=drug_name,
        name_in_words=in_words,
        drug_classes=found.classes,
        matched_by=found.matched_by,
        matched_code=found.matched_code,
        authored=_exposure_time(resource),
        raw=resource,
        matched_text=found.matched_text,
        text_match=found.text_match,
        text_cut=found.text_cut,
        ingredients=found.ingredients,
        kind=kind,
    )


def _status_may_be_current(kind: str, status: str | None) -> bool:
    if kind == "statement":
        return status in STATEMENT_STATUSES
    if kind == "administration":
        return status in ADMINISTRATION_STATUSES
    return status in ACTIVE_MEDICATION_STATUSES


def may_be_current(resource: dict[str, Any]) -> bool:
    """Whether a medication resource can count as taken now, by its type and status alone (an
    administration's time is judged per call, ``is_current_exposure``): one that cannot is never
    classified for the chart."""
    rtype = resource.get("resourceType")
    kind = EXPOSURE_KINDS.get(rtype) if isinstance(rtype, str) else None
    return kind is not None and _status_may_be_current(kind, status_code(resource.get("status")))


def is_current_exposure(order: MedicationOrder, now: datetime) -> bool:
    """Whether a medication on the chart counts as taken now: an active or on-hold order, a
    statement that is active, intended or on hold, or an administration in the last two weeks."""
    if not _status_may_be_current(order.kind, order.status):
        return False
    if order.kind == "administration":
        return order.authored is not None and now - ADMINISTRATION_RECENT <= order.authored <= now + timedelta(days=1)
    return True


def classify_allergy(resource: Any) -> AllergyFact | None:
    """An AllergyIntolerance that counts, with the drug classes and ingredients of its substance;
    ``None`` when it does not count or names nothing this service recognises."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "AllergyIntolerance":
        return None
    if status_code(resource.get("verificationStatus")) in EXCLUDED_VERIFICATION_STATUSES:
        return None
    if status_code(resource.get("clinicalStatus")) in INACTIVE_ALLERGY_STATUSES:
        return None
    concepts = [c for c in (resource.get("code"), resource.get("substance")) if isinstance(c, dict)]
    for reaction in as_list(resource.get("reaction")):
        if isinstance(reaction, dict) and isinstance(reaction.get("substance"), dict):
            concepts.append(reaction["substance"])
    found = recognise_drug(concepts)
    if not found.classes and not found.ingredients:
        return None
    names = [t for concept in concepts for t in texts(concept)]
    criticality = resource.get("criticality")
    return AllergyFact(
        resource_id=resource_key(resource) or "AllergyIntolerance",
        display=clean_text(names[0]) if names else (found.matched_code or "allergy"),
        drug_classes=found.classes,
        ingredients=tuple(i.lower() for i in found.ingredients),
        matched_by=found.matched_by,
        matched_text=found.matched_text,
        criticality=criticality if isinstance(criticality, str) else None,
    )


# ------------------------------------------------------------------------------------------
# Conditions and procedures
# ------------------------------------------------------------------------------------------


def condition_counts(resource: Mapping[str, Any]) -> bool:
    """Whether a Condition's statuses let it count (see module constants)."""
    verification = status_code(resource.get("verificationStatus"))
    if verification in EXCLUDED_VERIFICATION_STATUSES:
        return False
    clinical = status_code(resource.get("clinicalStatus"))
    if clinical is None:
        # No clinical status: an abatement says it is over; otherwise count it (older systems and
        # DSTU2 problem lists often omit the status, and missing a calciphylaxis is the worse error).
        return not any(key.startswith("abatement") for key in resource)
    return clinical not in INACTIVE_CLINICAL_STATUSES


# Condition kinds the text matcher names, as the record's kinds: a mechanical valve and one of
# unknown type both rule out a DOAC ("prosthetic_valve"); a biological one does not.
_TEXT_KIND = {
    "mechanical_valve": "prosthetic_valve",
    "prosthetic_valve_unspecified": "prosthetic_valve",
}


def _text_kinds(texts: Iterable[str], only: set[str] | None = None) -> dict[str, tuple[str, str]]:
    """kind -> (the text that names it, the words that matched), for every kind a problem-list
    text names without negation (suspected counts). ``texts`` are already cleaned."""
    found: dict[str, tuple[str, str]] = {}
    for text in texts:
        for match in term.match_condition_text(text):
            kind = _TEXT_KIND.get(match.kind, match.kind)
            if match.negated or kind in found or (only is not None and kind not in only):
                continue
            found[kind] = (text, match.matched_words)
    return found


def _condition_texts(resource: Mapping[str, Any]) -> list[str]:
    # Only what names the condition (code.text, coding displays): free-text notes mention other
    # people's and ruled-out diagnoses too often to be read as the patient's problem.
    return [clean_text(text) for text in texts(resource.get("code"))]


def classify_condition(resource: Any) -> tuple[ConditionFact, ...]:
    """The facts (calciphylaxis, kidney failure, ...) a Condition establishes; () if none."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Condition":
        return ()
    if not condition_counts(resource):
        return ()
    code = resource.get("code")
    written = _condition_texts(resource)
    facts: dict[str, ConditionFact] = {}
    # What every fact of this Condition shares; each fact fills in kind, display and match.
    common = ConditionFact(
        kind="",
        resource_id=resource_key(resource) or "Condition",
        display="",
        matched_by="code",
        clinical_status=status_code(resource.get("clinicalStatus")),
        verification_status=status_code(resource.get("verificationStatus")),
        recorded=parse_fhir_datetime(
            resource.get("onsetDateTime")
            or resource.get("recordedDate")
            or resource.get("dateRecorded")
            or resource.get("assertedDate")
        ),
    )
    named = _text_kinds(written)
    if any(len(text) > term.MAX_MATCHED_TEXT for text in written):
        facts["text_not_read_in_full"] = replace(
            common, kind="text_not_read_in_full", display=written[0][:60], matched_by="text"
        )
    for coding in codings(code):
        system, value = coding.get("system"), coding.get("code")
        kind = term.condition_kind_for_code(system, value)
        display = _coding_display(coding, code)
        matched_text = None
        if kind is None and term.is_calciphylaxis_catchall(system, value):
            # E83.59 only when the text or display names calciphylaxis.
            if "calciphylaxis" not in named:
                continue
            kind = "calciphylaxis"
            display, matched_text = named["calciphylaxis"]
        if kind is None or kind in facts:
            continue
        facts[kind] = replace(
            common,
            kind=kind,
            display=display,
            matched_by="code",
            code=value,
            system=term.canonical_system(system),
            matched_text=matched_text,
            dialysis_implied=kind == "kidney_failure"
            and term.kidney_failure_implies_dialysis(system, value, " ".join(written)),
        )
    for kind, (text, words) in named.items():
        if kind not in facts:
            implied = kind == "kidney_failure" and term.kidney_failure_implies_dialysis(None, None, text)
            facts[kind] = replace(
                common, kind=kind, display=text, matched_by="text", matched_text=words, dialysis_implied=implied
            )
    return tuple(facts.values())


def procedure_time(resource: Mapping[str, Any]) -> datetime | None:
    """When a Procedure was last going on: period end (or start), or the performed time."""
    period = resource.get("performedPeriod")
    if isinstance(period, dict):
        return parse_fhir_datetime(period.get("end")) or parse_fhir_datetime(period.get("start"))
    return parse_fhir_datetime(resource.get("performedDateTime"))


def classify_procedure(resource: Any, now: datetime) -> ConditionFact | None:
    """A dialysis Procedure that shows the patient is on dialysis *now*, or a parathyroidectomy
    (at any time: the checks judge how recent it is); else ``None``.

    A dialysis Procedure counts when in progress, or performed within ``DIALYSIS_PROCEDURE_RECENT``
    of ``now``.
    """
    if not isinstance(resource, dict) or resource.get("resourceType") != "Procedure":
        return None
    status = status_code(resource.get("status"))
    if status in EXCLUDED_PROCEDURE_STATUSES:
        return None
    code = resource.get("code")
    surgery = _parathyroidectomy(resource, status)
    if surgery is not None:
        return surgery
    matched_by: Literal["code", "text"] | None = None
    code_value, system, display = None, None, None
    for coding in codings(code):
        if term.is_dialysis_procedure_code(coding.get("system"), coding.get("code")):
            matched_by, code_value = "code", coding.get("code")
            system = term.canonical_system(coding.get("system"))
            display = _coding_display(coding, code)
            break
    if matched_by is None:
        named = _text_kinds([clean_text(t) for t in texts(code)], only={"dialysis"}).get("dialysis")
        if named is None:
            return None
        matched_by, display = "text", named[0]
    when = procedure_time(resource)
    current = status == "in-progress" or (
        when is not None and now - DIALYSIS_PROCEDURE_RECENT <= when <= now + timedelta(days=1)
    )
    if not current:
        return None
    return ConditionFact(
        kind="dialysis",
        resource_id=resource_key(resource) or "Procedure",
        display=display or "dialysis",
        matched_by=matched_by,
        code=code_value,
        system=system,
        clinical_status=status,
        recorded=when,
    )


def _parathyroidectomy(resource: dict[str, Any], status: str | None) -> ConditionFact | None:
    """A parathyroidectomy Procedure (done or in progress), by code or by its words."""
    if status not in (None, "completed", "in-progress"):
        return None
    code = resource.get("code")
    # What the fact holds either way; the match fills in display, code or words.
    fact = ConditionFact(
        kind="parathyroidectomy",
        resource_id=resource_key(resource) or "Procedure",
        display="parathyroidectomy",
        matched_by="code",
        clinical_status=status,
        recorded=procedure_time(resource),
    )
    for coding in codings(code):
        if term.is_parathyroidectomy_code(coding.get("system"), coding.get("code")):
            return replace(
                fact,
                display=_coding_display(coding, code) or fact.display,
                code=coding.get("code"),
                system=term.canonical_system(coding.get("system")),
            )
    named = _text_kinds([clean_text(t) for t in texts(code)], only={"parathyroidectomy"}).get("parathyroidectomy")
    if named is None:
        return None
    return replace(fact, display=named[0], matched_by="text", matched_text=named[1])
