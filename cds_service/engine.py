"""From a validated hook call to cards: build the record, pick the orders, run the checks, render.

``evaluate`` is the one entry point the HTTP layer and the ``evaluate`` command use. It stays
free of Flask: it receives plain data and returns ``protocol.Card`` objects whose ``rule_id``
names the rule that produced each card. Card content is loaded once per process (the first
call, or ``warm_up()`` at start-up), never per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from time import perf_counter
from typing import Any

from cds_service.calllog import add_stage
from cds_service.checks import eligibility, lab_facts, review_chart, run_checks
from cds_service.checks.findings import Fact, Snooze
from cds_service.checks.snooze import apply_snoozes
from cds_service.knowledge.content import content
from cds_service.patient import terminology as term
from cds_service.patient.build import build_record, draft_entries, foreign_drafts, orders_under_review
from cds_service.patient.chart import ChartReading
from cds_service.patient.model import OrderUnderReview, PatientRecord
from cds_service.protocol import Card
from cds_service.render.cards import render_cards
from cds_service.render.orders import validate_substitute_orders

_SEVERITY = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class HookCall:
    service_id: str
    hook: str  # "patient-view" | "order-select" | "order-sign"
    hook_instance: str
    context: dict[str, Any]  # raw JSON context (draftOrders, selections, patientId ...)
    chart: ChartReading  # the resolved prefetch as read for this patient, and what was unavailable
    now: datetime  # timezone-aware "now" (tests freeze it)
    snoozes: tuple[Snooze, ...] = ()  # earlier overrides that still hold for this patient


def evaluate(call: HookCall) -> list[Card]:
    """Cards for one hook call; ``[]`` for a patient out of scope or with nothing to flag."""
    started = perf_counter()
    record = build_record(call.context, call.chart, call.now)
    drafts = draft_entries(call.hook, call.context, record)
    if drafts:  # a substitute must not duplicate an order being written in the same call
        record = replace(record, drafts=tuple(order for _, order in drafts))
    orders = orders_under_review(call.hook, call.context, record, drafts)
    built = perf_counter()
    labs = lab_facts(record)  # one reading of the labs serves every check of this call
    findings = run_checks(record, orders, labs)
    if call.hook == "patient-view":
        findings = review_chart(record, labs) + findings  # the mineral summary first, then per order
    findings = apply_snoozes(findings, call.snoozes, call.hook, call.now)
    notices = [n for n in (_other_patient_fact(record, call.context), _texts_cut_fact(record, orders)) if n]
    if notices:  # every card says what was left out, and why
        findings = [replace(f, facts=(*f.facts, *notices)) for f in findings]
    # The most important card first (many EHRs show cards in the order given): critical, warning,
    # info; the order within an indicator is kept.
    findings.sort(key=lambda f: _SEVERITY[f.indicator])
    checked = perf_counter()
    add_stage("record", built - started)  # stage timings for the call's log line and metrics
    add_stage("checks", checked - built)
    if not findings:
        return []
    encounter = call.context.get("encounterId")
    cards = render_cards(findings, record.patient_id, encounter if isinstance(encounter, str) else None)
    add_stage("render", perf_counter() - checked)
    return cards


def _other_patient_fact(record: PatientRecord, context: dict[str, Any]) -> Fact | None:
    """The resources about another patient that were dropped (prefetch keys, and drafts of this
    call), counted per key; never their ids. ``None`` when there were none."""
    counts = dict(record.other_patient)
    drafts = len(foreign_drafts(context, record.patient_id)) if record.patient_id else 0
    if drafts:
        counts["draftOrders"] = drafts
    if not counts:
        return None
    labels = content().labels["prefetch"]
    items = ", ".join(f"{n} in {labels.get(key, key)}" for key, n in counts.items())
    return Fact("other_patient_ignored", {"n": str(sum(counts.values())), "items": items})


def _texts_cut_fact(record: PatientRecord, orders: Sequence[OrderUnderReview]) -> Fact | None:
    """Medication and problem-list texts longer than the name matcher reads (only their
    beginning was read: what their end names was not); ``None`` when there were none."""
    medications = {
        m.resource_id for m in (*record.medications, *record.drafts, *(o.order for o in orders)) if m.text_cut
    }
    problems = {c.resource_id for c in record.conditions_of("text_not_read_in_full")}
    if not medications and not problems:
        return None
    return Fact("texts_cut", {"n": str(len(medications) + len(problems)), "limit": str(term.MAX_MATCHED_TEXT)})


@cache
def warm_up() -> None:
    """Load and check the card content and every substitute order now (fails fast at start-up
    if a file is wrong, never in a hook call)."""
    term.warm_up()
    loaded = content()
    eligibility.validate(loaded)
    validate_substitute_orders(loaded)
