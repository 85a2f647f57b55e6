"""Render a CDS Hooks response for a terminal (the ``evaluate`` command)."""

from __future__ import annotations

import textwrap

from cds_service.protocol import CDSResponse

_MARK = {"critical": "!!", "warning": "! ", "info": "i "}


def render_response(response: CDSResponse) -> str:
    if not response.cards:
        return "No cards: nothing to flag for this request."
    blocks = []
    for n, card in enumerate(response.cards, 1):
        lines = [f"[{n}] {_MARK[card.indicator]} {card.indicator.upper()}: {card.summary}"]
        if card.rule_id:
            lines.append(f"    rule: {card.rule_id}")
        if card.detail:
            for para in card.detail.splitlines():
                wrapped = textwrap.wrap(para, width=96) or [""]
                lines.extend("    " + w for w in wrapped)
        for s in card.suggestions or []:
            star = " (recommended)" if s.isRecommended else ""
            lines.append(f"    suggestion: {s.label}{star}")
            for a in s.actions or []:
                target = a.resourceId or (a.resource or {}).get("resourceType", "")
                lines.append(f"      - {a.type} {target}: {a.description}")
        for link in card.links or []:
            lines.append(f"    link: {link.label} <{link.url}>")
        if card.overrideReasons:
            lines.append("    override reasons: " + "; ".join(r.display for r in card.overrideReasons))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
