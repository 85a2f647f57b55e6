"""The governance report: one self-contained HTML page for the hospital's CDS committee.

Per rule: cards served, accepted, overridden and ignored, in total and week by week (stacked
bars), the acceptance and override rates, the override reasons given (bars) and the suggestions
taken; then the snoozes in force and the feedback on cards this service has no record of serving.

The page fetches nothing and runs no script: the charts are inline SVG (``charts.py``), the style
is inline, and a Content-Security-Policy forbids everything else, so it can be mailed, archived
or opened offline. It holds counts and labels only: nothing on it identifies a patient. Every
text taken from the data is escaped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime

from cds_service.governance.charts import OUTCOME_COLOURS, reasons_chart, weekly_outcomes_chart
from cds_service.governance.model import (
    GovernanceData,
    IsoWeek,
    Outcomes,
    RuleIndicatorStats,
    total,
)
from cds_service.pages import escape as _e
from cds_service.pages import html_page

TITLE = "Calciphylaxis decision support: CDS governance report"

# The page may use its own inline style and nothing else: no script, no fetch, no form.


def render_report(data: GovernanceData, *, generated_at: datetime, site: str | None = None) -> str:
    """The report as one HTML page (a complete document, UTF-8)."""
    weeks = data.weeks()
    rule_ids = data.rule_ids()
    anchors = {rule_id: f"rule-{n}" for n, rule_id in enumerate(rule_ids, 1)}
    body = [
        _header(data, weeks, generated_at, site),
        "<main>",
        _key_figures(data),
        _summary_table(data, rule_ids, anchors),
        _rule_sections(data, rule_ids, anchors, weeks),
        _snoozes(data),
        _unserved(data),
        "</main>",
        _footer(generated_at),
    ]
    return html_page(TITLE + (f" ({site})" if site else ""), _CSS, body)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def _header(data: GovernanceData, weeks: list[IsoWeek], generated_at: datetime, site: str | None) -> str:
    facts = []
    if site:
        facts.append(("Site", _e(site)))
    if weeks:
        first, last = weeks[0], weeks[-1]
        period = (
            f"{_e(first)} to {_e(last)} ({_day(first.monday)} to {_day(last.sunday)}, "
            f"{len(weeks)} week{'s' if len(weeks) != 1 else ''})"
        )
    else:
        period = "no cards served yet"
    facts.append(("Cards served", period))
    facts.append(("Generated", _e(_moment(generated_at))))
    facts.append(("Snoozing", "on" if data.snoozing_enabled else "turned off for this site"))
    items = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
    return (
        '<header class="page-head"><div class="wrap">'
        '<p class="eyebrow">Calciphylaxis decision support · CDS Hooks service</p>'
        "<h1>CDS governance report</h1>"
        f'<dl class="meta">{items}</dl>'
        "</div></header>"
    )


def _key_figures(data: GovernanceData) -> str:
    overall = data.outcomes()
    tiles = [
        ("served", "Cards served", str(overall.served), "all rules"),
        ("accepted", "Accepted", str(overall.accepted), _of_served(overall.accepted, overall.served)),
        ("overridden", "Overridden", str(overall.overridden), _of_served(overall.overridden, overall.served)),
        ("ignored", "No feedback", str(overall.ignored), _of_served(overall.ignored, overall.served)),
        (
            "snoozes",
            "Active snoozes",
            str(sum(s.count for s in data.snoozes)),
            "snoozing on" if data.snoozing_enabled else "snoozing off",
        ),
    ]
    cells = "".join(
        f'<li class="tile tile--{key}"><span class="tile__label">{label}</span>'
        f'<span class="tile__value">{value}</span><span class="tile__note">{note}</span></li>'
        for key, label, value, note in tiles
    )
    return (
        '<section class="wrap" aria-labelledby="overview-h">'
        '<h2 id="overview-h">Overview</h2>'
        f'<ul class="tiles">{cells}</ul>'
        + (
            ""
            if overall.served or data.unserved_feedback.total
            else '<p class="empty">No cards served and no feedback recorded yet.</p>'
        )
        + "</section>"
    )


def _summary_table(data: GovernanceData, rule_ids: list[str], anchors: Mapping[str, str]) -> str:
    head = (
        "<thead><tr>"
        '<th scope="col">Rule</th><th scope="col">Indicator</th>'
        '<th scope="col" class="num">Served</th><th scope="col" class="num">Accepted</th>'
        '<th scope="col" class="num">Overridden</th><th scope="col" class="num">Ignored</th>'
        '<th scope="col">Acceptance rate</th><th scope="col">Override rate</th>'
        "</tr></thead>"
    )
    groups = []
    for rule_id in rule_ids:
        entries = data.for_rule(rule_id)
        rows = [(_badge(e.indicator), e.outcomes, "") for e in entries]
        if len(entries) > 1:
            rows.append(("all indicators", total(e.outcomes for e in entries), ' class="subtotal"'))
        title = data.rule_titles.get(rule_id)
        rule_cell = (
            f'<th scope="rowgroup" rowspan="{len(rows)}" class="rule-cell">'
            f'<a href="#{anchors[rule_id]}"><code>{_e(rule_id)}</code></a>'
            + (f'<span class="rule-title">{_e(title)}</span>' if title else "")
            + "</th>"
        )
        lines = []
        for n, (indicator, outcomes, attrs) in enumerate(rows):
            lines.append(f"<tr{attrs}>{rule_cell if n == 0 else ''}<td>{indicator}</td>{_outcome_cells(outcomes)}</tr>")
        groups.append(f'<tbody data-rule="{_e(rule_id)}">' + "".join(lines) + "</tbody>")
    if not groups:
        body = '<tbody><tr><td colspan="8" class="empty">No cards served yet.</td></tr></tbody>'
        foot = ""
    else:
        body = "".join(groups)
        foot = f'<tfoot><tr><th scope="row" colspan="2">All rules</th>{_outcome_cells(data.outcomes())}</tr></tfoot>'
    return (
        '<section class="wrap" aria-labelledby="summary-h">'
        '<h2 id="summary-h">Summary per rule</h2>'
        '<div class="table-wrap">'
        f'<table class="summary"><caption>Cards served per rule and indicator, and what became of them '
        f"(rates over cards served)</caption>{head}{body}{foot}</table>"
        "</div></section>"
    )


def _outcome_cells(o: Outcomes) -> str:
    return (
        f'<td class="num">{o.served}</td><td class="num">{o.accepted}</td>'
        f'<td class="num">{o.overridden}</td><td class="num">{o.ignored}</td>'
        f"<td>{_rate_bar(o.acceptance_rate, 'accepted')}</td><td>{_rate_bar(o.override_rate, 'overridden')}</td>"
    )


def _rule_sections(data: GovernanceData, rule_ids: list[str], anchors: Mapping[str, str], weeks: list[IsoWeek]) -> str:
    if not rule_ids:
        return ""
    sections = [_rule_section(data, rule_id, anchors[rule_id], weeks) for rule_id in rule_ids]
    return (
        '<section class="wrap" aria-labelledby="rules-h">'
        '<h2 id="rules-h">Each rule, week by week</h2>' + "".join(sections) + "</section>"
    )


def _rule_section(data: GovernanceData, rule_id: str, anchor: str, weeks: list[IsoWeek]) -> str:
    entries = data.for_rule(rule_id)
    overall = total(e.outcomes for e in entries)
    per_week = _per_week(entries)
    title = data.rule_titles.get(rule_id)
    indicators = ", ".join(f"{e.indicator} {e.outcomes.served}" for e in entries)
    heading = (
        f'<h3 id="{anchor}-h"><code>{_e(rule_id)}</code>'
        + (f' <span class="rule-title">{_e(title)}</span>' if title else "")
        + "</h3>"
    )
    figures = (
        f'<p class="rule-figures">Served <strong>{overall.served}</strong> '
        f"({_e(indicators)}) · accepted <strong>{overall.accepted}</strong> ({_pct(overall.acceptance_rate)}) · "
        f"overridden <strong>{overall.overridden}</strong> ({_pct(overall.override_rate)}) · "
        f"no feedback <strong>{overall.ignored}</strong></p>"
    )
    weekly = (
        '<figure class="chart" data-chart="weekly">'
        + weekly_outcomes_chart(
            weeks, per_week, label=f"Cards served per week for rule {rule_id}, by outcome", chart_id=f"{anchor}-weekly"
        )
        + "<figcaption>Cards served per ISO week, by what became of them; each bar's height is the cards "
        "served that week.</figcaption>" + _week_table(weeks, per_week) + "</figure>"
    )
    reasons = _merge(e.override_reasons for e in entries)
    if reasons:
        reason_block = (
            '<figure class="chart" data-chart="reasons">'
            + reasons_chart(reasons, label=f"Override reasons for rule {rule_id}", chart_id=f"{anchor}-reasons")
            + "<figcaption>Overridden cards per override reason (the latest feedback on each card).</figcaption>"
            "</figure>"
        )
    else:
        reason_block = '<p class="empty">No overrides recorded.</p>'
    taken = _merge(e.suggestions_taken for e in entries)
    if taken:
        rows = "".join(
            f'<tr><td>{_e(label)}</td><td class="num">{n}</td></tr>'
            for label, n in sorted(taken.items(), key=lambda kv: (-kv[1], kv[0]))
        )
        taken_block = (
            f'<table class="compact suggestions-taken" aria-labelledby="{anchor}-taken">'
            '<thead><tr><th scope="col">Suggestion</th><th scope="col" class="num">Cards</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>"
        )
    else:
        taken_block = '<p class="empty">No suggestion taken.</p>'
    return (
        f'<section class="rule" id="{anchor}" data-rule="{_e(rule_id)}" aria-labelledby="{anchor}-h">'
        f"{heading}{figures}"
        f'<div class="rule-grid"><div><h4>Outcomes per week</h4>{weekly}</div>'
        f'<div><h4 id="{anchor}-taken">Suggestions taken</h4>{taken_block}</div></div>'
        f"<h4>Override reasons</h4>{reason_block}"
        "</section>"
    )


def _week_table(weeks: list[IsoWeek], per_week: Mapping[IsoWeek, Outcomes]) -> str:
    rows = "".join(
        f'<tr><th scope="row">{_e(w)}</th><td>{_day(w.monday)}</td>'
        f'<td class="num">{o.served}</td><td class="num">{o.accepted}</td>'
        f'<td class="num">{o.overridden}</td><td class="num">{o.ignored}</td></tr>'
        for w in weeks
        for o in [per_week.get(w, Outcomes())]
    )
    return (
        "<details><summary>Weekly numbers</summary>"
        '<table class="compact"><thead><tr><th scope="col">Week</th><th scope="col">From</th>'
        '<th scope="col" class="num">Served</th><th scope="col" class="num">Accepted</th>'
        '<th scope="col" class="num">Overridden</th><th scope="col" class="num">Ignored</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></details>"
    )


def _snoozes(data: GovernanceData) -> str:
    if not data.snoozing_enabled and not data.snoozes:
        content = '<p class="empty">Snoozing is turned off for this site: overrides never suppress a card.</p>'
    elif not data.snoozes:
        content = '<p class="empty">No snooze in force.</p>'
    else:
        rows = "".join(
            f'<tr><td><code>{_e(s.rule_id)}</code></td><td>{_e(s.ingredient)}</td><td class="num">{s.count}</td>'
            f"<td>{_day(s.earliest_end)}</td><td>{_day(s.latest_end)}</td></tr>"
            for s in sorted(data.snoozes, key=lambda s: (s.rule_id, s.ingredient))
        )
        content = (
            '<div class="table-wrap"><table class="snoozes"><caption>Cards suppressed after an override with a '
            "snoozing reason, per rule and drug ingredient (patients are counted, never named)</caption>"
            '<thead><tr><th scope="col">Rule</th><th scope="col">Ingredient</th>'
            '<th scope="col" class="num">Patients snoozed</th><th scope="col">Earliest end</th>'
            f'<th scope="col">Latest end</th></tr></thead><tbody>{rows}</tbody></table></div>'
        )
    return (
        f'<section class="wrap" aria-labelledby="snoozes-h"><h2 id="snoozes-h">Active snoozes</h2>{content}</section>'
    )


def _unserved(data: GovernanceData) -> str:
    u = data.unserved_feedback
    if not u.total:
        content = '<p class="empty">None: every feedback received was for a card this service served.</p>'
    else:
        reasons = "".join(
            f'<tr><td>{_e(reason)}</td><td class="num">{n}</td></tr>'
            for reason, n in sorted(u.override_reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        )
        content = (
            f"<p>{u.total} feedback item{'s' if u.total != 1 else ''} ({u.accepted} accepted, {u.overridden} "
            "overridden) named a card this service has no record of serving to the sender: never served by it, "
            "served to another EHR or tenant or by another of its services, or before its served-card log began "
            "(or purged by retention). They are counted under no rule.</p>"
            + (
                '<table class="compact"><caption>Override reasons given</caption><thead><tr>'
                '<th scope="col">Reason</th><th scope="col" class="num">Cards</th></tr></thead>'
                f"<tbody>{reasons}</tbody></table>"
                if reasons
                else ""
            )
        )
    return (
        '<section class="wrap" aria-labelledby="unserved-h">'
        f'<h2 id="unserved-h">Feedback on cards not in the served-card log</h2>{content}</section>'
    )


def _footer(generated_at: datetime) -> str:
    colours = OUTCOME_COLOURS
    return f"""<footer class="page-foot"><div class="wrap">
<h2>How to read this report</h2>
<dl class="howto">
<div><dt><span class="swatch" style="background:{colours["accepted"]}"></span>Accepted</dt>
<dd>The clinician took one of the card's suggestions (for example the safer substitute order).</dd></div>
<div><dt><span class="swatch" style="background:{colours["overridden"]}"></span>Overridden</dt>
<dd>The clinician dismissed the card; the reason chosen, if any, is counted under Override reasons, in this
service's own words for the reason code (a reason the card did not offer is counted as such; text the EHR sent
is never shown).</dd></div>
<div><dt><span class="swatch" style="background:{colours["ignored"]}"></span>Ignored (no feedback)</dt>
<dd>The card was served and no feedback came back: the EHR sends none, the card was closed without a decision,
or the decision has not arrived yet (recent weeks fill in over time).</dd></div>
<div><dt>Weeks</dt><dd>ISO weeks, Monday to Sunday, in UTC. A card counts in the week it was served, with the
outcome of its latest feedback, so each bar adds up to the cards served that week.</dd></div>
<div><dt>Rates</dt><dd>Acceptance and override rates are over the cards served. A rule that is mostly overridden
is a candidate for review of its wording, thresholds or indicator; a rule mostly ignored may not be reaching the
clinician at the right moment.</dd></div>
<div><dt>Snoozes</dt><dd>Some override reasons suppress a card for one patient, rule and drug for a set time.
The table counts those in force; it names no patient.</dd></div>
</dl>
<p class="privacy">This page holds counts and labels only: no patient identifier, name, date of birth or
clinician comment is stored in it. Generated {_e(_moment(generated_at))} by the calciphylaxis CDS service;
it loads nothing from the network and runs no script (charts drawn with pygal).</p>
</div></footer>"""


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _of_served(part: int, served: int) -> str:
    return f"{_pct(part / served)} of served" if served else "&nbsp;"


def _pct(rate: float | None) -> str:
    if rate is None:
        return "–"
    if 0 < rate < 0.005:
        return "&lt;1%"
    return f"{rate:.0%}"


def _rate_bar(rate: float | None, kind: str) -> str:
    if rate is None:
        return '<span class="rate rate--none">–</span>'
    width = round(rate * 100)
    return (
        f'<span class="rate"><span class="rate__track" aria-hidden="true">'
        f'<span class="rate__bar rate__bar--{kind}" style="width:{width}%"></span></span>'
        f'<span class="rate__value">{_pct(rate)}</span></span>'
    )


def _badge(indicator: str) -> str:
    return f'<span class="badge badge--{_e(indicator)}">{_e(indicator.capitalize())}</span>'


def _per_week(entries: Iterable[RuleIndicatorStats]) -> dict[IsoWeek, Outcomes]:
    per_week: dict[IsoWeek, Outcomes] = defaultdict(Outcomes)
    for entry in entries:
        for w in entry.weeks:
            per_week[w.week] = per_week[w.week] + w.outcomes
    return per_week


def _merge(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = defaultdict(int)
    for mapping in counts:
        for key, n in mapping.items():
            merged[key] += n
    return dict(merged)


def _day(moment: date | datetime) -> str:
    if isinstance(moment, datetime):
        moment = (moment.astimezone(UTC) if moment.tzinfo else moment).date()
    return moment.strftime("%d %b %Y").lstrip("0")


def _moment(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


_CSS = """
:root{--ink:#101828;--text:#1d2939;--muted:#475467;--line:#d0d5dd;--soft:#f2f4f7;--bg:#f8f9fb;
--accent:#0b4a8b;--critical:#b42318;--warning-bg:#fdb022;--warning-ink:#3d2300;--info:#175cd3;
--accepted:#0072B2;--overridden:#D55E00;--ignored:#A3ABB8}
*{box-sizing:border-box}
html{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",Arial,sans-serif;color:var(--text);
background:var(--bg);line-height:1.45;font-size:15px}
body{margin:0}
.wrap{max-width:1160px;margin:0 auto;padding:0 24px}
main>.wrap{margin-top:36px}
h1,h2,h3,h4{color:var(--ink);line-height:1.25}
h1{font-size:1.75rem;margin:.15rem 0 .75rem}
h2{font-size:1.3rem;margin:0 0 .75rem;padding-bottom:.35rem;border-bottom:2px solid var(--line)}
h3{font-size:1.1rem;margin:0 0 .35rem}
h4{font-size:.95rem;margin:.25rem 0 .5rem;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
code{font-family:ui-monospace,"DejaVu Sans Mono","Liberation Mono",Menlo,monospace;font-size:.92em}
a{color:var(--accent)}
.page-head{background:#0b2545;color:#fff;padding:22px 0 18px}
.page-head h1{color:#fff}
.eyebrow{margin:0;color:#c7d7ee;font-size:.85rem;letter-spacing:.06em;text-transform:uppercase}
.meta{display:flex;flex-wrap:wrap;gap:8px 32px;margin:0}
.meta dt{font-size:.75rem;color:#c7d7ee;text-transform:uppercase;letter-spacing:.05em}
.meta dd{margin:0;font-weight:600}
.tiles{list-style:none;margin:0;padding:0;display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px}
.tile{background:#fff;border:1px solid var(--line);border-top:5px solid var(--muted);border-radius:8px;padding:12px 14px;
display:flex;flex-direction:column}
.tile--accepted{border-top-color:var(--accepted)}.tile--overridden{border-top-color:var(--overridden)}
.tile--ignored{border-top-color:var(--ignored)}.tile--served{border-top-color:#0b2545}
.tile__label{font-size:.8rem;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.tile__value{font-size:1.9rem;font-weight:700;color:var(--ink);font-variant-numeric:tabular-nums}
.tile__note{font-size:.85rem;color:var(--muted)}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;background:#fff;width:100%}
caption{text-align:left;color:var(--muted);font-size:.88rem;padding:0 0 6px}
th,td{padding:7px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:var(--soft);font-size:.82rem;text-transform:uppercase;letter-spacing:.03em;color:#344054}
.num{text-align:right;font-variant-numeric:tabular-nums}
table.summary tbody{border-top:2px solid var(--line)}
.rule-cell{background:#fff;min-width:240px}
.rule-title{display:block;font-weight:400;color:var(--muted);font-size:.88rem}
tr.subtotal td{font-weight:600;background:#fafbfc}
tfoot th,tfoot td{font-weight:700;border-top:2px solid var(--ink)}
table.compact{width:auto;min-width:60%;font-size:.92rem}
.badge{display:inline-block;border-radius:999px;padding:1px 10px;font-size:.8rem;font-weight:700;letter-spacing:.02em}
.badge--critical{background:var(--critical);color:#fff}
.badge--warning{background:var(--warning-bg);color:var(--warning-ink)}
.badge--info{background:var(--info);color:#fff}
.rate{display:inline-flex;align-items:center;gap:8px;min-width:130px}
.rate__track{display:inline-block;width:70px;height:8px;background:var(--soft);border-radius:4px;overflow:hidden;
border:1px solid var(--line)}
.rate__bar{display:block;height:100%}
.rate__bar--accepted{background:var(--accepted)}.rate__bar--overridden{background:var(--overridden)}
.rate__value{font-variant-numeric:tabular-nums}
.rule{background:#fff;border:1px solid var(--line);border-radius:10px;padding:18px 20px;margin:0 0 18px}
.rule-figures{margin:0 0 12px;color:var(--muted)}
.rule-figures strong{color:var(--ink)}
.rule-grid{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:28px;margin-bottom:12px}
@media (max-width:900px){.rule-grid{grid-template-columns:1fr}}
figure.chart{margin:0}
figure.chart svg{display:block;width:100%;height:auto}
figcaption{font-size:.85rem;color:var(--muted);margin-top:4px}
details{margin-top:8px}
summary{cursor:pointer;color:var(--accent);font-size:.9rem}
.empty{color:var(--muted);font-style:italic}
.page-foot{margin-top:36px;background:#fff;border-top:1px solid var(--line);padding:20px 0 28px}
.howto{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:10px 28px;margin:0}
.howto dt{font-weight:700;color:var(--ink)}
.howto dd{margin:2px 0 0;color:var(--text)}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-1px}
.privacy{margin-top:16px;color:var(--muted);font-size:.9rem}
@media print{.page-head{background:none;color:var(--ink)}.page-head h1,.meta dd{color:var(--ink)}
.eyebrow,.meta dt{color:var(--muted)}.rule{break-inside:avoid}details{display:none}}
"""
