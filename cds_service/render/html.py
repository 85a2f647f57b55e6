"""Render a CDS Hooks response as one HTML page, the way an EHR shows cards (``evaluate --html``).

For clinicians reviewing ``cards/`` content and for integrators: per card the indicator (colour
*and* a text label), the summary, the markdown detail, the suggestions as buttons (disabled: this
is a preview, nothing is ordered), the links, the override reasons, the source and the rule.

Safety: card text is data, never markup. Every string is escaped; the markdown detail goes
through markdown-it-py with raw HTML off (so ``<script>`` in a detail comes out as text), images
off (they would be fetched), and links only for http(s) and mailto URLs, opened with
``rel="noopener noreferrer"``. The page's Content-Security-Policy allows its inline style and
nothing else: no script runs and nothing is fetched, so it works offline and from a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token

from cds_service.pages import escape as _e
from cds_service.pages import html_page
from cds_service.protocol import Action, Card, CDSResponse, Link, Suggestion

LINK_REL = "noopener noreferrer"
SAFE_SCHEMES = frozenset({"http", "https", "mailto"})

INDICATOR_LABELS = {"critical": "Critical", "warning": "Warning", "info": "Info"}
# A glyph beside the label, so the indicator never rests on colour alone (hidden from readers:
# the label says it).
_INDICATOR_GLYPHS = {"critical": "\u26a0", "warning": "\u25b2", "info": "\u2139"}
_SELECTION = {"at-most-one": "choose at most one", "any": "choose any"}


def is_safe_url(url: str) -> bool:
    """Only absolute http(s) and mailto URLs become links; anything else is shown as text."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in SAFE_SCHEMES and (parts.scheme.lower() == "mailto" or bool(parts.netloc))


class _CardMarkdown(MarkdownIt):
    """CommonMark with GitHub tables and strikethrough; no raw HTML, no images, safe links."""

    def __init__(self) -> None:
        super().__init__("commonmark", {"html": False, "linkify": False, "typographer": False})
        self.enable(["table", "strikethrough"])
        self.disable(["image", "html_block", "html_inline"])
        self.add_render_rule("link_open", _render_link_open)
        self.add_render_rule("table_open", _render_table_open)
        self.add_render_rule("table_close", _render_table_close)

    def validateLink(self, url: str) -> bool:
        return is_safe_url(url)


def _render_link_open(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    token.attrSet("rel", LINK_REL)
    token.attrSet("target", "_blank")
    return str(renderer.renderToken(tokens, idx, options, env))


def _render_table_open(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return '<div class="table-wrap">' + str(renderer.renderToken(tokens, idx, options, env))


def _render_table_close(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return str(renderer.renderToken(tokens, idx, options, env)) + "</div>"


_MARKDOWN = _CardMarkdown()


def render_markdown(text: str) -> str:
    """A card's markdown detail as safe HTML."""
    return str(_MARKDOWN.render(text))


def render_preview(response: CDSResponse, *, title: str, request_summary: str | None = None) -> str:
    """The response's cards as one self-contained HTML page."""
    cards = response.cards
    counts = [
        f"{n} {indicator}"
        for indicator in ("critical", "warning", "info")
        if (n := sum(1 for c in cards if c.indicator == indicator))
    ]
    if cards:
        tally = f"{len(cards)} card{'s' if len(cards) != 1 else ''}: {', '.join(counts)}"
    else:
        tally = "No cards"
    head = [
        '<header class="page-head"><div class="wrap">',
        '<p class="eyebrow">Card preview · CDS Hooks</p>',
        f"<h1>{_e(title)}</h1>",
        f'<p class="request">{_e(request_summary)}</p>' if request_summary else "",
        f'<p class="tally">{_e(tally)}</p>',
        "</div></header>",
    ]
    if cards:
        body = "".join(_card(card, n) for n, card in enumerate(cards, 1))
    else:
        body = '<p class="no-cards">No cards: nothing to flag for this request.</p>'
    system = _system_actions(response.systemActions or [])
    return html_page(
        title,
        _CSS,
        [
            "".join(head),
            '<main class="wrap">',
            '<p class="preview-note">Preview: the buttons are disabled. Nothing is ordered, sent or stored.</p>',
            f'<div class="cards">{body}</div>',
            system,
            "</main>",
        ],
    )


# --------------------------------------------------------------------------------------------
# One card
# --------------------------------------------------------------------------------------------


def _card(card: Card, n: int) -> str:
    ind = card.indicator
    cid = f"card-{n}"
    parts = [
        f'<article class="card card--{ind}" id="{cid}" data-indicator="{ind}" aria-labelledby="{cid}-summary">',
        '<div class="card__head">',
        f'<span class="indicator indicator--{ind}"><span aria-hidden="true">{_INDICATOR_GLYPHS[ind]}</span> '
        f"{INDICATOR_LABELS[ind]}</span>",
        f'<h2 class="card__summary" id="{cid}-summary">{_e(card.summary)}</h2>',
        "</div>",
        _source_line(card),
    ]
    if card.detail:
        parts.append(f'<div class="card__detail">{render_markdown(card.detail)}</div>')
    if card.suggestions:
        parts.append(_suggestions(card.suggestions, card.selectionBehavior, cid))
    if card.links:
        parts.append(_links(card.links, cid))
    if card.overrideReasons:
        items = "".join(
            f'<li><label><input type="radio" name="{cid}-override" disabled> {_e(r.display)}</label>'
            f' <code class="code">{_e(r.code)}</code></li>'
            for r in card.overrideReasons
        )
        parts.append(
            f'<section class="card__section card__override" aria-labelledby="{cid}-override-h">'
            f'<h3 id="{cid}-override-h">Override reasons</h3>'
            f'<ul class="override-list">{items}</ul>'
            '<button type="button" class="btn btn--dismiss" disabled>Dismiss with reason</button></section>'
        )
    parts.append("</article>")
    return "".join(parts)


def _source_line(card: Card) -> str:
    source = card.source
    label = _e(source.label)
    if source.url and is_safe_url(source.url):
        label = _anchor(source.url, label)
    bits = [f"<span>Source: <strong>{label}</strong></span>"]
    if source.topic:
        topic = source.topic.display or source.topic.code
        bits.append(f'<span>Topic: {_e(topic)} <code class="code">{_e(source.topic.code)}</code></span>')
    if card.rule_id:
        bits.append(f'<span>Rule: <code class="rule-id">{_e(card.rule_id)}</code></span>')
    bits.append(f'<span>Card <code class="code">{_e(card.uuid)}</code></span>')
    return f'<p class="card__source">{"".join(bits)}</p>'


def _suggestions(suggestions: list[Suggestion], behaviour: str | None, cid: str) -> str:
    how = f' <span class="hint">({_SELECTION[behaviour]})</span>' if behaviour in _SELECTION else ""
    items = []
    for s in suggestions:
        recommended = bool(s.isRecommended)
        tag = ' <span class="tag">Recommended</span>' if recommended else ""
        actions = "".join(_action(a) for a in s.actions or [])
        items.append(
            f'<li class="suggestion{" suggestion--recommended" if recommended else ""}">'
            f'<button type="button" class="btn{" btn--primary" if recommended else ""}" disabled>'
            f"{_e(s.label)}{tag}</button>" + (f'<ul class="actions">{actions}</ul>' if actions else "") + "</li>"
        )
    return (
        f'<section class="card__section card__suggestions" aria-labelledby="{cid}-sugg-h">'
        f'<h3 id="{cid}-sugg-h">Suggestions{how}</h3>'
        f'<ul class="suggestion-list">{"".join(items)}</ul></section>'
    )


def _action(action: Action) -> str:
    target = action.resourceId or _describe_resource(action.resource or {})
    return (
        f'<li class="action action--{action.type}"><span class="action__type">{_e(action.type)}</span> '
        f"{_e(action.description)}" + (f' <span class="action__target">{_e(target)}</span>' if target else "") + "</li>"
    )


def _describe_resource(resource: dict[str, Any]) -> str:
    """'MedicationRequest draft: sevelamer carbonate 800 MG Oral Tablet' for a created or updated order."""
    rtype = str(resource.get("resourceType") or "")
    concept = resource.get("medicationCodeableConcept") or (resource.get("medication") or {}).get("concept") or {}
    name = concept.get("text") or next(
        (c.get("display") for c in concept.get("coding") or [] if isinstance(c, dict) and c.get("display")), ""
    )
    rid = f"/{resource['id']}" if resource.get("id") else ""
    status = f" {resource['status']}" if isinstance(resource.get("status"), str) else ""
    return f"{rtype}{rid}{status}" + (f": {name}" if name else "")


def _links(links: list[Link], cid: str) -> str:
    items = []
    for link in links:
        kind = "SMART app (launched by the EHR)" if link.type == "smart" else "web page"
        if is_safe_url(link.url):
            shown = _anchor(link.url, _e(link.label))
        else:
            shown = f'{_e(link.label)} <span class="unsafe-url">{_e(link.url)}</span>'
        items.append(f'<li>{shown} <span class="hint">{kind}</span></li>')
    return (
        f'<section class="card__section card__links" aria-labelledby="{cid}-links-h">'
        f'<h3 id="{cid}-links-h">Links</h3><ul class="link-list">{"".join(items)}</ul></section>'
    )


def _system_actions(actions: list[Action]) -> str:
    if not actions:
        return ""
    return (
        '<section class="system-actions" aria-labelledby="system-actions-h">'
        '<h2 id="system-actions-h">System actions</h2>'
        f'<ul class="actions">{"".join(_action(a) for a in actions)}</ul></section>'
    )


def _anchor(url: str, label_html: str) -> str:
    return f'<a href="{_e(url)}" rel="{LINK_REL}" target="_blank">{label_html}</a>'


_CSS = """
:root{--ink:#101828;--text:#1d2939;--muted:#475467;--line:#d0d5dd;--soft:#f2f4f7;--bg:#eef1f5;--accent:#0b4a8b;
--critical:#b42318;--critical-bg:#fef3f2;--warning:#b54708;--warning-badge:#fdb022;--warning-ink:#3d2300;
--warning-bg:#fffaeb;--info:#175cd3;--info-bg:#eff8ff}
*{box-sizing:border-box}
html{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",Arial,sans-serif;color:var(--text);
background:var(--bg);line-height:1.45;font-size:15px}
body{margin:0}
.wrap{max-width:980px;margin:0 auto;padding:0 20px}
.page-head{background:#0b2545;color:#fff;padding:18px 0 14px}
.page-head h1{color:#fff;font-size:1.5rem;margin:.1rem 0 .35rem}
.eyebrow{margin:0;color:#c7d7ee;font-size:.8rem;letter-spacing:.06em;text-transform:uppercase}
.request,.tally{margin:.15rem 0;color:#e4ecf7}
.preview-note{margin:16px 0;padding:8px 12px;background:#fff;border:1px dashed var(--line);border-radius:6px;
color:var(--muted);font-size:.9rem}
.cards{display:flex;flex-direction:column;gap:16px;margin-bottom:32px}
.no-cards{background:#fff;border:1px solid var(--line);border-radius:8px;padding:16px;color:var(--muted)}
.card{background:#fff;border:1px solid var(--line);border-left:8px solid var(--info);border-radius:8px;
padding:14px 18px 16px;box-shadow:0 1px 2px rgba(16,24,40,.06)}
.card--critical{border-left-color:var(--critical)}
.card--warning{border-left-color:var(--warning-badge)}
.card--critical .card__head{background:var(--critical-bg)}
.card--warning .card__head{background:var(--warning-bg)}
.card--info .card__head{background:var(--info-bg)}
.card__head{display:flex;gap:12px;align-items:flex-start;margin:-14px -18px 10px;padding:12px 18px;
border-radius:0 8px 0 0;border-bottom:1px solid var(--line)}
.card__summary{margin:0;font-size:1.1rem;color:var(--ink);line-height:1.35}
.indicator{flex:none;display:inline-block;border-radius:4px;padding:2px 10px;font-size:.8rem;font-weight:700;
letter-spacing:.03em;text-transform:uppercase;margin-top:1px}
.indicator--critical{background:var(--critical);color:#fff}
.indicator--warning{background:var(--warning-badge);color:var(--warning-ink)}
.indicator--info{background:var(--info);color:#fff}
.card__source{display:flex;flex-wrap:wrap;gap:4px 18px;margin:0 0 8px;color:var(--muted);font-size:.85rem}
code,.code,.rule-id{font-family:ui-monospace,"DejaVu Sans Mono","Liberation Mono",Menlo,monospace;font-size:.86em}
.code{color:var(--muted)}
.rule-id{background:var(--soft);padding:0 4px;border-radius:3px;color:var(--ink)}
.card__detail{font-size:.95rem;color:var(--text)}
.card__detail p{margin:.5rem 0}
.card__detail ul{margin:.35rem 0;padding-left:1.3rem}
.card__detail li{margin:.15rem 0}
.card__detail code{background:var(--soft);padding:0 3px;border-radius:3px}
.table-wrap{overflow-x:auto;margin:.5rem 0}
.card__detail table{border-collapse:collapse;font-size:.9rem;min-width:60%}
.card__detail th,.card__detail td{border:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
.card__detail th{background:var(--soft);color:var(--ink)}
a{color:var(--accent)}
.card__section{border-top:1px solid var(--line);margin-top:12px;padding-top:10px}
.card__section h3{margin:0 0 8px;font-size:.85rem;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.hint{font-weight:400;text-transform:none;letter-spacing:0;color:var(--muted);font-size:.85rem}
.suggestion-list,.link-list,.override-list,.actions{list-style:none;margin:0;padding:0}
.suggestion{margin:0 0 10px}
.btn{font:inherit;font-weight:600;border:1px solid #98a2b3;background:#fff;color:var(--ink);border-radius:6px;
padding:7px 14px;cursor:not-allowed;text-align:left}
.btn--primary{background:#0b4a8b;border-color:#0b4a8b;color:#fff}
.btn--dismiss{margin-top:8px;font-weight:500}
.tag{display:inline-block;margin-left:8px;padding:0 8px;border-radius:999px;background:#fff;color:#0b4a8b;
font-size:.75rem;font-weight:700;text-transform:uppercase;letter-spacing:.03em;vertical-align:1px}
.actions{margin:6px 0 0 14px;border-left:3px solid var(--soft);padding-left:10px;font-size:.88rem}
.action{margin:3px 0}
.action__type{display:inline-block;min-width:54px;font-weight:700;text-transform:uppercase;font-size:.75rem;
letter-spacing:.04em;color:var(--muted)}
.action__target{color:var(--muted)}
.link-list li{margin:3px 0}
.unsafe-url{color:var(--muted);font-family:ui-monospace,monospace;font-size:.85em}
.override-list li{margin:3px 0}
.override-list input{margin:0 6px 0 0}
.system-actions{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin-bottom:32px}
.system-actions h2{font-size:1rem;margin:0 0 6px}
@media print{.page-head{background:none;color:var(--ink)}.page-head h1{color:var(--ink)}.card{break-inside:avoid}}
"""
