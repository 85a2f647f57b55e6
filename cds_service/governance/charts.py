"""The report's charts: inline SVG drawn by pygal, with no script and nothing fetched.

Why pygal: pure Python (about 1.3 MB installed, no compiled or plotting stack), SVG is its
native output (text stays text, each series is a ``<g class="series serie-N">``), and it is
still released. Its SVG carries its own scoped ``<style>``; its tooltips need a script from the
web, so the charts are built with ``js=[]``, its inline configuration script is filtered out of
the SVG tree, and the values are printed on the bars instead. Every label passes through
pygal's XML serializer, which escapes it. Each chart gets ``role="img"`` and an ``aria-label``;
the report puts the same numbers in a table beside it.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pygal  # type: ignore[import-untyped]
from pygal.style import Style  # type: ignore[import-untyped]

from cds_service.governance.model import IsoWeek, Outcomes

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies); the legend
# names each series, so colour is never the only cue.
OUTCOME_COLOURS = {"accepted": "#0072B2", "overridden": "#D55E00", "ignored": "#A3ABB8"}
OUTCOME_SERIES = ("accepted", "overridden", "ignored")
REASON_COLOUR = "#D55E00"

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Liberation Sans', Arial, sans-serif"
_MAX_X_LABELS = 13


def _style(colours: Sequence[str]) -> Any:
    return Style(
        background="transparent",
        plot_background="#ffffff",
        foreground="#344054",
        foreground_strong="#101828",
        foreground_subtle="#e4e7ec",
        opacity="1",
        opacity_hover="0.85",
        transition="none",
        colors=tuple(colours),
        font_family=FONT,
        label_font_size=12,
        major_label_font_size=12,
        legend_font_size=13,
        value_font_size=11,
        title_font_size=14,
        tooltip_font_size=12,
        value_colors=("#ffffff", "#ffffff", "#101828"),
    )


def _common(colours: Sequence[str]) -> dict[str, Any]:
    return dict(
        style=_style(colours),
        js=[],  # no tooltip script: it would be fetched from the web
        disable_xml_declaration=True,
        explicit_size=False,  # scales with its container (viewBox only)
        print_values=True,
        print_zeroes=False,
        truncate_label=-1,
        truncate_legend=-1,
        margin=12,
    )


def integer_ticks(top: int, most: int = 6) -> list[int]:
    """Whole-number axis ticks from 0 to at least ``top``, at most ``most`` + 1 of them."""
    top = max(top, 1)
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        if math.ceil(top / step) <= most:
            break
    else:
        step = 10 ** math.ceil(math.log10(top / most))
    return list(range(0, step * math.ceil(top / step) + 1, step))


def weekly_outcomes_chart(
    weeks: Sequence[IsoWeek], counts: Mapping[IsoWeek, Outcomes], *, label: str, chart_id: str
) -> str:
    """Stacked bars per week: accepted, overridden and ignored, adding up to the cards served."""
    few = len(weeks) <= _MAX_X_LABELS
    chart = pygal.StackedBar(
        # Values on the bars while they fit; past a quarter the weekly table beside has them.
        **(_common([OUTCOME_COLOURS[s] for s in OUTCOME_SERIES]) | {"print_values": few}),
        width=640,
        height=300,
        legend_at_bottom=True,
        legend_at_bottom_columns=3,
        y_title="cards served",
        y_labels=integer_ticks(max((counts.get(w, Outcomes()).served for w in weeks), default=0)),
        show_minor_x_labels=few,
        x_labels_major_every=max(1, math.ceil(len(weeks) / _MAX_X_LABELS)),
        no_data_text="No cards served",
    )
    chart.x_labels = [f"W{w.week:02d}" if w.week != 1 and i else str(w) for i, w in enumerate(weeks)]
    for series in OUTCOME_SERIES:
        chart.add(series, [getattr(counts.get(w, Outcomes()), series) for w in weeks])
    return _finish(chart, label, chart_id)


def reasons_chart(reasons: Mapping[str, int], *, label: str, chart_id: str) -> str:
    """Horizontal bars: overridden cards per override reason, the most frequent on top."""
    ordered = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    chart = pygal.HorizontalBar(
        **_common([REASON_COLOUR]),
        width=1060,
        height=64 + 34 * max(len(ordered), 1),
        show_legend=False,
        y_labels=integer_ticks(max((n for _, n in ordered), default=0)),
        no_data_text="No overrides",
    )
    # pygal draws the first label at the bottom: reverse so the most frequent reads first.
    chart.x_labels = [reason for reason, _ in reversed(ordered)]
    chart.add("overridden cards", [n for _, n in reversed(ordered)])
    return _finish(chart, label, chart_id)


_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def _without_scripts(root: Any) -> Any:
    """pygal always embeds its configuration as an inline script for its tooltip code: drop it
    (the page's Content-Security-Policy would block it, and nothing on the page needs it)."""
    for parent in list(root.iter()):
        for child in list(parent):
            if isinstance(child.tag, str) and child.tag.rsplit("}", 1)[-1] == "script":
                parent.remove(child)
    return root


def _finish(chart: Any, label: str, chart_id: str) -> str:
    """Render with a stable id (pygal's default is random; it scopes the chart's CSS), without
    pygal's dated comments, and labelled for assistive technology."""
    chart.uuid = chart_id
    chart.add_xml_filter(_without_scripts)
    svg = _COMMENT.sub("", chart.render(is_unicode=True))
    return svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(label, quote=True)}" ', 1)
