"""Findings -> CDS Hooks cards (markdown), with every word taken from ``cards/*.toml``.

One card per finding: summary (< 140 characters, naming the drug and the reason), a markdown
detail that lists the data used (value, unit, date, measured or corrected, stale or not), the
rule that fired, what was checked before suggesting a substitute, what could not be checked,
the evidence with links and the conflicts between sources; suggestions an EHR can apply in one
click (replace or stop an order, put it on hold, or, on a chart review, create a new order);
coded override reasons.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cds_service.checks.findings import Finding, Gap, LabValue, SafetyCheck, Snooze
from cds_service.checks.labs import DISPLAY_DECIMALS, trend
from cds_service.checks.m1_mineral_status import DIALYSIS_TARGETS
from cds_service.checks.snooze import subject_of
from cds_service.knowledge.content import (
    CardContent,
    RuleContent,
    SubstituteSpec,
    content,
    fill,
    rule_list,
    rule_text,
)
from cds_service.patient import terminology as term
from cds_service.patient.analytes import ANALYTES
from cds_service.patient.model import STALE_AFTER, ConditionFact, MedicationOrder
from cds_service.protocol import Action, Card, Coding, Link, OverrideReason, Source, Suggestion
from cds_service.render.markup import inert, plain
from cds_service.render.orders import (
    TooDeep,
    clinical_drug_name,
    held_resource,
    new_order,
    stopped_resource,
    substitute_resource,
)

SUMMARY_MAX = 139  # CDS Hooks: "<140-character summary"
# A rule whose content declares this layout shows its labs as a table against targets and a
# status phrase in its summary (chart reviews); every other rule lists the data it used.
RESULTS_TABLE = "results-table"


def render_cards(findings: list[Finding], patient_id: str, encounter_id: str | None = None) -> list[Card]:
    c = content()
    return [_card(c, f, patient_id, encounter_id) for f in findings]


def render_card(finding: Finding, patient_id: str, encounter_id: str | None = None) -> Card:
    return _card(content(), finding, patient_id, encounter_id)


# --------------------------------------------------------------------------------------------
# Card
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RuleParts:
    """What every card of a rule carries unchanged: its source, override reasons and links."""

    source: Source
    override_reasons: list[OverrideReason] | None
    links: list[Link] | None


# Built once per rule, indicator and card content (a card's own members are never changed after
# it is made, so cards may share these); keyed by the content object, made once per process.
_RULE_PARTS: dict[tuple[int, str, str], tuple[CardContent, _RuleParts]] = {}


def _rule_parts(c: CardContent, rule_id: str, indicator: str) -> _RuleParts:
    found = _RULE_PARTS.get((id(c), rule_id, indicator))
    if found is not None and found[0] is c:
        return found[1]
    rule = c.rule(rule_id)
    parts = _RuleParts(
        source=Source(
            label=c.source_label,
            topic=Coding(system=c.topic_system, code=rule.topic, display=c.topics[rule.topic]),
        ),
        override_reasons=[
            OverrideReason(system=c.override_system, code=code, display=c.override_codes[code])
            for code in c.offered_reasons(rule_id, indicator)
        ]
        or None,
        links=[Link(label=c.references[key].short, url=c.references[key].url, type="absolute") for key in rule.evidence]
        or None,
    )
    _RULE_PARTS[(id(c), rule_id, indicator)] = (c, parts)
    return parts


# The SMART companion page's launch URL for this call (``cds_service.smart``): set per request by
# the HTTP app when the app is configured; None (the `evaluate` command, the app not set up) adds
# no link.
SMART_LAUNCH_URL: ContextVar[str | None] = ContextVar("cds_smart_launch_url", default=None)


def _links(c: CardContent, f: Finding, links: list[Link] | None) -> list[Link] | None:
    """A calciphylaxis card (calciphylaxis among the conditions it names, as on M1's review) gets
    the ``smart`` link to the companion page first, then its evidence links."""
    url = SMART_LAUNCH_URL.get()
    if url is None or not any(condition.kind == "calciphylaxis" for condition in f.conditions):
        return links
    return [Link(label=fill(c.text["smart_link"]), url=url, type="smart"), *(links or [])]


# A detail that quotes several EHR values at once (the data a check read) may be this long.
DETAIL_CHARS = 600


def _card(c: CardContent, f: Finding, patient_id: str, encounter_id: str | None) -> Card:
    rule = c.rule(f.rule_id)
    parts = _rule_parts(c, f.rule_id, f.indicator)
    suggestions = _suggestions(c, f, patient_id, encounter_id)
    return Card(
        summary=_summary(c, rule, f),
        detail=_detail(c, rule, f, offered=bool(suggestions)),
        indicator=f.indicator,
        source=parts.source,
        suggestions=suggestions or None,
        selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=parts.override_reasons,
        links=_links(c, f, parts.links),
        rule_id=f.rule_id,
        subject=subject_of(f) or None,  # None for a chart review (the store keeps "")
    )


def _values(c: CardContent, f: Finding, *, markdown: bool = False) -> dict[str, str]:
    """The drug and its class for a template: plain text for a summary or a label, inert text
    (``markup.inert``) for the markdown detail."""
    order = f.order
    classes = order.drug_classes if order else frozenset()
    drug_class = next((label for key, label in c.labels["drug_class"].items() if key in classes), "medication")
    drug = (inert if markdown else plain)(clinical_drug_name(order.drug_name)) if order else ""
    if order is not None and not order.name_in_words:  # a bare code: say what kind of drug it is
        drug = f"{drug_class} ({drug})"
    return {"drug": drug, "drug_class": drug_class}


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def _summary(c: CardContent, rule: RuleContent, f: Finding) -> str:
    values = _values(c, f)
    values["reason"] = " and ".join(fill(c.reasons[r]) for r in f.reasons if r in c.reasons)
    values["missing"] = (
        ", ".join(
            c.labels["prefetch"].get(str(g.params.get("key")), str(g.params.get("key")))
            for g in f.gaps
            if g.key == "prefetch_unavailable"
        )
        or "patient data"
    )
    values["status"] = _chart_status_phrase(c, rule, f) if rule.layout == RESULTS_TABLE else ""
    values["calcium"] = _summary_calcium(c, f)
    summary = rule_text(rule, "summary", f.variant)
    text = fill(summary, values)
    if len(text) > SUMMARY_MAX and values["drug"]:
        # Shorten the drug name first: the reason is the part a clinician must read.
        budget = SUMMARY_MAX - (len(text) - len(values["drug"])) - 1
        if budget >= 12:
            values["drug"] = values["drug"][:budget].rstrip() + "\u2026"
            text = fill(summary, values)
    if len(text) > SUMMARY_MAX:
        text = text[: SUMMARY_MAX - 1].rstrip() + "\u2026"
    return text


def _summary_calcium(c: CardContent, f: Finding) -> str:
    """The calcium a summary names ("corrected calcium 6.7 mg/dL"), when the rule used one."""
    for lab in f.labs:
        if lab.analyte in ("corrected_calcium", "ionized_calcium", "calcium"):
            name = c.labels["analyte"].get(lab.analyte, lab.analyte).lower()
            return f"{name} {lab.comparator or ''}{_number(lab.analyte, lab.value)} {lab.unit}"
    return "calcium"


def _chart_status_phrase(c: CardContent, rule: RuleContent, f: Finding) -> str:
    parts = []
    if f.reasons:
        parts.append(fill(rule.extra["status_out_of_range"], {"n": str(len(f.reasons))}))

    def named(keys: tuple[str, ...]) -> list[str]:
        return [c.labels["analyte"].get(g.params["analyte"], g.params["analyte"]) for g in f.gaps if g.key in keys]

    overdue, missing = named(("lab_stale", "lab_unusable", "lab_newer_unusable")), named(("lab_missing",))
    if overdue:
        parts.append(fill(rule.extra["status_overdue"], {"items": ", ".join(overdue)}))
    if missing:  # never measured is not "overdue" (CRP has no interval at all)
        parts.append(fill(rule.extra["status_missing"], {"items": ", ".join(missing)}))
    if "sts_not_prescribed" in f.notes:
        offered = f.substitutions and "status_sts_offered" in rule.extra
        parts.append(fill(rule.extra["status_sts_offered" if offered else "status_no_sts"]))
    return "; ".join(parts) or fill(rule.extra["status_all_clear"])


# --------------------------------------------------------------------------------------------
# Detail (GitHub-flavoured markdown)
# --------------------------------------------------------------------------------------------


def _detail(c: CardContent, rule: RuleContent, f: Finding, *, offered: bool) -> str:
    h = c.headings
    values = _values(c, f, markdown=True)
    out: list[str] = [f"**{h['why']}.** {fill(rule_text(rule, 'why', f.variant), values)}"]
    if f.order is not None:
        out.append(f"**{h['text_match']}.** {_recognition(c, f.order)}")

    if rule.layout == RESULTS_TABLE:
        out.append(f"**{h['results']}**\n\n{_results_table(c, f)}")
        data = [_condition_line(c, cond) for cond in f.conditions]
    else:
        data = []
        if f.order is not None:
            status = f", status {f.order.status}" if f.order.status else ""
            when = f", given {_date(f.order.authored)}" if f.order.kind == "administration" else ""
            kind = c.labels["exposure"][f.order.kind]
            data.append(f"- {kind}: {inert(f.order.drug_name)} ({inert(f.order.resource_id)}{inert(status)}{when})")
        data += [_condition_line(c, cond) for cond in f.conditions]
        data += [_lab_line(c, lab) for lab in f.labs]
    data += [f"- {fill(c.facts[fact.key], _inert_values(fact.params))}" for fact in f.facts]
    if data:
        out.append(f"**{h['data']}**\n\n" + "\n".join(data))

    out.append(f"**{h['rule']}.** `{f.rule_id}`: {fill(rule_text(rule, 'rule', f.variant), values)}")

    checked = [_safety_line(c, s) for s in f.safety_checks]
    notes = [fill(c.notes[n].text) for n in f.notes]
    removes = bool(f.substitutions or f.stop_only or f.withhold)  # the card advises taking the order off
    if f.order is not None and f.order.kind == "administration" and removes:
        key = "administration_hold" if f.withhold else "administration_only"
        notes.append(fill(c.text[key], {"drug": inert(f.order.drug_name)}))
    elif f.withhold and f.review is not None:
        notes.append(fill(c.text["withhold_only"]))
    elif f.stop_only and f.review is not None:
        notes.append(fill(c.text["stop_only"]))
    if f.review is not None and not _has_id(f.order) and removes:
        notes.append(fill(c.text["no_order_id"]))
    if checked:
        out.append(f"**{h['checked']}**\n\n" + "\n".join(checked))
    if f.earlier_override is not None:
        notes.append(
            fill(
                c.text["earlier_override"],
                {"reason": _override_reason(c, f.earlier_override), "date": _date(f.earlier_override.until)},
            )
        )
    if notes:
        out.append("\n".join(f"- {n}" for n in notes))

    gaps = [_gap_line(c, g) for g in f.gaps]
    if gaps:
        out.append(f"**{h['not_checked']}**\n\n" + "\n".join(f"- {g}" for g in gaps))

    conflicts = list(rule_list(rule, "conflicts", f.variant))
    conflicts += [n.conflict for n in (c.notes[key] for key in f.notes) if n.conflict]
    conflicts = list(dict.fromkeys(conflicts))  # keep order, drop repeats
    if conflicts:
        out.append(f"**{h['conflicts']}**\n\n" + "\n".join(f"- {fill(c.conflicts[k].text)}" for k in conflicts))

    refs = list(rule_list(rule, "evidence", f.variant))
    for key in conflicts:
        refs += c.conflicts[key].references
    for sub in f.substitutions:
        refs += c.substitutes[sub.key].references
    refs = list(dict.fromkeys(refs))
    out.append(
        f"**{h['evidence']}**\n\n"
        + "\n".join(
            f"- {c.references[r].citation} [{_link_text(c.references[r].url)}]({c.references[r].url})" for r in refs
        )
    )
    return "\n\n".join(out)


def _link_text(url: str) -> str:
    return "PubMed" if "pubmed" in url else "link"


def _recognition(c: CardContent, order: MedicationOrder) -> str:
    name = inert(order.drug_name)
    if order.matched_by == "text":
        words = order.matched_text
        matched = f'"{inert(words)}" in "{name}"' if words and words != order.drug_name else f'"{name}"'
        if order.text_match in ("fuzzy", "spelling"):  # say what the spelling was read as
            read_as = inert(order.ingredients[0]) if order.ingredients else "a monitored drug"
            key = f"{order.text_match}_match"
            return fill(c.text[key], {"drug_text": name, "how": read_as, "matched": matched})
        how = c.labels["text_match"].get(order.text_match or "name", "name")
        return fill(c.text["text_match"], {"drug_text": name, "how": how, "matched": matched})
    return fill(c.text["code_match"], {"code": _code_label(order.matched_code)})


def _code_label(system_code: str | None) -> str:
    if not system_code or "|" not in system_code:
        return "(unknown code)"
    system, code = system_code.split("|", 1)
    return inert(f"{term.system_name(system)} {code}")


def _date(value: datetime | None) -> str:
    return value.date().isoformat() if value is not None else "date unknown"


def _number(analyte: str, value: float) -> str:
    return f"{value:.{DISPLAY_DECIMALS.get(analyte, 2)}f}"


def _lab_text(c: CardContent, lab: LabValue) -> str:
    """ "10.6 mg/dL on 2026-11-15 (albumin-corrected from ...; reported as 2.65 mmol/L)"."""
    text = f"{lab.comparator or ''}{_number(lab.analyte, lab.value)} {lab.unit} on {_date(lab.effective)}"
    extras = []
    method = c.labels["method"].get(lab.method, lab.method)
    if lab.inputs:
        parts = ", ".join(
            f"{c.labels['analyte'].get(i.analyte, i.analyte).lower()} {_number(i.analyte, i.value)} {i.unit}"
            + (f" [reported as {inert(i.original)}]" if i.original else "")
            for i in lab.inputs
        )
        extras.append(f"{method} from {parts}")
    elif lab.analyte in ("calcium", "corrected_calcium", "ionized_calcium") or lab.method != "measured":
        extras.append(method)
    if lab.original:
        extras.append(f"reported as {inert(lab.original)}")
    if lab.sources:
        extras.append(", ".join(inert(source) for source in lab.sources))
    if extras:
        text += " (" + "; ".join(extras) + ")"
    if lab.stale:
        text += f" **{fill(c.text['stale_mark'])}**"
    return text


def _lab_line(c: CardContent, lab: LabValue) -> str:
    return f"- {c.labels['analyte'].get(lab.analyte, lab.analyte)}: {_lab_text(c, lab)}"


def _condition_line(c: CardContent, cond: ConditionFact) -> str:
    label = c.labels["condition"].get(cond.kind, cond.kind)
    if cond.matched_by == "code" and cond.code:
        how = inert(f"{term.system_name(cond.system)} {cond.code}")
        if cond.matched_text:
            how += f', named "{inert(cond.matched_text)}" in the text'
    elif cond.matched_text:
        how = f'recognised from the text: "{inert(cond.matched_text)}"'
    else:
        how = "recognised from the text"
    status = ", ".join(
        s
        for s in (
            f"clinical status {inert(cond.clinical_status)}" if cond.clinical_status else "",
            f"verification {inert(cond.verification_status)}" if cond.verification_status else "",
            f"recorded {_date(cond.recorded)}" if cond.recorded else "",
        )
        if s
    )
    return (
        f"- {label}: {inert(cond.display)} ({how}; {inert(cond.resource_id)}" + (f"; {status}" if status else "") + ")"
    )


def _safety_line(c: CardContent, check: SafetyCheck) -> str:
    """Met (a tick), not met (a cross), or not checked (its data unavailable or partial: never a
    tick, and the substitute was withheld)."""
    texts = c.safety[check.key]
    detail = {"detail": inert(check.detail, DETAIL_CHARS) if check.detail else "none"}
    if check.passed is None:
        return "- ? " + fill(texts.get("unknown") or c.text["safety_not_checked"], detail)
    mark = "\u2714" if check.passed else "\u2718"
    return f"- {mark} " + fill(texts["passed" if check.passed else "failed"], detail)


def _gap_line(c: CardContent, gap: Gap) -> str:
    p = dict(gap.params)
    values: dict[str, str] = {}
    if "key" in p:
        values["what"] = c.labels["prefetch"].get(p["key"], p["key"])
    if "why" in p:
        values["why"] = inert(p["why"], DETAIL_CHARS)
    if "analyte" in p:
        values["analyte"] = c.labels["analyte"].get(p["analyte"], p["analyte"])
    lab = p.get("lab")
    if isinstance(lab, LabValue):
        values.update(
            value=_number(lab.analyte, lab.value),
            unit=lab.unit,
            date=_date(lab.effective),
            days=str(p.get("days") or _stale_days(lab)),
        )
    if "since" in p:
        values["since"] = inert(p["since"])
    if isinstance(p.get("date"), str):
        values["date"] = inert(p["date"])
    return fill(c.gaps[gap.key], values)


def _override_reason(c: CardContent, snooze: Snooze) -> str:
    """What an earlier override's reason says: the service's own wording of the code the card
    offered, never text a caller sent."""
    return c.override_codes.get(snooze.reason_code, "an override reason this card offered")


def _inert_values(params: dict[str, str]) -> dict[str, str]:
    """A fact's values (dates, fields, dose text read from the order) made inert for markdown."""
    return {key: inert(value, DETAIL_CHARS) for key, value in params.items()}


def _stale_days(lab: LabValue) -> int:
    # Corrected calcium ages like the calcium it came from.
    limit = STALE_AFTER.get(lab.analyte) or STALE_AFTER["calcium"]
    return limit.days


def _results_table(c: CardContent, f: Finding) -> str:
    rows = ["| Test | Latest | Target | Status |", "| --- | --- | --- | --- |"]
    flagged = dict(f.positions)
    # Not on dialysis or in kidney failure: the stage 5 / dialysis targets are shown, not applied.
    unapplied = DIALYSIS_TARGETS if "not_on_dialysis_targets" in f.notes else frozenset()
    for lab in f.labs:
        target = fill(c.targets[lab.analyte]) if lab.analyte in c.targets else ""
        if lab.analyte in unapplied:
            target = fill(c.status["target_not_applied"], {"value": target})
        if lab.stale:
            status = c.status["stale"]
        elif lab.analyte in unapplied:
            status = ""
        elif lab.analyte in flagged:
            status = c.status[flagged[lab.analyte]]
        else:
            status = c.status["in_range"] if lab.analyte in c.targets and ANALYTES[lab.analyte].target else ""
        direction = trend(lab)
        if direction is not None and lab.previous is not None:
            before = lab.previous
            shown = {
                "value": f"{before.comparator or ''}{_number(before.analyte, before.value)}",
                "unit": before.unit,
                "date": _date(before.effective),
            }
            status = "; ".join(part for part in (status, fill(c.status[f"trend_{direction}"], shown)) if part)
        label = c.labels["analyte"].get(lab.analyte, lab.analyte)
        rows.append(f"| {label} | {_lab_text(c, lab)} | {target} | {status} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# Suggestions
# --------------------------------------------------------------------------------------------


def _has_id(order: MedicationOrder | None) -> bool:
    return order is not None and "/" in order.resource_id and bool(order.resource_id.split("/", 1)[1])


def _suggestions(c: CardContent, f: Finding, patient_id: str, encounter_id: str | None) -> list[Suggestion]:
    order, review = f.order, f.review
    if review is None:
        return _create_only(c, f, patient_id, encounter_id)
    if order is None or not _has_id(order):
        return []
    rule = c.rule(f.rule_id)
    drug = {"drug": plain(clinical_drug_name(order.drug_name))}
    # Withhold (hold an active order, remove a draft) or stop (stop an active order, remove a draft).
    end = _hold_action(c, f, order, review.is_draft) if f.withhold else _remove_action(c, order, review.is_draft)
    if end is None:
        return []
    out: list[Suggestion] = []
    for sub in f.substitutions:
        spec = c.substitutes[sub.key]
        note = _dose_note(c, sub.dose_basis)
        resource = substitute_resource(spec, order, patient_id, encounter_id, sub.indications, note)
        create = _create_action(c, spec, resource, note)
        # The substitute first: a client that applies only one action (the sandbox) creates it.
        out.append(Suggestion(label=fill(spec.label), isRecommended=sub.recommended or None, actions=[create, end]))
    if not out and (f.stop_only or f.withhold):
        if f.withhold:
            label = (rule_text(rule, "withhold_label", f.variant) if review.is_draft else "") or c.text[
                "suggest_withhold_draft" if review.is_draft else "suggest_withhold_active"
            ]
        else:
            label = (
                rule_text(rule, "stop_label", f.variant)
                or c.text["suggest_remove_draft" if review.is_draft else "suggest_stop_active"]
            )
        out.append(Suggestion(label=fill(label, drug), actions=[end]))
    return out


def _dose_note(c: CardContent, dose_basis: str) -> str:
    """What chose a substitute's dose, worded once for the order and its action ("" for none)."""
    return fill(c.text["dose_basis"], {"detail": dose_basis}) if dose_basis else ""


def _create_action(c: CardContent, spec: SubstituteSpec, resource: dict[str, Any], dose_note: str = "") -> Action:
    """The action that orders a substitute (``resource``: the new order)."""
    dosage = f"{fill(spec.dosage_text)} {dose_note}".rstrip()
    description = fill(c.text["action_create"], {"display": spec.display, "dosage": dosage})
    return Action(type="create", description=description, resource=resource)


def _create_only(c: CardContent, f: Finding, patient_id: str, encounter_id: str | None) -> list[Suggestion]:
    """A chart-level finding (no order under review) offers its substitutes as new orders only,
    as R4 MedicationRequests (start-up validates them)."""
    out: list[Suggestion] = []
    for sub in f.substitutions:
        spec = c.substitutes[sub.key]
        note = _dose_note(c, sub.dose_basis)
        resource = new_order(spec, "R4", patient_id, encounter_id, sub.indications, note)
        create = _create_action(c, spec, resource, note)
        out.append(Suggestion(label=fill(spec.label), isRecommended=sub.recommended or None, actions=[create]))
    return out


def _end_action(
    c: CardContent,
    order: MedicationOrder,
    is_draft: bool,
    write: Callable[[CardContent, MedicationOrder], dict[str, Any]],
    text_key: str,
) -> Action | None:
    """Remove a draft (never started), or update an active order with ``write`` (stopped, or on
    hold). None when there is nothing to update: a dose already given (the card says to end the
    order behind it), or an order nested too deeply to echo back."""
    drug = {"drug": plain(order.drug_name)}
    if is_draft:
        return Action(type="delete", description=fill(c.text["action_delete"], drug), resourceId=order.resource_id)
    if not order.raw or order.kind == "administration":
        return None
    try:
        resource = write(c, order)
    except TooDeep:
        return None
    return Action(type="update", description=fill(c.text[text_key], drug), resource=resource)


def _hold_action(c: CardContent, f: Finding, order: MedicationOrder, is_draft: bool) -> Action | None:
    """Withhold: remove a draft, put an active order on hold, saying why (the rule's branch gives
    its own reason: calcium too low for a calcimimetic, too high for active vitamin D)."""
    why = fill(rule_text(c.rule(f.rule_id), "hold_reason", f.variant) or c.text["hold_reason"])
    return _end_action(c, order, is_draft, lambda content, o: held_resource(content, o, why), "action_hold")


def _remove_action(c: CardContent, order: MedicationOrder, is_draft: bool) -> Action | None:
    """Stop: remove a draft, mark an active order stopped."""
    return _end_action(c, order, is_draft, stopped_resource, "action_stop")
