"""The companion page, rendered on the server: one HTML document with inline SVG charts.

No script and nothing fetched: the Content-Security-Policy (``CSP``, also sent as a header with
``frame-ancestors``) has ``script-src 'none'`` and allows the page's one stylesheet by its hash,
so not even an injected style runs. Every text from the EHR is escaped; card details go through
the card preview's markdown renderer (raw HTML off, images off, http(s) links only).

Accessibility: one ``h1``, a heading per section and per chart, landmarks (header, nav, main,
footer) and a skip link; every chart is an ``<svg role="img">`` with a title and a description
and its values in a table (inside ``<details>``, which the keyboard opens); focus is always
visible; text contrast is at least 4.5:1; the layout reads from 320 px up and puts two charts
side by side from about 1000 px (a 1280 px EHR side panel).

The URL of the page carries no patient identifier; the page itself names the patient (when the
EHR asks the app to show a banner) so the clinician can check it is the chart they launched from.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cds_service.checks import ORDER_RULES
from cds_service.knowledge.content import content, fill
from cds_service.knowledge.thresholds import THRESHOLDS
from cds_service.pages import escape as _e
from cds_service.patient.analytes import ANALYTES
from cds_service.protocol import Card
from cds_service.render.html import INDICATOR_LABELS, LINK_REL, is_safe_url, render_markdown
from cds_service.smart.charts import Band, Line, Threshold, fmt, timeline_chart, trend_chart
from cds_service.smart.data import (
    SUBSTITUTE_CLASSES,
    ChartView,
    Point,
    RuleConclusion,
    Series,
    TimelineItem,
)

TITLE = "Calciphylaxis: mineral trends and the rules' reasoning"
_THRESHOLD = {t.name: t for t in THRESHOLDS}
_GLYPHS = {"critical": "\u26a0", "warning": "\u25b2", "info": "\u2139"}

# Page wording for drug classes the cards do not name (the substitutes).
_CLASS_LABELS = {
    "non_calcium_binder": "calcium-free phosphate binder",
    "doac": "direct oral anticoagulant",
    "sodium_thiosulfate": "sodium thiosulfate",
}
_KIND_LABELS = {"request": "order", "statement": "home medication list", "administration": "dose given"}
_MODALITY_TEXT = {
    "haemodialysis": "Haemodialysis",
    "peritoneal": "Peritoneal dialysis",
    "unknown": "On dialysis or in kidney failure; the modality is not recorded (or both are recorded)",
    "none": "Not on dialysis and not in kidney failure as far as the record shows",
}
_QUIET = {
    "no_drug": "No {drugs} ordered, on the home medication list or given in the last 2 weeks: nothing to check.",
    "nothing_to_flag": "Checked ({checked}): no card on today's data.",
    "no_calciphylaxis": "Calciphylaxis is not recorded among the conditions: the mineral review is for calciphylaxis "
    "patients (the charts below still show the results).",
    "complete": "The conditions were read in full: no check was left incomplete.",
}


@dataclass(frozen=True)
class ChartSpec:
    """One chart: its analyte (and a secondary one drawn dashed), its target band and threshold
    lines by their names in ``knowledge.thresholds``, and whether the band is a stage 5 CKD /
    dialysis target (shown, not applied, for a patient not on dialysis)."""

    key: str
    heading: str
    analyte: str
    secondary: str | None = None
    band: tuple[str | None, str | None] | None = None
    thresholds: tuple[tuple[str, str], ...] = ()  # (threshold name, short label on the chart)
    dialysis_target: bool = False
    only_with_data: bool = False
    note: str = ""


CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec(
        "calcium",
        "Calcium",
        "corrected_calcium",
        secondary="calcium",
        band=("corrected_calcium_target_low", "corrected_calcium_target_high"),
        thresholds=(
            ("corrected_calcium_high", "reduce calcium-raising therapy"),
            ("calcimimetic_hold_below", "withhold a calcimimetic"),
        ),
        note="Corrected calcium (solid) is what the rules use: albumin-corrected when an albumin was drawn within "
        "2 days, else the total calcium; total calcium as measured is dashed.",
    ),
    ChartSpec(
        "ionized_calcium",
        "Ionized calcium",
        "ionized_calcium",
        thresholds=(
            ("ionized_calcium_high", "upper reference"),
            ("ionized_calcium_low", "lower reference"),
            ("ionized_calcimimetic_hold_below", "withhold a calcimimetic"),
        ),
        only_with_data=True,
        note="Preferred by the rules to the corrected calcium when drawn with it or later.",
    ),
    ChartSpec(
        "phosphate",
        "Phosphate",
        "phosphate",
        band=("phosphate_target_low", "phosphate_target_high"),
        thresholds=(("sevelamer_high_start_phosphate", "sevelamer starts at 1600 mg"),),
        dialysis_target=True,
    ),
    ChartSpec(
        "ca_x_p",
        "Calcium x phosphate",
        "ca_x_p",
        band=(None, "ca_x_p_max"),
        dialysis_target=True,
        note="Computed from a corrected calcium and a phosphate drawn within 2 days of each other.",
    ),
    ChartSpec(
        "pth",
        "Intact PTH",
        "pth",
        band=("pth_target_low", "pth_target_high"),
        thresholds=(
            ("pth_ptx_low", "consider parathyroidectomy"),
            ("pth_avoid_below", "avoid suppressing further"),
        ),
        dialysis_target=True,
    ),
    ChartSpec(
        "albumin",
        "Albumin",
        "albumin",
        note="No target: used to correct calcium (Payne).",
    ),
    ChartSpec(
        "crp",
        "CRP",
        "crp",
        note="No target and no monitoring interval: followed for its trend; the sources disagree on its value "
        "(see the mineral review card).",
    ),
)


# --------------------------------------------------------------------------------------------
# The document
# --------------------------------------------------------------------------------------------


def _style_hash(css: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()


def csp(css: str, *, header: bool) -> str:
    """The policy: nothing but the one stylesheet (by hash) and data: images. The header adds
    ``frame-ancestors`` (a meta element may not carry it, and Chrome says so in the console)."""
    policy = (
        f"default-src 'none'; script-src 'none'; style-src '{_style_hash(css)}'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
    return policy + "; frame-ancestors 'none'" if header else policy


def document(title: str, body: Iterable[str]) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{csp(CSS, header=False)}">',
            '<meta name="referrer" content="no-referrer">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


def message_page(heading: str, message: str, *, hint: str = "") -> str:
    """An error or notice, in the page's frame (no patient data)."""
    return document(
        f"{heading} - {TITLE}",
        [
            '<header class="page-head"><div class="wrap">',
            '<p class="eyebrow">Calciphylaxis decision support · SMART app</p>',
            f"<h1>{_e(heading)}</h1></div></header>",
            '<main id="main" class="wrap message">',
            f"<p>{_e(message)}</p>",
            f'<p class="hint">{_e(hint)}</p>' if hint else "",
            "</main>",
        ],
    )


def render_page(view: ChartView, *, source_host: str, expires_at: datetime, show_banner: bool, end_url: str) -> str:
    c = content()
    sections = [
        _conclusions(view.conclusions),
        _labs(view),
        _medications(view),
        _thiosulfate(view),
        _dialysis(view),
        _cards(view.cards),
        _not_read(view),
    ]
    nav = [
        ("conclusions", "Rule conclusions"),
        ("results", "Results"),
        ("medications", "Medications"),
        ("thiosulfate", "Sodium thiosulfate"),
        ("dialysis", "Dialysis"),
        ("cards", "Cards and evidence"),
    ]
    banner = ""
    if show_banner and view.patient is not None:
        bits = [f'<span class="patient-name">{_e(view.patient.name or "Name not recorded")}</span>']
        if view.patient.birth_date:
            bits.append(f"born {_e(view.patient.birth_date)}")
        if view.patient.gender:
            bits.append(_e(view.patient.gender))
        banner = f'<p class="patient">{" · ".join(bits)}</p>'
    head = (
        '<a class="skip" href="#main">Skip to the content</a>'
        '<header class="page-head"><div class="wrap">'
        '<p class="eyebrow">Calciphylaxis decision support · companion to the cards</p>'
        f"<h1>Mineral trends and the rules' reasoning</h1>{banner}"
        '<dl class="meta">'
        f"<div><dt>As of</dt><dd>{_moment(view.now)}</dd></div>"
        f"<div><dt>Period charted</dt><dd>{_day(view.since)} to {_day(view.now)}</dd></div>"
        f"<div><dt>Data from</dt><dd>{_e(source_host)} (read only)</dd></div>"
        f"<div><dt>Session ends</dt><dd>{_moment(expires_at)}</dd></div>"
        "</dl></div></header>"
        '<nav class="wrap toc" aria-label="On this page"><ul>'
        + "".join(f'<li><a href="#{anchor}">{label}</a></li>' for anchor, label in nav)
        + "</ul></nav>"
    )
    foot = (
        '<footer class="page-foot"><div class="wrap">'
        "<p>Read only: this page changes nothing in the record and keeps nothing once the session ends. "
        "The rule conclusions are the cards the service's patient-view check gives on the data read now "
        f"(snoozes are not applied here). Card wording and evidence: {_e(c.source_label)}.</p>"
        f'<p><a href="{_e(end_url)}">End this session</a> (forgets the access token now).</p>'
        "</div></footer>"
    )
    return document(TITLE, [head, '<main id="main" class="wrap">', *sections, "</main>", foot])


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def _topic(key: str) -> str:
    return content().topics.get(key, key)


def _conclusions(conclusions: Sequence[RuleConclusion]) -> str:
    items = []
    card_number = {id(card): n for n, card in enumerate((k for r in conclusions for k in r.cards), 1)}
    for rule in conclusions:
        if rule.cards:
            lines = "".join(
                f'<li class="conclusion-card"><span class="badge badge--{card.indicator}">'
                f'<span aria-hidden="true">{_GLYPHS[card.indicator]}</span> {INDICATOR_LABELS[card.indicator]}</span> '
                f"{_e(card.summary)} "
                f'<a href="#card-{card_number[id(card)]}">Reasoning and evidence<span class="visually-hidden"> for: '
                f"{_e(card.summary)}</span></a></li>"
                for card in rule.cards
            )
            body = f'<ul class="conclusion-cards">{lines}</ul>'
        else:
            drugs = ", ".join(_class_label(cls) for cls in _rule_classes(rule.name))
            text = _QUIET[rule.quiet_reason].format(drugs=drugs or "monitored drug", checked=", ".join(rule.checked))
            body = f'<p class="quiet"><span class="badge badge--none">No card</span> {_e(text)}</p>'
        items.append(
            f'<li class="conclusion" data-rule="{_e(rule.name)}" data-cards="{len(rule.cards)}">'
            f'<h3 class="conclusion__rule"><code>{_e(rule.name.split("_")[0].upper())}</code> {_e(_topic(rule.topic))}</h3>'
            f"{body}</li>"
        )
    fired = sum(len(r.cards) for r in conclusions)
    lead = (
        f"{fired} card{'s' if fired != 1 else ''} on today's data, as the patient-view check gives them."
        if fired
        else "No card on today's data."
    )
    return (
        '<section id="conclusions" aria-labelledby="conclusions-h">'
        '<h2 id="conclusions-h">What each rule concluded today</h2>'
        f'<p class="lead">{lead}</p><ul class="conclusions">{"".join(items)}</ul></section>'
    )


def _rule_classes(name: str) -> tuple[str, ...]:
    return tuple(rule.drug_class for rule in ORDER_RULES if rule.name == name)


def _class_label(cls: str) -> str:
    return content().labels["drug_class"].get(cls) or _CLASS_LABELS.get(cls, cls.replace("_", " "))


def _labs(view: ChartView) -> str:
    figures = []
    for spec in CHARTS:
        series = view.series.get(spec.analyte) or Series(spec.analyte, ())
        if spec.only_with_data and not series.points:
            continue
        figures.append(_figure(spec, view, series))
    unusable = "".join(
        f"<li>{_e(_analyte_label(a))}: {n} result{'s' if n != 1 else ''} could not be used (unit or value not readable)</li>"
        for a, n in sorted(view.unusable.items())
    )
    applied = view.record.on_dialysis
    note = (
        ""
        if applied
        else '<p class="note">Not on dialysis or in kidney failure: the phosphate, PTH and calcium x phosphate targets '
        "are those of stage 5 CKD and dialysis, so they are drawn for reference (grey) and not applied.</p>"
    )
    return (
        '<section id="results" aria-labelledby="results-h">'
        '<h2 id="results-h">Results over the last 12 months</h2>'
        '<p class="lead">Shaded: the target the rules use. Dashed lines: thresholds where a rule acts. '
        "Triangles mark results above (point up) or below (point down) the target.</p>"
        f"{note}"
        f'<div class="charts">{"".join(figures)}</div>'
        + (f'<ul class="note">{unusable}</ul>' if unusable else "")
        + "</section>"
    )


def _analyte_label(analyte: str) -> str:
    return content().labels["analyte"].get(analyte, analyte)


def _band(spec: ChartSpec, applied: bool) -> Band | None:
    if spec.band is None:
        return None
    low_name, high_name = spec.band
    low = _THRESHOLD[low_name].value if low_name else None
    high = _THRESHOLD[high_name].value if high_name else None
    c = content()
    target = fill(c.targets[spec.analyte]) if spec.analyte in c.targets else ""
    label = f"target {target}"
    if spec.dialysis_target and not applied:
        label += " (dialysis; not applied)"
    return Band(low, high, label, applied=applied or not spec.dialysis_target)


def _figure(spec: ChartSpec, view: ChartView, series: Series) -> str:
    analyte = ANALYTES[spec.analyte]
    unit = analyte.unit
    decimals = analyte.decimals
    applied = view.record.on_dialysis
    band = _band(spec, applied)
    thresholds = [
        Threshold(_THRESHOLD[name].value, f"{_THRESHOLD[name].value:g} {short}") for name, short in spec.thresholds
    ]
    lines = [Line(_analyte_label(spec.analyte), series.points)]
    secondary = view.series.get(spec.secondary) if spec.secondary else None
    if secondary is not None:
        lines.append(Line(_analyte_label(secondary.analyte), secondary.points, primary=False))
    label = _analyte_label(spec.analyte)
    description = _describe(label, series.points, unit, decimals, band)
    chart = trend_chart(
        f"chart-{spec.key}",
        title=f"{label} over the last 12 months",
        description=description,
        unit=unit,
        decimals=decimals,
        lines=lines,
        start=view.since,
        end=view.now,
        band=band,
        thresholds=thresholds,
    )
    legend = ""
    if secondary is not None:
        legend = (
            '<p class="legend"><span class="key key--solid" aria-hidden="true"></span> '
            f"{_e(label)} <span class='key key--dashed' aria-hidden='true'></span> {_e(_analyte_label(secondary.analyte))}</p>"
        )
    threshold_notes = "".join(
        f"<li>{_THRESHOLD[name].value:g} {_e(_THRESHOLD[name].unit)}: {_e(_THRESHOLD[name].meaning)}</li>"
        for name, _ in spec.thresholds
    )
    caption = " ".join(part for part in (spec.note, description) if part)
    table = _values_table(spec, label, series.points, secondary, decimals, applied)
    return (
        f'<figure class="trend" id="{spec.key}" data-analyte="{spec.analyte}" data-points="{len(series.points)}">'
        f'<h3 class="trend__heading">{_e(spec.heading)}</h3>'
        f"{chart}{legend}"
        f"<figcaption>{_e(caption)}</figcaption>"
        + (f'<ul class="thresholds">{threshold_notes}</ul>' if threshold_notes else "")
        + table
        + "</figure>"
    )


def _status_words(point: Point, spec: ChartSpec, applied: bool) -> str:
    c = content()
    if point.status in ("low", "high", "in_range"):
        return c.status[point.status]
    if spec.dialysis_target and not applied and spec.band is not None:
        return "target not applied"
    return "no target"


def _describe(label: str, points: Sequence[Point], unit: str, decimals: int, band: Band | None) -> str:
    if not points:
        return f"{label}: no results in the last 12 months."
    values = [p.value for p in points]
    latest = points[-1]
    text = (
        f"{label}: {len(points)} result{'s' if len(points) != 1 else ''} from {_day(points[0].when)} to "
        f"{_day(latest.when)}, between {fmt(min(values), decimals)} and {fmt(max(values), decimals)} {unit}; latest "
        f"{latest.comparator or ''}{fmt(latest.value, decimals)} {unit} on {_day(latest.when)}"
    )
    if band is not None and band.applied:
        out = sum(1 for p in points if p.status in ("low", "high"))
        text += f"; {out} of {len(points)} outside the {band.label.removeprefix('target ')} target"
        if latest.status in ("low", "high"):
            text += f", the latest {content().status[latest.status]}"
    return text + "."


def _values_table(
    spec: ChartSpec, label: str, points: Sequence[Point], secondary: Series | None, decimals: int, applied: bool
) -> str:
    rows = [(p, label) for p in points]
    if secondary is not None:
        rows += [(p, _analyte_label(secondary.analyte)) for p in secondary.points]
    rows.sort(key=lambda r: r[0].when, reverse=True)
    body = "".join(
        f'<tr><th scope="row">{_day(p.when)}</th><td>{_e(name)}</td>'
        f'<td class="num">{_e((p.comparator or "") + fmt(p.value, decimals))} {_e(p.unit)}</td>'
        f"<td>{_e(_status_words(p, spec, applied) if name == label else 'as measured')}</td>"
        f"<td>{_e(_how(p))}</td><td><code>{_e(', '.join(p.sources))}</code></td></tr>"
        for p, name in rows
    )
    if not body:
        body = '<tr><td colspan="6" class="empty">No results in the last 12 months.</td></tr>'
    return (
        f"<details><summary>{_e(label)}: the values ({len(rows)})</summary>"
        f'<div class="table-wrap"><table><caption>{_e(spec.heading)}, newest first</caption>'
        '<thead><tr><th scope="col">Date</th><th scope="col">Test</th><th scope="col" class="num">Value</th>'
        '<th scope="col">Against target</th><th scope="col">How obtained</th><th scope="col">Source</th></tr></thead>'
        f"<tbody>{body}</tbody></table></div></details>"
    )


def _how(point: Point) -> str:
    method = content().labels["method"].get(point.method, point.method)
    return f"{method}: {point.note}" if point.note else method


def _medications(view: ChartView) -> str:
    rows: dict[tuple[str, str], list[TimelineItem]] = {}
    for item in view.timeline:
        rows.setdefault((item.drug_class, item.drug.lower()), []).append(item)
    chart_rows = []
    for (drug_class, _), items in rows.items():
        group = (
            "thiosulfate"
            if drug_class == "sodium_thiosulfate"
            else ("substitute" if drug_class in SUBSTITUTE_CLASSES else "trigger")
        )
        chart_rows.append((items[0].drug, group, items))
    triggers = sum(1 for _, g, _ in chart_rows if g == "trigger")
    description = (
        f"{len(chart_rows)} drug{'s' if len(chart_rows) != 1 else ''} over the last 12 months: {triggers} that the rules "
        f"watch and {len(chart_rows) - triggers} substitute{'s' if len(chart_rows) - triggers != 1 else ''}; "
        "each order, home-list entry and dose given is listed in the table below."
    )
    chart = timeline_chart(
        "chart-medications",
        title="Medication timeline: watched drugs and their substitutes",
        description=description,
        rows=chart_rows,
        start=view.since,
        end=view.now,
    )
    table_rows = "".join(
        f'<tr data-class="{_e(i.drug_class)}" data-kind="{_e(i.kind)}"><th scope="row">{_e(i.drug)}</th>'
        f"<td>{_e(_class_label(i.drug_class))}</td><td>{_e(_KIND_LABELS[i.kind])}</td><td>{_e(i.status)}</td>"
        f"<td>{_day(i.start) if i.start else 'not recorded'}</td><td>{_e(_end_words(i))}</td>"
        f"<td>{_e(i.dose)}</td><td><code>{_e(i.resource_id)}</code></td></tr>"
        for i in sorted(view.timeline, key=lambda i: (i.drug_class, i.drug.lower(), i.start or view.since))
    )
    if not table_rows:
        table_rows = '<tr><td colspan="8" class="empty">None in the last 12 months.</td></tr>'
    legend = (
        '<ul class="legend tl-legend">'
        '<li><span class="key key--trigger" aria-hidden="true"></span> watched drug (order)</li>'
        '<li><span class="key key--substitute" aria-hidden="true"></span> substitute (order)</li>'
        '<li><span class="key key--thiosulfate" aria-hidden="true"></span> sodium thiosulfate</li>'
        '<li><span class="key key--hatched" aria-hidden="true"></span> home medication list (hatched)</li>'
        '<li><span class="key key--dose" aria-hidden="true"></span> dose given (diamond)</li>'
        '<li><span class="key key--arrow" aria-hidden="true"></span> still active today (arrow)</li>'
        "</ul>"
    )
    return (
        '<section id="medications" aria-labelledby="medications-h">'
        '<h2 id="medications-h">Medications: the drugs the rules watch and their substitutes</h2>'
        '<p class="lead">Orders (any status), the home medication list and the doses given, e.g. at dialysis. '
        "A bar runs from the start to the end the order or entry states; one stopped without an end date is a short "
        "open bar.</p>"
        f'<figure class="timeline-figure">{chart}{legend}<figcaption>{_e(description)}</figcaption>'
        "<details><summary>Medications: every entry</summary>"
        '<div class="table-wrap"><table><caption>Watched drugs and substitutes, by drug</caption>'
        '<thead><tr><th scope="col">Drug</th><th scope="col">Class</th><th scope="col">Source</th>'
        '<th scope="col">Status</th><th scope="col">Start or given</th><th scope="col">End</th>'
        '<th scope="col">Dose</th><th scope="col">Record</th></tr></thead>'
        f"<tbody>{table_rows}</tbody></table></div></details></figure></section>"
    )


def _end_words(item: TimelineItem) -> str:
    if item.kind == "administration":
        return ""
    if item.ongoing:
        return "ongoing"
    if item.end is not None:
        return f"{_day(item.end)} ({item.end_field})" if item.end_field else _day(item.end)
    return "not recorded"


def _thiosulfate(view: ChartView) -> str:
    items = view.thiosulfate
    given = sorted((i for i in items if i.kind == "administration" and i.start), key=lambda i: i.start or view.now)
    orders = [i for i in items if i.kind != "administration"]
    recent = [i for i in given if i.start and (view.now - i.start).days <= 28]
    if not items:
        text = "No sodium thiosulfate ordered, on the home medication list or given in the last 12 months."
        body = f'<p class="quiet">{_e(text)}</p>'
    else:
        facts = [
            f"{len(given)} dose{'s' if len(given) != 1 else ''} given in the last 12 months"
            + (f", {len(recent)} in the last 4 weeks" if given else ""),
        ]
        if given:
            facts.append(
                f"first {_day(given[0].start)}, latest {_day(given[-1].start)}"
                if given[0].start and given[-1].start
                else ""
            )
        active = [i for i in orders if i.ongoing]
        facts.append(
            f"{len(active)} active order{'s' if len(active) != 1 else ''}" if orders else "no order in the record"
        )
        rows = "".join(
            f'<tr><th scope="row">{_day(i.start) if i.start else ""}</th><td>{_e(i.dose or "dose not recorded")}</td>'
            f"<td>{_e(i.status)}</td><td><code>{_e(i.resource_id)}</code></td></tr>"
            for i in reversed(given)
        )
        body = "<p>" + _e("; ".join(f for f in facts if f)) + ".</p>"
        if rows:
            body += (
                f"<details><summary>Sodium thiosulfate: every dose given ({len(given)})</summary>"
                '<div class="table-wrap"><table class="compact"><caption>Doses given, newest first</caption>'
                '<thead><tr><th scope="col">Given</th><th scope="col">Dose</th><th scope="col">Status</th>'
                f'<th scope="col">Record</th></tr></thead><tbody>{rows}</tbody></table></div></details>'
            )
    return (
        '<section id="thiosulfate" aria-labelledby="thiosulfate-h">'
        '<h2 id="thiosulfate-h">Sodium thiosulfate sessions</h2>'
        f'{body}<p class="note">Its doses are also marked on the medication timeline above.</p></section>'
    )


def _dialysis(view: ChartView) -> str:
    modality = view.modality
    facts = list(modality.haemodialysis) + list(modality.peritoneal) + list(modality.unspecified)
    c = content()
    rows = "".join(
        f"<li>{_e(c.labels['condition'].get(f.kind, f.kind))}: {_e(f.display)} "
        f"(<code>{_e(f.resource_id)}</code>{', recorded ' + _day(f.recorded) if f.recorded else ''})</li>"
        for f in facts
    )
    return (
        '<section id="dialysis" aria-labelledby="dialysis-h">'
        '<h2 id="dialysis-h">Dialysis modality</h2>'
        f'<p class="modality" data-modality="{modality.modality}"><strong>{_e(_MODALITY_TEXT[modality.modality])}</strong></p>'
        + (f"<p>Read from:</p><ul>{rows}</ul>" if rows else "")
        + '<p class="note">The sodium thiosulfate regimen the mineral review offers is given during haemodialysis, '
        "so its one-click order needs haemodialysis recorded.</p></section>"
    )


def _cards(cards: Sequence[Card]) -> str:
    if not cards:
        return (
            '<section id="cards" aria-labelledby="cards-h"><h2 id="cards-h">Cards and their evidence</h2>'
            '<p class="quiet">No card on today\'s data.</p></section>'
        )
    articles = []
    for n, card in enumerate(cards, 1):
        ind = card.indicator
        links = "".join(
            f'<li><a href="{_e(link.url)}" rel="{LINK_REL}" target="_blank">{_e(link.label)}</a></li>'
            for link in card.links or []
            if link.type == "absolute" and is_safe_url(link.url)
        )
        articles.append(
            f'<article class="card card--{ind}" id="card-{n}" data-rule="{_e(card.rule_id or "")}" '
            f'aria-labelledby="card-{n}-summary">'
            f'<div class="card__head"><span class="badge badge--{ind}"><span aria-hidden="true">{_GLYPHS[ind]}</span> '
            f"{INDICATOR_LABELS[ind]}</span>"
            f'<h3 class="card__summary" id="card-{n}-summary">{_e(card.summary)}</h3></div>'
            f'<p class="card__source">Rule <code>{_e(card.rule_id or "")}</code></p>'
            + (f'<div class="card__detail">{render_markdown(card.detail)}</div>' if card.detail else "")
            + (f'<h4>Links</h4><ul class="links">{links}</ul>' if links else "")
            + "</article>"
        )
    return (
        '<section id="cards" aria-labelledby="cards-h"><h2 id="cards-h">Cards and their evidence</h2>'
        '<p class="lead">Each card as the EHR receives it: why, the data used, what was checked, what could not be '
        "checked, where sources disagree, and the evidence.</p>" + "".join(articles) + "</section>"
    )


def _not_read(view: ChartView) -> str:
    problems = [(k, v, "not read") for k, v in view.unavailable.items()] + [
        (k, v, "read in part") for k, v in view.incomplete.items() if k not in view.unavailable
    ]
    if not problems:
        return ""
    items = "".join(
        f"<li>{_e(view.descriptions.get(key, key))}: {what} ({_e(why)})</li>" for key, why, what in sorted(problems)
    )
    return (
        '<section id="not-read" aria-labelledby="not-read-h"><h2 id="not-read-h">What could not be read</h2>'
        f'<ul class="note">{items}</ul></section>'
    )


def _day(when: datetime) -> str:
    return when.date().isoformat()


def _moment(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


CSS = """
:root{--ink:#101828;--text:#1d2939;--muted:#475467;--line:#d0d5dd;--soft:#f2f4f7;--bg:#f5f7fa;--accent:#0b4a8b;
--critical:#b42318;--warning:#fdb022;--warning-ink:#3d2300;--info:#175cd3;--ok:#067647;--band:#dcfae6;
--trigger:#c4320a;--substitute:#1849a9;--thiosulfate:#087443}
*{box-sizing:border-box}
html{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",Arial,sans-serif;color:var(--text);
background:var(--bg);line-height:1.45;font-size:15px}
body{margin:0}
.wrap{max-width:1220px;margin:0 auto;padding:0 20px}
a{color:var(--accent)}
a:focus-visible,summary:focus-visible{outline:3px solid #f79009;outline-offset:2px;border-radius:2px}
.skip{position:absolute;left:8px;top:-40px;background:#fff;color:var(--accent);padding:6px 10px;border-radius:4px;
z-index:2}
.skip:focus{top:8px}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.page-head{background:#0b2545;color:#fff;padding:16px 0 14px}
.page-head h1{color:#fff;font-size:1.5rem;margin:.1rem 0 .3rem}
.eyebrow{margin:0;color:#c7d7ee;font-size:.8rem;letter-spacing:.06em;text-transform:uppercase}
.patient{margin:.2rem 0 .5rem;font-size:1.05rem;color:#fff}
.patient-name{font-weight:700}
.meta{display:flex;flex-wrap:wrap;gap:4px 28px;margin:0}
.meta dt{font-size:.72rem;color:#c7d7ee;text-transform:uppercase;letter-spacing:.05em}
.meta dd{margin:0;font-weight:600}
.toc ul{list-style:none;display:flex;flex-wrap:wrap;gap:4px 18px;margin:10px 0 0;padding:8px 0;
border-bottom:1px solid var(--line)}
main{padding-bottom:24px}
section{margin-top:26px}
h2{font-size:1.25rem;color:var(--ink);margin:0 0 .6rem;padding-bottom:.3rem;border-bottom:2px solid var(--line)}
h3{font-size:1.02rem;color:var(--ink);margin:0 0 .35rem}
h4{font-size:.9rem;margin:.6rem 0 .3rem;color:var(--muted)}
code{font-family:ui-monospace,"DejaVu Sans Mono","Liberation Mono",Menlo,monospace;font-size:.86em}
.lead{color:var(--muted);margin:.2rem 0 .8rem}
.note{color:var(--muted);font-size:.9rem}
.quiet{color:var(--text);margin:.2rem 0}
.message{padding-top:20px}.message p{font-size:1.05rem}.hint{color:var(--muted)}
.conclusions{list-style:none;margin:0;padding:0;display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));
gap:10px}
.conclusion{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.conclusion__rule code{background:var(--soft);padding:0 4px;border-radius:3px}
.conclusion-cards{list-style:none;margin:0;padding:0}
.conclusion-card{margin:4px 0}
.badge{display:inline-block;border-radius:4px;padding:1px 8px;font-size:.76rem;font-weight:700;letter-spacing:.03em;
text-transform:uppercase;vertical-align:1px}
.badge--critical{background:var(--critical);color:#fff}
.badge--warning{background:var(--warning);color:var(--warning-ink)}
.badge--info{background:var(--info);color:#fff}
.badge--none{background:var(--soft);color:var(--muted);border:1px solid var(--line)}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:14px}
@media (max-width:520px){.charts{grid-template-columns:1fr}}
figure{margin:0}
.trend,.timeline-figure{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 14px}
svg.chart{display:block;width:100%;height:auto;font-family:inherit}
figcaption{font-size:.88rem;color:var(--muted);margin-top:4px}
.thresholds{margin:.3rem 0 0;padding-left:1.1rem;font-size:.86rem;color:var(--text)}
.grid{stroke:#eaecf0;stroke-width:1}
.axis{fill:#475467;font-size:11px}
.axis-line,.tick{stroke:#667085;stroke-width:1}
.band{fill:var(--band)}
.band--reference{fill:#f2f4f7}
.band-label{fill:#05603a;font-size:11px;font-weight:600}
.halo{paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}
.band--reference+.band-label{fill:#475467}
.threshold{stroke:#b42318;stroke-width:1.3;stroke-dasharray:5 4}
.threshold-label{fill:#912018;font-size:10.5px}
.line{fill:none;stroke:#0b4a8b;stroke-width:2}
.series--secondary .line{stroke:#667085;stroke-width:1.5;stroke-dasharray:4 3}
.pt{stroke:#fff;stroke-width:1.2}
.pt--none,.pt--in_range{fill:#0b4a8b}
.pt--high,.pt--low{fill:#b42318}
.pt--secondary{fill:#fff;stroke:#667085;stroke-width:1.5}
.value-label{fill:#101828;font-size:12px;font-weight:700}
.empty-label{fill:#475467;font-size:13px}
.legend{font-size:.86rem;color:var(--muted);margin:.3rem 0 0}
.key{display:inline-block;width:22px;height:0;border-top:3px solid #0b4a8b;vertical-align:4px;margin:0 4px 0 8px}
.key--dashed{border-top:2px dashed #667085}
.tl-legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:2px 16px}
.key--trigger,.key--substitute,.key--thiosulfate,.key--hatched{height:10px;border:0;vertical-align:-1px}
.key--trigger{background:var(--trigger)}.key--substitute{background:var(--substitute)}
.key--thiosulfate{background:var(--thiosulfate)}
.key--hatched{background:repeating-linear-gradient(45deg,#1849a9 0 2px,#fff 2px 5px);border:1px solid #1849a9}
.key--dose{width:10px;height:10px;border:0;background:#475467;transform:rotate(45deg);vertical-align:0}
.key--arrow{width:0;height:0;border-top:6px solid transparent;border-bottom:6px solid transparent;
border-left:9px solid #475467;vertical-align:-2px}
.tl-label{fill:#101828;font-size:12.5px}
.row-shade{fill:#f9fafb}
.today{stroke:#101828;stroke-width:1;stroke-dasharray:2 2}
.tl-bar--trigger{fill:var(--trigger)}.tl-bar--substitute{fill:var(--substitute)}
.tl-bar--thiosulfate{fill:var(--thiosulfate)}
.tl-bar--statement{fill:url(#hatch);stroke-width:1.5}
.tl-bar--statement.tl-bar--trigger{stroke:var(--trigger)}
.tl-bar--statement.tl-bar--substitute{stroke:var(--substitute)}
.tl-bar--statement.tl-bar--thiosulfate{stroke:var(--thiosulfate)}
.hatch-bg{fill:#fff}.hatch-line{stroke:#344054;stroke-width:2.5}
.tl-bar--open{opacity:.55}
.tl-dose--trigger{fill:var(--trigger)}.tl-dose--substitute{fill:var(--substitute)}
.tl-dose--thiosulfate{fill:var(--thiosulfate)}
.tl-arrow--trigger{fill:var(--trigger)}.tl-arrow--substitute{fill:var(--substitute)}
.tl-arrow--thiosulfate{fill:var(--thiosulfate)}
.tl-before{fill:none;stroke:#101828;stroke-width:1.5}
details{margin-top:8px}
summary{cursor:pointer;color:var(--accent);font-size:.92rem}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;background:#fff;width:100%;font-size:.88rem;margin-top:6px}
caption{text-align:left;color:var(--muted);font-size:.85rem;padding:0 0 4px}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:var(--soft);font-size:.78rem;text-transform:uppercase;letter-spacing:.03em;color:#344054}
.num{text-align:right;font-variant-numeric:tabular-nums}
table.compact{width:auto;min-width:50%}
.empty{color:var(--muted);font-style:italic}
.modality{font-size:1.05rem}
.card{background:#fff;border:1px solid var(--line);border-left:8px solid var(--info);border-radius:8px;
padding:12px 16px;margin:0 0 14px}
.card--critical{border-left-color:var(--critical)}.card--warning{border-left-color:var(--warning)}
.card__head{display:flex;gap:10px;align-items:flex-start}
.card__summary{margin:0;font-size:1.05rem}
.card__source{color:var(--muted);font-size:.85rem;margin:.3rem 0}
.card__detail{font-size:.94rem}
.card__detail p{margin:.45rem 0}
.card__detail ul{margin:.3rem 0;padding-left:1.3rem}
.card__detail table{width:auto;min-width:60%}
.card__detail th,.card__detail td{border:1px solid var(--line)}
.links{margin:0;padding-left:1.2rem}
.page-foot{margin-top:30px;background:#fff;border-top:1px solid var(--line);padding:10px 0 20px;font-size:.9rem;
color:var(--muted)}
@media print{.page-head{background:none;color:var(--ink)}.page-head h1,.patient,.meta dd{color:var(--ink)}
details{display:block}.toc,.skip{display:none}}
"""

HEADER_CSP = csp(CSS, header=True)
