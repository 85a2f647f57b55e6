"""The frame of every HTML page the service writes (card preview, governance report): one
Content-Security-Policy (no script, nothing fetched: styles inline, images as data: URIs), no
referrer, and every text escaped. The pages fill in a title, their CSS and their body."""

from __future__ import annotations

import html
from collections.abc import Iterable

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def html_page(title: str, css: str, body: Iterable[str]) -> str:
    """A whole document; ``title`` is escaped here, ``css`` and ``body`` are markup already."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            '<meta name="referrer" content="no-referrer">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>",
            f"<style>{css}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )
