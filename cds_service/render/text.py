"""Render a CDS Hooks response for a terminal (the ``evaluate`` command).

The card detail is GitHub-flavoured markdown; here it is shown as plain text: bold markers are
dropped, list items wrap with a hanging indent, and table rows are printed unwrapped without
their separator line.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

from cds_service.protocol import CDSResponse

_MARK = {"critical": "!!", "warning": "! ", "info": "i "}
_WIDTH = 100
_INDENT = "    "
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)]+)\)")
_TABLE_RULE = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")
# A backslash escape (markup.inert: EHR text kept from forming markup) reads as the character.
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def render_response(response: CDSResponse) -> str:
    if not response.cards:
        return "No cards: nothing to flag for this request."
    blocks = []
    for n, card in enumerate(response.cards, 1):
        lines = [f"[{n}] {_MARK[card.indicator]} {card.indicator.upper()}: {card.summary}"]
        if card.rule_id:
            lines.append(f"{_INDENT}rule: {card.rule_id}")
        if card.detail:
            lines.extend(render_markdown(card.detail))
        for s in card.suggestions or []:
            star = " (recommended)" if s.isRecommended else ""
            lines.append(f"{_INDENT}suggestion: {s.label}{star}")
            for a in s.actions or []:
                target = a.resourceId or _describe_resource(a.resource or {})
                lines.extend(_wrap(f"- {a.type} {target}: {a.description}", _INDENT + "  ", hang=4))
        for link in card.links or []:
            lines.append(f"{_INDENT}link: {link.label} <{link.url}>")
        if card.overrideReasons:
            lines.extend(_wrap("override reasons: " + "; ".join(r.display for r in card.overrideReasons), _INDENT))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render_markdown(markdown: str) -> list[str]:
    out: list[str] = []
    for raw in markdown.splitlines():
        line = _ESCAPE.sub(r"\1", _LINK.sub(r"\1 <\2>", _BOLD.sub(r"\1", raw))).rstrip()
        if not line:
            if out and out[-1] != "":
                out.append("")
        elif _TABLE_RULE.match(raw.strip()):
            continue
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out.append(_INDENT + "  " + " | ".join(cells))
        elif line.startswith("- "):
            out.extend(_wrap(line, _INDENT, hang=2))
        else:
            out.extend(_wrap(line, _INDENT))
    while out and out[-1] == "":
        out.pop()
    return out


def _wrap(text: str, indent: str, hang: int = 0) -> list[str]:
    return textwrap.wrap(
        text,
        width=_WIDTH,
        initial_indent=indent,
        subsequent_indent=indent + " " * hang,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent]


def _describe_resource(resource: dict[str, Any]) -> str:
    """ "MedicationRequest sevelamer carbonate 800 MG Oral Tablet" for a created/updated order."""
    rtype = resource.get("resourceType", "")
    concept = resource.get("medicationCodeableConcept") or (resource.get("medication") or {}).get("concept") or {}
    name = concept.get("text") or next((c.get("display") for c in concept.get("coding") or [] if c.get("display")), "")
    rid = f"/{resource['id']}" if resource.get("id") else ""
    return f"{rtype}{rid} {name}".strip()
