#!/usr/bin/env python3
"""Generate ``docs/clinical/specification.md``, the clinical specification the CDS committee signs.

Usage::

    python tools/generate_clinical_spec.py [--output PATH] [--check]

Why a generated document: the committee signs what the service does, so the specification is
written from what runs, never beside it. Every text comes from the card content as the service
loads it (``cds_service.knowledge.content.content()``, i.e. ``cards/*.toml``), every number from
``cds_service.knowledge.thresholds.THRESHOLDS`` and the analyte table, and each rule's logic from
its check module's docstring (``cds_service/checks/<name>.py``), which is maintained with the
code. Nothing here restates a rule by hand: what the code decides (a card's indicator, for one)
is described by the docstrings, not invented.

What it holds: per rule module (C1 ... C6, M1, X1) its logic and, per finding id, the card's
topic, texts (templates filled with the thresholds; what the engine fills per patient shown as
``<drug>``, ``<reason>`` ...), variants, conflicts, evidence, substitutes and override reasons;
per substitute order its dose, route, timing, who may get it (each check with the wording the
card shows when met, not met or not checked) and references; the thresholds and monitoring
intervals; every note, conflict and reference.

``--check`` renders in memory and exits 1 with a short diff when the committed file differs
(drift), 0 when it matches; ``tests/test_clinical_spec.py`` does the same. The output is
deterministic: no timestamps, sorted wherever order carries no meaning.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cds_service.checks import CHART_RULES, ORDER_RULES, RULE_INCOMPLETE, eligibility
from cds_service.knowledge.content import (
    ENGINE_FIELDS,
    VARIANT_LISTS,
    VARIANT_TEXTS,
    CardContent,
    RuleContent,
    SubstituteSpec,
    content,
    fill,
)
from cds_service.knowledge.thresholds import TEMPLATE_VALUES, THRESHOLDS
from cds_service.patient.analytes import ANALYTES, Analyte

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT: Final = REPO_ROOT / "docs" / "clinical" / "specification.md"
GENERATOR: Final = "tools/generate_clinical_spec.py"

# What the engine fills per patient, shown as a readable placeholder (in backticks, so that
# GitHub does not read "<drug>" as an HTML tag and drop it).
ENGINE_PLACEHOLDERS: Final[Mapping[str, str]] = {name: f"`<{name}>`" for name in sorted(ENGINE_FIELDS)}

# UCUM units of time used by FHIR Timing, as words (singular, plural).
TIME_UNITS: Final[Mapping[str, tuple[str, str]]] = {
    "s": ("second", "seconds"),
    "min": ("minute", "minutes"),
    "h": ("hour", "hours"),
    "d": ("day", "days"),
    "wk": ("week", "weeks"),
    "mo": ("month", "months"),
    "a": ("year", "years"),
}
# HL7 EventTiming codes (Timing.repeat.when) a substitute may use.
EVENT_TIMING: Final[Mapping[str, str]] = {
    "C": "at a meal",
    "CM": "at breakfast",
    "CD": "at lunch",
    "CV": "at dinner",
    "AC": "before a meal",
    "ACM": "before breakfast",
    "ACD": "before lunch",
    "ACV": "before dinner",
    "PC": "after a meal",
    "PCM": "after breakfast",
    "PCD": "after lunch",
    "PCV": "after dinner",
    "HS": "before sleep",
    "WAKE": "on waking",
}
# How the card marks each outcome of a check (cds_service/render/cards.py).
OUTCOMES: Final = (("passed", "met (\u2714)"), ("failed", "not met (\u2718)"), ("unknown", "not checked (?)"))
# The sections, in order, with their headings (GitHub derives the anchors from them).
SECTIONS: Final = (
    ("Rules", "rules"),
    ("Substitute orders", "substitute-orders"),
    ("Override reasons", "override-reasons"),
    ("Thresholds", "thresholds"),
    ("Monitoring intervals and targets", "monitoring-intervals-and-targets"),
    ("Notes", "notes"),
    ("Where sources disagree", "where-sources-disagree"),
    ("References", "references"),
    ("Other wording the cards use", "other-wording-the-cards-use"),
)


@dataclass(frozen=True)
class RuleModule:
    """One check module: its artifact name and the rule ids its findings carry."""

    name: str
    finding_ids: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.name.split("_", 1)[0].upper()

    @property
    def path(self) -> str:
        return f"cds_service/checks/{self.name}.py"

    def docstring(self) -> str:
        module = importlib.import_module(f"cds_service.checks.{self.name}")
        doc = inspect.getdoc(module)
        if not doc:
            raise SystemExit(f"{self.path} has no docstring: the specification takes the rule's logic from it")
        return doc


def rule_modules() -> tuple[RuleModule, ...]:
    """C1 ... C6 (order rules), M1 (chart rules), then X1, in the runner's order."""
    modules = [RuleModule(rule.name, rule.finding_ids) for rule in ORDER_RULES]
    modules += [RuleModule(rule.name, rule.finding_ids) for rule in CHART_RULES]
    x1 = importlib.import_module("cds_service.checks.x1_check_incomplete")
    modules.append(RuleModule(x1.__name__.rsplit(".", 1)[1], (RULE_INCOMPLETE,)))
    return tuple(modules)


# --------------------------------------------------------------------------------------------
# Small formatting helpers
# --------------------------------------------------------------------------------------------


def text(template: str) -> str:
    """A card template as the specification shows it: thresholds filled in, engine fields as
    ``<name>`` placeholders."""
    return fill(template, ENGINE_PLACEHOLDERS)


def num(value: float) -> str:
    return f"{value:g}"


def code(value: str) -> str:
    return f"`{value}`"


def cell(value: str) -> str:
    """A table cell: no line breaks, and a pipe does not end the cell."""
    return " ".join(value.split()).replace("|", "\\|")


def fenced(body: str) -> list[str]:
    """``body`` verbatim, in a fence longer than any run of backticks inside it."""
    run, longest = 0, 0
    for char in body:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}text", body, fence]


def time_amount(value: float, unit: str) -> str:
    words = TIME_UNITS.get(unit)
    if words is None:
        return f"{num(value)} {unit}"
    return f"{num(value)} {words[0] if value == 1 else words[1]}"


def times(frequency: int) -> str:
    return {1: "once", 2: "twice"}.get(frequency, f"{frequency} times")


def heading(level: int, title: str) -> list[str]:
    return ["#" * level + " " + title, ""]


def bullets(items: Iterable[str], indent: str = "") -> list[str]:
    return [f"{indent}- {item}" for item in items]


# --------------------------------------------------------------------------------------------
# Pieces shared by several sections
# --------------------------------------------------------------------------------------------


def reference_line(c: CardContent, key: str) -> str:
    ref = c.references[key]
    return f"{ref.citation} <{ref.url}> ({code(key)})"


def conflict_block(c: CardContent, key: str, indent: str = "") -> list[str]:
    conflict = c.conflicts[key]
    lines = [f"{indent}- {code(key)}: {text(conflict.text)}"]
    if conflict.references:
        lines.append(f"{indent}  - References:")
        lines += bullets((reference_line(c, r) for r in conflict.references), indent + "    ")
    return lines


def note_line(c: CardContent, key: str) -> str:
    note = c.notes[key]
    line = f"{code(key)}: {text(note.text)}"
    if note.conflict:
        line += f" (shown with the conflict {code(note.conflict)})"
    return line


def labelled(label: str, body: str) -> list[str]:
    return [f"**{label}.** {body}", ""]


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def header() -> list[str]:
    placeholders = ", ".join(code(f"<{name}>") for name in sorted(ENGINE_FIELDS))
    lines = [
        "# Clinical specification: calciphylaxis decision support",
        "",
        f"> **Generated by `{GENERATOR}`: do not edit this file by hand.** It is written from what the",
        "> service runs: the card content in `cards/` and the thresholds and card loader in",
        "> `cds_service/knowledge/`, with each rule's logic from its check module's docstring in",
        "> `cds_service/checks/` and the monitoring intervals from `cds_service/patient/analytes.py`.",
        "> To change it, change those sources and regenerate with `make clinical-spec`",
        f"> (or `.venv/bin/python {GENERATOR}`); `tests/test_clinical_spec.py` fails while this",
        "> file is out of date.",
        "",
        "The answers to the clinical content review are in [review-responses.md](review-responses.md);",
        "where each code (RxNorm, SNOMED CT, LOINC, ICD-10) was confirmed is in [codes.md](codes.md).",
        "",
        "How to read it: texts are shown as the cards word them, with every threshold filled in. What",
        "the service fills in per patient and order is shown as a placeholder in angle brackets:",
        f"{placeholders}. A card's indicator (critical, warning, info) is decided by the check's code,",
        "as each rule's logic below describes; card content does not set it.",
        "",
        "Contents:",
        "",
    ]
    lines += [f"{i}. [{title}](#{anchor})" for i, (title, anchor) in enumerate(SECTIONS, 1)]
    return [*lines, ""]


def override_cap_sentence(c: CardContent) -> str:
    if not c.max_snooze_days:
        return "No indicator caps the snooze an override reason may carry."
    caps = "; ".join(
        f"a {indicator} card never offers an override reason that snoozes it for more than {days} days"
        for indicator, days in sorted(c.max_snooze_days.items())
    )
    return (
        f"Cap by indicator (`override_reasons.max_snooze_days`): {caps} (the reason is left off "
        "that card; whether a card is critical is decided by the check)."
    )


def override_table(c: CardContent, codes: Sequence[str]) -> list[str]:
    capped = sorted(c.max_snooze_days.items())
    head = ["code", "shown as", "snoozes patient-view for"] + [f"offered on a {i} card" for i, _ in capped]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for reason in codes:
        days = c.snooze_days.get(reason)
        row = [code(reason), cell(c.override_codes[reason]), f"{days} days" if days else "no snooze"]
        row += ["yes" if (days or 0) <= limit else f"no (over {limit} days)" for _, limit in capped]
        lines.append("| " + " | ".join(row) + " |")
    return [*lines, ""]


def rule_finding(c: CardContent, rule_id: str) -> list[str]:
    rule = c.rule(rule_id)
    lines = heading(4, code(rule_id))
    lines += bullets(
        [
            f"Topic: {code(rule.topic)}, {c.topics[rule.topic]} (system `{c.topic_system}`)",
            "Indicator: set by the check's code (see the logic above), not by card content",
            f"Card layout: {code(rule.layout)}",
        ]
    )
    lines.append("")
    lines += labelled("Summary", text(rule.summary))
    lines += labelled("Rule", text(rule.rule))
    lines += labelled("Why", text(rule.why))
    if rule.extra:
        lines += ["**Other texts of this rule:**", ""]
        lines += bullets(f"{code(name)}: {text(value)}" for name, value in sorted(rule.extra.items()))
        lines.append("")
    lines += rule_variants(c, rule)
    lines += ["**Where sources disagree** (on every card of this rule; a variant or a note can add more):", ""]
    if rule.conflicts:
        for key in rule.conflicts:
            lines += conflict_block(c, key)
    else:
        lines.append("- none")
    lines.append("")
    lines += ["**Evidence** (cited and linked on every card of this rule):", ""]
    lines += bullets(reference_line(c, key) for key in rule.evidence) or ["- none"]
    lines.append("")
    lines += ["**Substitute orders offered, in this order:**", ""]
    if rule.substitutes:
        lines += [
            f"{i}. {code(key)}: {text(c.substitutes[key].label)} "
            + ("(recommended)" if recommended else "(not recommended)")
            for i, (key, recommended) in enumerate(rule.substitutes, 1)
        ]
        lines += [
            "",
            "Each is offered only when its checks allow (see [Substitute orders](#substitute-orders));",
            "a check can also keep a recommended one from being marked recommended.",
        ]
    else:
        lines.append("None.")
    lines.append("")
    lines += ["**Override reasons offered:**", ""]
    if rule.override_reasons:
        lines += override_table(c, rule.override_reasons)
        lines += [override_cap_sentence(c), ""]
    else:
        lines += ["None.", ""]
    return lines


def rule_variants(c: CardContent, rule: RuleContent) -> list[str]:
    if not rule.variants:
        return []
    lines = ["**Variants** (branches of the rule that read differently; same rule id, same counts):", ""]
    for name, body in sorted(rule.variants.items()):
        lines.append(f"- Variant {code(name)}:")
        for field in VARIANT_TEXTS:
            value = body.get(field)
            if isinstance(value, str):
                lines.append(f"  - {field.replace('_', ' ').capitalize()}: {text(value)}")
        for field in VARIANT_LISTS:
            keys = tuple(body.get(field, ()))
            if not keys:
                continue
            if field == "conflicts":
                lines.append("  - Adds where sources disagree:")
                for key in keys:
                    lines += conflict_block(c, key, "    ")
            else:
                lines.append("  - Adds evidence:")
                lines += bullets((reference_line(c, key) for key in keys), "    ")
    return [*lines, ""]


def rules_section(c: CardContent) -> list[str]:
    lines = heading(2, "Rules")
    modules = rule_modules()
    covered: set[str] = set()
    for module in modules:
        lines += heading(3, f"{module.label} ({code(module.name)})")
        lines += [f"Logic, verbatim from the docstring of `{module.path}` (maintained with the code):", ""]
        lines += [*fenced(module.docstring()), ""]
        lines += [f"Rule ids (findings; feedback is counted by these): {', '.join(map(code, module.finding_ids))}.", ""]
        for rule_id in module.finding_ids:
            lines += rule_finding(c, rule_id)
            covered.add(rule_id)
    orphans = sorted(set(c.rules) - covered)
    if orphans:
        lines += heading(3, "Card content no check module produces")
        lines += ["These rule ids have card content but no check module names them:", ""]
        for rule_id in orphans:
            lines += rule_finding(c, rule_id)
    return lines


def safety_wording(c: CardContent, key: str) -> list[str]:
    texts = c.safety[key]
    lines = []
    for outcome, shown in OUTCOMES:
        if outcome in texts:
            lines.append(f"    - {shown}: {text(texts[outcome])}")
        elif outcome == "unknown":
            lines.append(f"    - {shown}: {text(c.text['safety_not_checked'])} (the general wording)")
    return lines


def substitute_block(c: CardContent, key: str, spec: SubstituteSpec) -> list[str]:
    lines = heading(3, code(key))
    lines += labelled("Suggestion", text(spec.label))
    timing = f"{times(spec.frequency)} per {time_amount(spec.period, spec.period_unit)}"
    if spec.period == 1 and spec.period_unit in TIME_UNITS:
        timing = f"{times(spec.frequency)} per {TIME_UNITS[spec.period_unit][0]}"
    order = [
        f"Drug: RxNorm {code(spec.rxnorm)}, {spec.display}",
        f"Dose: {num(spec.dose_value)} {spec.dose_unit}",
        f"Frequency: {timing} (Timing: frequency {spec.frequency}, period {num(spec.period)} {spec.period_unit})",
    ]
    if spec.when:
        order.append("When: " + ", ".join(f"{EVENT_TIMING.get(w, w)} (EventTiming {code(w)})" for w in spec.when))
    route = f"Route: {spec.route}"
    route += f" (SNOMED CT {code(spec.route_code)})" if spec.route_code else " (no SNOMED CT code)"
    order.append(route)
    if spec.duration is not None:
        span = num(spec.duration)
        if spec.duration_max is not None:
            span += f"-{num(spec.duration_max)}"
        order.append(f"Infusion time: {span} {spec.duration_unit} (Timing.repeat.duration / durationMax)")
    if spec.bounds_value is not None:
        order.append(
            f"Course length: {time_amount(spec.bounds_value, spec.bounds_unit)} (Timing.repeat.boundsDuration)"
        )
    order.append(f"Dosage text: {text(spec.dosage_text)}")
    order.append(f"Drug class: {code(spec.drug_class)} (an active or drafted order of it makes this a duplicate)")
    order.append(f"Ingredient (allergies and intolerances are matched on it): {spec.ingredient}")
    if spec.indication:
        kinds = ", ".join(
            f"{code(kind)} ({c.labels['condition'][kind]})" if kind in c.labels["condition"] else code(kind)
            for kind in spec.indication
        )
        order.append(f"Indication: the order names the patient's conditions of these kinds as its reason: {kinds}")
    offered_by = [
        f"{code(rule_id)} ({'recommended' if rec else 'not recommended'})"
        for rule_id, rule in sorted(c.rules.items())
        for sub, rec in rule.substitutes
        if sub == key
    ]
    order.append("Offered by: " + (", ".join(offered_by) if offered_by else "no rule"))
    lines += ["**The order:**", "", *bullets(order), ""]

    lines += ["**Checked before it is offered** (the card lists each check with this wording):", ""]
    checks: list[str] = []
    for need in spec.needs:
        checks.append(f"- Needs {code(need)} (wording `[safety.{need}]`):")
        checks += safety_wording(c, need)
    for need in spec.dose_needs:
        checks.append(
            f"- Dose need {code(need)} (chooses between doses of one drug; not listed on the card when not met,"
            f" since the other dose is; wording `[safety.{need}]`):"
        )
        checks += safety_wording(c, need)
    for state in spec.not_with:
        avoid = eligibility._avoid_key(state, spec)
        checks.append(f"- Must not have {code(state)} (wording `[safety.{avoid}]`; met = not present):")
        checks += safety_wording(c, avoid)
    lines += checks or ["- nothing"]
    lines += ["", "Any check not met, or not checked, withholds the one-click order.", ""]

    if spec.blocked_notes:
        lines += ["**When a need is not met or not checked, the card adds:**", ""]
        lines += bullets(
            f"{code(need)}: note {note_line(c, note)}" for need, note in sorted(spec.blocked_notes.items())
        )
        lines.append("")
    lines += ["**References:**", ""]
    lines += bullets(reference_line(c, r) for r in spec.references) or ["- none"]
    return [*lines, ""]


def substitutes_section(c: CardContent) -> list[str]:
    lines = heading(2, "Substitute orders")
    lines += [
        "A substitute is a draft order (MedicationRequest, status draft, intent order) for the current",
        "patient. Who may get one is checked before it is offered, as",
        "`cds_service/checks/eligibility.py` describes (verbatim from its docstring):",
        "",
        *fenced(inspect.getdoc(eligibility) or ""),
        "",
    ]
    for key, spec in sorted(c.substitutes.items()):
        lines += substitute_block(c, key, spec)
    return lines


def override_section(c: CardContent) -> list[str]:
    lines = heading(2, "Override reasons")
    lines += [
        f"Coded in the system `{c.override_system}`; codes are stable (feedback is counted by them).",
        "A reason with a snooze hides that rule's card for that patient and drug on patient-view for",
        "that many days (order hooks still check a new order). Which reasons each rule offers is listed",
        "under the rule.",
        "",
    ]
    lines += override_table(c, sorted(c.override_codes))
    return [*lines, override_cap_sentence(c), ""]


def thresholds_section() -> list[str]:
    lines = heading(2, "Thresholds")
    lines += [
        "Every clinical number the checks compare (`cds_service/knowledge/thresholds.py`), under the",
        "name the card texts use for it (`{name}`), in the order of that file.",
        "",
        "| name | value | unit | meaning | source |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {code(t.name)} | {num(t.value)} | {cell(t.unit)} | {cell(t.meaning)} | {cell(t.source)} |"
        for t in THRESHOLDS
    ]
    others = sorted(set(TEMPLATE_VALUES) - {t.name for t in THRESHOLDS})
    if others:
        lines += ["", "Other values the card texts may use:", ""]
        lines += bullets(f"{code(name)}: {TEMPLATE_VALUES[name]}" for name in others)
    return [*lines, ""]


def target_range(a: Analyte) -> str:
    if a.target is None:
        return "none"
    low, high = a.target
    if low is not None and high is not None:
        return f"{num(low)}-{num(high)}"
    if high is not None:
        return f"below {num(high)}" if a.target_high_exclusive else f"at most {num(high)}"
    if low is not None:
        return f"at least {num(low)}"
    return "none"


def monitoring_section(c: CardContent) -> list[str]:
    lines = heading(2, "Monitoring intervals and targets")
    lines += [
        "From the analyte table (`cds_service/patient/analytes.py`): a result older than its interval",
        "is out of date, and the checks say so rather than act on it. The target column is the table's;",
        "the last column is how the card words it (`targets` in `cards/rules/`).",
        "",
        "| analyte | shown as | unit | out of date after | target | target on the card |",
        "|---|---|---|---|---|---|",
    ]
    analyte_labels = c.labels.get("analyte", {})
    for key, a in ANALYTES.items():
        stale = f"{a.stale_after.days} days" if a.stale_after is not None else "no interval (never overdue)"
        card_target = text(c.targets[key]) if key in c.targets else "none"
        row = [code(key), analyte_labels.get(key, ""), a.unit, stale, target_range(a), card_target]
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return [*lines, ""]


def notes_section(c: CardContent) -> list[str]:
    lines = heading(2, "Notes")
    lines += ["Statements a card adds when a check asks for them (`[notes]` in `cards/common.toml`).", ""]
    lines += bullets(note_line(c, key) for key in sorted(c.notes))
    return [*lines, ""]


def conflicts_section(c: CardContent) -> list[str]:
    lines = heading(2, "Where sources disagree")
    lines += ["Every evidence conflict a card can state (`[conflicts]` in `cards/common.toml`).", ""]
    for key in sorted(c.conflicts):
        lines += conflict_block(c, key)
    return [*lines, ""]


def references_section(c: CardContent) -> list[str]:
    lines = heading(2, "References")
    lines += ["Every reference of `cards/references.toml`: the link label a card shows, then the citation.", ""]
    lines += bullets(
        f"{code(key)}: {ref.short}. {ref.citation} <{ref.url}>" for key, ref in sorted(c.references.items())
    )
    return [*lines, ""]


def wording_section(c: CardContent) -> list[str]:
    lines = heading(2, "Other wording the cards use")
    groups: tuple[tuple[str, str, Mapping[str, str]], ...] = (
        ("Reasons", "phrases naming what fired, filling `<reason>` in summaries (`[reasons]`)", c.reasons),
        ("Not checked", "what could not be checked (`[gaps]`)", c.gaps),
        ("Data lines", "data a card lists besides labs and conditions (`[facts]`)", c.facts),
        ("Result status", "the mineral review's result table (`[status]` in `cards/rules/`)", c.status),
        ("Card texts", "suggestion labels, actions and other sentences (`[text]`)", c.text),
    )
    for title, about, texts in groups:
        lines += heading(3, title)
        lines += [about[0].upper() + about[1:] + ":", ""]
        lines += bullets(f"{code(key)}: {text(value)}" for key, value in sorted(texts.items()))
        lines.append("")
    return lines


def sections(c: CardContent) -> Iterator[list[str]]:
    yield header()
    yield rules_section(c)
    yield substitutes_section(c)
    yield override_section(c)
    yield thresholds_section()
    yield monitoring_section(c)
    yield notes_section(c)
    yield conflicts_section(c)
    yield references_section(c)
    yield wording_section(c)


def render() -> str:
    """The whole specification, from the card content and thresholds the service loads."""
    c = content()
    eligibility.validate(c)  # the same start-up check the service makes: never document a broken set
    lines = [line for section in sections(c) for line in section]
    body = "\n".join(line.rstrip() for line in lines)
    while "\n\n\n" in body:
        body = body.replace("\n\n\n", "\n\n")
    return body.strip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="markdown file to write or check (default: %(default)s)"
    )
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if OUTPUT differs from a fresh rendering"
    )
    args = parser.parse_args(argv)

    rendered = render()
    if args.check:
        committed = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if committed == rendered:
            print(f"{args.output}: up to date")
            return 0
        print(f"{args.output}: out of date (regenerate with `make clinical-spec`)")
        diff = list(
            difflib.unified_diff(
                committed.splitlines(), rendered.splitlines(), "committed", "rendered", n=0, lineterm=""
            )
        )
        for line in diff[:40] if committed else ["file missing"]:
            print(line)
        if len(diff) > 40:
            print(f"... {len(diff) - 40} more diff lines")
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(rendered, encoding="utf-8")
    print(f"wrote {args.output}: {rendered.count(chr(10))} lines, {len(rendered)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
