"""Card content from ``cards/*.toml``: loaded and checked once, then shared by every request.

The TOML files hold all the words (summaries, explanations, evidence, substitutes, override
reasons) so a clinician can review and edit them without touching the engine. ``content()``
parses them on first use and fails loudly at start-up, not mid-request, when a file refers to
something that does not exist (an unknown reference, substitute, override code or placeholder).
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from cds_service.knowledge.thresholds import TEMPLATE_VALUES

# Placeholders the engine fills. A template using anything else is a content error.
ENGINE_FIELDS = frozenset(
    {
        "drug",
        "drug_class",
        "drug_text",
        "code",
        "reason",
        "missing",
        "status",
        "detail",
        "what",
        "why",
        "analyte",
        "value",
        "unit",
        "date",
        "days",
        "n",
        "items",
        "display",
        "dosage",
        "how",
        "matched",
        "field",
        "dose",
        "next_dose",
        "calcium",
        "since",
        "limit",
    }
)
ALLOWED_FIELDS = ENGINE_FIELDS | frozenset(TEMPLATE_VALUES)
LAYOUTS = frozenset({"order", "results-table"})


class CardContentError(ValueError):
    """The card content files are inconsistent (raised at load time)."""


@dataclass(frozen=True)
class Reference:
    key: str
    short: str
    citation: str
    url: str


@dataclass(frozen=True)
class SubstituteSpec:
    key: str
    label: str
    rxnorm: str
    display: str
    dose_value: float
    dose_unit: str
    frequency: int
    period: float
    period_unit: str
    route: str
    dosage_text: str
    when: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    # Who may get it (checked by cds_service.checks.eligibility before it is offered): the drug
    # class it belongs to (an active order of that class makes it a duplicate), its ingredient
    # (allergies are matched on it), the states it needs and the states it must not meet.
    drug_class: str = ""
    ingredient: str = ""
    needs: tuple[str, ...] = ()
    # Needs that choose between doses of one drug (sevelamer 800 / 1600 mg, apixaban 5 / 2.5 mg):
    # one not met is not listed on the card, since a sibling entry meets it.
    dose_needs: tuple[str, ...] = ()
    not_with: tuple[str, ...] = ()
    # A note (key of [notes]) the card shows when a given need is not met.
    blocked_notes: Mapping[str, str] = field(default_factory=dict)
    # Condition kinds whose Condition resources the order names as its reason (reasonReference).
    indication: tuple[str, ...] = ()
    route_code: str = ""  # SNOMED CT route
    # Infusion time (Timing.repeat.duration / durationMax / durationUnit) and course length
    # (Timing.repeat.boundsDuration), when the label or regimen gives them.
    duration: float | None = None
    duration_max: float | None = None
    duration_unit: str = ""
    bounds_value: float | None = None
    bounds_unit: str = ""


@dataclass(frozen=True)
class RuleContent:
    rule_id: str
    topic: str
    summary: str
    rule: str
    why: str
    evidence: tuple[str, ...]
    conflicts: tuple[str, ...]
    substitutes: tuple[tuple[str, bool], ...]  # (substitute key, recommended)
    override_reasons: tuple[str, ...]
    extra: Mapping[str, str] = field(default_factory=dict)  # rule-specific texts (status_*)
    # Branches of the rule that read differently (``[rules."<id>".variants.<name>]``): any of
    # summary, rule, why, stop_label, hold_reason, and extra conflicts / evidence. A finding names
    # its branch (``Finding.variant``); the rule id, and so the feedback counts, stay the same.
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # How the card lays out its data: "order" (the order, conditions and labs used) or
    # "results-table" (chart reviews: labs against targets, a status phrase in the summary).
    layout: str = "order"


def rule_text(rule: RuleContent, name: str, variant: str = "") -> str:
    """A rule's text (summary, rule, why ...) as its branch ``variant`` words it."""
    body = rule.variants.get(variant, {}) if variant else {}
    text = body.get(name)
    if isinstance(text, str):
        return text
    return str(getattr(rule, name, None) or rule.extra.get(name, ""))


def rule_list(rule: RuleContent, name: str, variant: str = "") -> tuple[str, ...]:
    """A rule's conflicts or evidence, with what its branch ``variant`` adds."""
    base: tuple[str, ...] = getattr(rule, name)
    body = rule.variants.get(variant, {}) if variant else {}
    return tuple(dict.fromkeys(base + tuple(body.get(name, ()))))


@dataclass(frozen=True)
class Conflict:
    key: str
    text: str
    references: tuple[str, ...]


@dataclass(frozen=True)
class Note:
    key: str
    text: str
    conflict: str | None = None  # a [conflicts] entry the card must show with this note


@dataclass(frozen=True)
class CardContent:
    source_label: str
    topic_system: str
    topics: Mapping[str, str]
    override_system: str
    override_codes: Mapping[str, str]
    # Override reason code -> days a card of the same rule and drug is not repeated on patient-view.
    snooze_days: Mapping[str, int]
    # Indicator -> the longest snooze a card of that indicator offers (critical: 1 month).
    max_snooze_days: Mapping[str, int]
    labels: Mapping[str, Mapping[str, str]]
    headings: Mapping[str, str]
    text: Mapping[str, str]
    safety: Mapping[str, Mapping[str, str]]
    gaps: Mapping[str, str]
    facts: Mapping[str, str]  # data lines other than labs and conditions (order dates, dose)
    reasons: Mapping[str, str]
    notes: Mapping[str, Note]
    conflicts: Mapping[str, Conflict]
    references: Mapping[str, Reference]
    substitutes: Mapping[str, SubstituteSpec]
    rules: Mapping[str, RuleContent]
    targets: Mapping[str, str]
    status: Mapping[str, str]

    def rule(self, rule_id: str) -> RuleContent:
        try:
            return self.rules[rule_id]
        except KeyError:
            raise CardContentError(f"no card content for rule {rule_id!r} in cards/rules/") from None

    def offered_reasons(self, rule_id: str, indicator: str) -> list[str]:
        """The rule's override reason codes a card of this indicator offers: a critical card never
        offers a snooze longer than ``override_reasons.max_snooze_days.critical`` (clinical
        review F24). The card offers these, and the feedback store accepts only these back."""
        limit = self.max_snooze_days.get(indicator)
        return [
            code
            for code in self.rule(rule_id).override_reasons
            if limit is None or self.snooze_days.get(code, 0) <= limit
        ]


def fill(template: str, values: Mapping[str, Any] | None = None) -> str:
    """Fill a card template: thresholds are always available, the rest comes from ``values``."""
    merged = dict(TEMPLATE_VALUES)
    if values:
        merged.update(values)
    return template.format_map(merged)


def placeholders(template: str) -> set[str]:
    names = set()
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise CardContentError(f"placeholder {{{name}}} must be a plain name: {template[:60]!r}")
        names.add(name)
    return names


def content_root() -> Traversable:
    """Where the card content is: the package ``cds_service.cards``, which pyproject.toml maps to
    the ``cards/`` directory (the one place people edit it) and installs as package data. A source
    checkout used without installing that mapping (``PYTHONPATH=.``, or an editable install made
    before it) reads ``cards/`` beside the package."""
    try:
        return resources.files("cds_service.cards")
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parents[2] / "cards"
        if (checkout / "common.toml").is_file():
            return checkout
        raise CardContentError("the card content (package cds_service.cards) is not installed") from None


@lru_cache(maxsize=1)
def content() -> CardContent:
    """Parse and check every cards/*.toml file once per process."""
    root = content_root()
    common = _load(root.joinpath("common.toml"))
    references_raw = _load(root.joinpath("references.toml"))
    substitutes_raw = _load(root.joinpath("substitutes.toml"))
    rules_raw: dict[str, dict[str, Any]] = {}
    targets: dict[str, str] = {}
    status: dict[str, str] = {}
    rules_dir = root.joinpath("rules")
    for entry in sorted(rules_dir.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".toml"):
            continue
        data = _load(entry)
        for rule_id, body in data.get("rules", {}).items():
            if rule_id in rules_raw:
                raise CardContentError(f"rule {rule_id!r} is defined twice (in {entry.name})")
            rules_raw[rule_id] = body
        targets.update(data.get("targets", {}))
        status.update(data.get("status", {}))

    references = {
        key: Reference(key=key, short=v["short"], citation=v["citation"], url=v["url"])
        for key, v in references_raw.items()
    }
    substitutes = {key: _substitute(key, v) for key, v in substitutes_raw.items()}
    conflicts = {
        key: Conflict(key=key, text=v["text"], references=tuple(v.get("references", ())))
        for key, v in common.get("conflicts", {}).items()
    }
    rules = {rule_id: _rule(rule_id, body) for rule_id, body in rules_raw.items()}
    loaded = CardContent(
        source_label=common["source"]["label"],
        topic_system=common["source"]["topic_system"],
        topics=dict(common["topics"]),
        override_system=common["override_reasons"]["system"],
        override_codes=dict(common["override_reasons"]["codes"]),
        snooze_days=dict(common["override_reasons"].get("snooze_days", {})),
        max_snooze_days=dict(common["override_reasons"].get("max_snooze_days", {})),
        labels={k: dict(v) for k, v in common["labels"].items()},
        headings=dict(common["headings"]),
        text=dict(common["text"]),
        safety={k: dict(v) for k, v in common["safety"].items()},
        gaps=dict(common["gaps"]),
        facts=dict(common.get("facts", {})),
        reasons=dict(common["reasons"]),
        notes={key: Note(key=key, text=v["text"], conflict=v.get("conflict")) for key, v in common["notes"].items()},
        conflicts=conflicts,
        references=references,
        substitutes=substitutes,
        rules=rules,
        targets=targets,
        status=status,
    )
    _check(loaded)
    return loaded


def _load(path: Traversable) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CardContentError(f"cannot read card content {path}: {exc}") from None


def _substitute(key: str, v: dict[str, Any]) -> SubstituteSpec:
    try:
        return SubstituteSpec(
            key=key,
            label=v["label"],
            rxnorm=str(v["rxnorm"]),
            display=v["display"],
            dose_value=v["dose_value"],
            dose_unit=v["dose_unit"],
            frequency=int(v["frequency"]),
            period=v["period"],
            period_unit=v["period_unit"],
            route=v["route"],
            dosage_text=v["dosage_text"],
            when=tuple(v.get("when", ())),
            references=tuple(v.get("references", ())),
            drug_class=v["class"],
            ingredient=v["ingredient"],
            needs=tuple(v.get("needs", ())),
            dose_needs=tuple(v.get("dose_needs", ())),
            not_with=tuple(v.get("not_with", ())),
            blocked_notes=dict(v.get("blocked_notes", {})),
            indication=tuple(v.get("indication", ())),
            route_code=str(v.get("route_code", "")),
            duration=v.get("duration"),
            duration_max=v.get("duration_max"),
            duration_unit=str(v.get("duration_unit", "")),
            bounds_value=v.get("bounds_value"),
            bounds_unit=str(v.get("bounds_unit", "")),
        )
    except KeyError as exc:
        raise CardContentError(f"substitute {key!r} lacks {exc}") from None


VARIANT_TEXTS = ("summary", "rule", "why", "stop_label", "hold_reason", "withhold_label")
VARIANT_LISTS = ("conflicts", "evidence")


def _rule(rule_id: str, v: dict[str, Any]) -> RuleContent:
    known = {
        "topic",
        "summary",
        "rule",
        "why",
        "evidence",
        "conflicts",
        "substitutes",
        "override_reasons",
        "layout",
        "variants",
    }
    try:
        return RuleContent(
            rule_id=rule_id,
            topic=v["topic"],
            summary=v["summary"],
            rule=v["rule"],
            why=v["why"],
            evidence=tuple(v.get("evidence", ())),
            conflicts=tuple(v.get("conflicts", ())),
            substitutes=tuple((s["key"], bool(s.get("recommended", False))) for s in v.get("substitutes", ())),
            override_reasons=tuple(v.get("override_reasons", ())),
            extra={k: val for k, val in v.items() if k not in known},
            layout=v.get("layout", "order"),
            variants={name: dict(body) for name, body in v.get("variants", {}).items()},
        )
    except KeyError as exc:
        raise CardContentError(f"rule {rule_id!r} lacks {exc}") from None


def _templates(c: CardContent) -> Iterator[tuple[str, str]]:
    """Every text the engine fills, with where it lives (for error messages)."""
    for key, note in c.notes.items():
        yield f"notes.{key}", note.text
    for group in ("headings", "text", "gaps", "facts", "reasons", "targets", "status"):
        for key, text in getattr(c, group).items():
            yield f"{group}.{key}", text
    for key, texts in c.safety.items():
        for outcome, text in texts.items():
            yield f"safety.{key}.{outcome}", text
    for key, conflict in c.conflicts.items():
        yield f"conflicts.{key}", conflict.text
    for key, sub in c.substitutes.items():
        yield f"substitutes.{key}.label", sub.label
        yield f"substitutes.{key}.dosage_text", sub.dosage_text
    for rule_id, rule in c.rules.items():
        for name in ("summary", "rule", "why"):
            yield f"rules.{rule_id}.{name}", getattr(rule, name)
        for name, text in rule.extra.items():
            yield f"rules.{rule_id}.{name}", text
        for variant, body in rule.variants.items():
            for name in VARIANT_TEXTS:
                if name in body:
                    yield f"rules.{rule_id}.variants.{variant}.{name}", body[name]


def _check(c: CardContent) -> None:
    problems: list[str] = []
    for where, text in _templates(c):
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{where} is empty")
            continue
        try:
            unknown = placeholders(text) - ALLOWED_FIELDS
        except CardContentError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if unknown:
            problems.append(f"{where} uses unknown placeholder(s) {sorted(unknown)}")
    for code, days in c.snooze_days.items():
        if code not in c.override_codes:
            problems.append(f"override_reasons.snooze_days names unknown override reason {code!r}")
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 366:
            problems.append(f"override_reasons.snooze_days.{code} must be a whole number of days, 1-366")
    for code, display in c.override_codes.items():
        if not display.strip():
            problems.append(f"override reason {code!r} has no display")
    for key, conflict in c.conflicts.items():
        problems += [
            f"conflicts.{key} cites unknown reference {r!r}" for r in conflict.references if r not in c.references
        ]
    for key, note in c.notes.items():
        if note.conflict is not None and note.conflict not in c.conflicts:
            problems.append(f"notes.{key} names unknown conflict {note.conflict!r}")
    for key, sub in c.substitutes.items():
        problems += [
            f"substitutes.{key} cites unknown reference {r!r}" for r in sub.references if r not in c.references
        ]
        problems += [
            f"substitutes.{key}.blocked_notes names unknown note {n!r}"
            for n in sub.blocked_notes.values()
            if n not in c.notes
        ]
        problems += [
            f"substitutes.{key}.blocked_notes is for {need!r}, which it does not need"
            for need in sub.blocked_notes
            if need not in sub.needs
        ]
    for rule_id, rule in c.rules.items():
        if rule.layout not in LAYOUTS:
            problems.append(f"{rule_id}: unknown layout {rule.layout!r} (one of {sorted(LAYOUTS)})")
        if rule.topic not in c.topics:
            problems.append(f"{rule_id}: unknown topic {rule.topic!r}")
        problems += [f"{rule_id}: unknown reference {r!r}" for r in rule.evidence if r not in c.references]
        problems += [f"{rule_id}: unknown conflict {k!r}" for k in rule.conflicts if k not in c.conflicts]
        problems += [f"{rule_id}: unknown substitute {k!r}" for k, _ in rule.substitutes if k not in c.substitutes]
        problems += [
            f"{rule_id}: unknown override reason {k!r}" for k in rule.override_reasons if k not in c.override_codes
        ]
        for variant, body in rule.variants.items():
            unknown = set(body) - set(VARIANT_TEXTS) - set(VARIANT_LISTS)
            if unknown:
                problems.append(f"{rule_id}: variant {variant!r} has unknown fields {sorted(unknown)}")
            problems += [
                f"{rule_id}: variant {variant!r} cites unknown conflict {k!r}"
                for k in body.get("conflicts", ())
                if k not in c.conflicts
            ]
            problems += [
                f"{rule_id}: variant {variant!r} cites unknown reference {r!r}"
                for r in body.get("evidence", ())
                if r not in c.references
            ]
        if sum(1 for _, rec in rule.substitutes if rec) > 1:
            problems.append(f"{rule_id}: at most one substitute may be recommended")
    if problems:
        raise CardContentError("card content problems:\n  " + "\n  ".join(problems))
