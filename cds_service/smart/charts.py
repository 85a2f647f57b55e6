"""The companion page's charts: inline SVG written here, no script, nothing fetched.

Why not pygal (the governance report's charts): these are time series on a 12-month date axis
with a shaded target band and labelled threshold lines, and a medication timeline of bars and
dose marks; drawn directly they need no plotting library, and every element carries a class the
tests and assistive technology can find. Each chart is an ``<svg role="img">`` named by its own
``<title>`` and described by a ``<desc>`` (latest value, range, target, how many results out of
target); the page puts the same numbers in a table beside it. Colour is never the only cue:
out-of-target points have their own marker shapes, thresholds are labelled in words, and the
timeline's kinds differ by shape (bar, hatched bar, mark) as well as colour.

Every text is escaped; numbers are formatted here. The SVG uses presentation attributes and the
page's classes, never a ``style`` attribute, so the page's CSP can allow its one stylesheet by
hash and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cds_service.pages import escape as _e
from cds_service.smart.data import Point, TimelineItem

WIDTH, HEIGHT = 560, 230
LEFT, RIGHT, TOP, BOTTOM = 52, 18, 24, 30
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Threshold:
    value: float
    label: str  # words: "reduce calcium-raising therapy above 10.2"


@dataclass(frozen=True)
class Band:
    low: float | None
    high: float | None
    label: str  # "target 8.4-9.5 mg/dL"
    applied: bool = True  # False: shown for reference (not applied to this patient)


@dataclass(frozen=True)
class Line:
    """A series on a chart: its points, its name in the legend, primary (solid) or not (dashed)."""

    name: str
    points: Sequence[Point]
    primary: bool = True


def fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _nice_step(span: float, most: int = 5) -> float:
    raw = span / max(most, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _domain(values: list[float]) -> tuple[float, float, float]:
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    step = _nice_step(high - low)
    low = math.floor(low / step) * step
    high = math.ceil(high / step) * step
    if low < 0 <= min(values):
        low = 0.0
    return low, high, step


def _month_ticks(start: datetime, end: datetime) -> list[datetime]:
    tick = datetime(start.year, start.month, 1, tzinfo=UTC)
    if tick < start:
        tick = datetime(tick.year + (tick.month == 12), tick.month % 12 + 1, 1, tzinfo=UTC)
    ticks = []
    while tick <= end:
        ticks.append(tick)
        tick = datetime(tick.year + (tick.month == 12), tick.month % 12 + 1, 1, tzinfo=UTC)
    return ticks


def _month_label(tick: datetime, first: bool) -> str:
    """The month, with its year in January and on the first tick (unless January follows it)."""
    with_year = tick.month == 1 or (first and tick.month < 12)
    return f"{MONTHS[tick.month - 1]} {tick.year}" if with_year else MONTHS[tick.month - 1]


class _Scale:
    def __init__(self, start: datetime, end: datetime, low: float, high: float, width: int, height: int):
        self.start, self.end, self.low, self.high = start, end, low, high
        self.width, self.height = width, height

    def x(self, when: datetime) -> float:
        span = (self.end - self.start).total_seconds() or 1.0
        fraction = (when - self.start).total_seconds() / span
        return LEFT + max(0.0, min(1.0, fraction)) * (self.width - LEFT - RIGHT)

    def y(self, value: float) -> float:
        fraction = (value - self.low) / ((self.high - self.low) or 1.0)
        return self.height - BOTTOM - max(0.0, min(1.0, fraction)) * (self.height - TOP - BOTTOM)


def _marker(x: float, y: float, status: str, primary: bool) -> str:
    """A circle in target (or with no target), a triangle up above it, a triangle down below."""
    cls = f"pt pt--{status or 'none'}" + ("" if primary else " pt--secondary")
    if status == "high":
        return f'<path class="{cls}" d="M{x:.1f} {y - 6:.1f} L{x + 5.5:.1f} {y + 4:.1f} L{x - 5.5:.1f} {y + 4:.1f} Z"/>'
    if status == "low":
        return f'<path class="{cls}" d="M{x:.1f} {y + 6:.1f} L{x + 5.5:.1f} {y - 4:.1f} L{x - 5.5:.1f} {y - 4:.1f} Z"/>'
    return f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="{4 if primary else 3.2}"/>'


def trend_chart(
    chart_id: str,
    *,
    title: str,
    description: str,
    unit: str,
    decimals: int,
    lines: Sequence[Line],
    start: datetime,
    end: datetime,
    band: Band | None = None,
    thresholds: Sequence[Threshold] = (),
) -> str:
    """One analyte (or two related ones) over ``start``-``end``, with its target band and lines."""
    values = [p.value for line in lines for p in line.points]
    marks = list(values)
    if band is not None:
        marks += [v for v in (band.low, band.high) if v is not None]
    marks += [t.value for t in thresholds]
    if not values:
        marks = marks or [0.0, 1.0]
    low, high, step = _domain(marks)
    scale = _Scale(start, end, low, high, WIDTH, HEIGHT)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" focusable="false">',
        f'<title id="{chart_id}-title">{_e(title)}</title>',
        f'<desc id="{chart_id}-desc">{_e(description)}</desc>',
    ]
    # Grid and y axis.
    tick = low
    while tick <= high + step / 1000:
        y = scale.y(tick)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        label = fmt(tick, 0 if step >= 1 else (1 if step >= 0.1 else 2))
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
        tick += step
    parts.append(f'<text class="axis unit" x="{LEFT - 6}" y="12" text-anchor="end">{_e(unit)}</text>')
    # Target band.
    if band is not None:
        top = scale.y(band.high if band.high is not None else high)
        bottom = scale.y(band.low if band.low is not None else low)
        cls = "band" if band.applied else "band band--reference"
        parts.append(
            f'<rect class="{cls}" x="{LEFT}" y="{top:.1f}" width="{WIDTH - LEFT - RIGHT}" height="{max(bottom - top, 1):.1f}"/>'
        )
        parts.append(f'<text class="band-label halo" x="{LEFT + 6}" y="{bottom - 5:.1f}">{_e(band.label)}</text>')
    # Thresholds.
    for threshold in thresholds:
        y = scale.y(threshold.value)
        parts.append(
            f'<line class="threshold" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="threshold-label halo" x="{LEFT + 4}" y="{y - 3:.1f}">{_e(threshold.label)}</text>'
        )
    # Month axis.
    ticks = _month_ticks(start, end)
    for n, when in enumerate(ticks):
        x = scale.x(when)
        parts.append(
            f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM + 4}"/>'
        )
        if n % 2 == 0 or len(ticks) <= 7:
            parts.append(
                f'<text class="axis" x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
                f"{_month_label(when, n == 0)}</text>"
            )
    parts.append(
        f'<line class="axis-line" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM}"/>'
    )
    # Series.
    for n, line in enumerate(lines):
        cls = "series" + ("" if line.primary else " series--secondary")
        pts = [(scale.x(p.when), scale.y(p.value), p) for p in line.points]
        parts.append(f'<g class="{cls}" data-series="{_e(line.name)}">')
        if len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in pts)
            parts.append(f'<polyline class="line" points="{path}"/>')
        parts.extend(_marker(x, y, p.status, line.primary) for x, y, p in pts)
        if pts and line.primary and n == 0:
            x, y, last = pts[-1]
            anchor = "end" if x > WIDTH - 90 else "start"
            dx = -8 if anchor == "end" else 8
            parts.append(
                f'<text class="value-label halo" x="{x + dx:.1f}" y="{y - 8:.1f}" text-anchor="{anchor}">'
                f"{_e((last.comparator or '') + fmt(last.value, decimals))}</text>"
            )
        parts.append("</g>")
    if not values:
        parts.append(
            f'<text class="empty-label" x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle">'
            "No results in the last 12 months</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# Medication timeline
# --------------------------------------------------------------------------------------------

TL_WIDTH = 1000
TL_LABEL = 250
TL_ROW = 26
TL_TOP = 8
TL_AXIS = 28


def timeline_chart(
    chart_id: str,
    *,
    title: str,
    description: str,
    rows: Sequence[tuple[str, str, Sequence[TimelineItem]]],
    start: datetime,
    end: datetime,
) -> str:
    """One row per drug (``(label, group, items)``; group "trigger" or "substitute"): orders as
    solid bars, home-list entries as hatched bars, doses given as marks; an ongoing entry ends
    in an arrow at today, one stopped without an end date in an open end."""
    height = TL_TOP + TL_ROW * max(len(rows), 1) + TL_AXIS
    span = (end - start).total_seconds() or 1.0

    def x(when: datetime) -> float:
        fraction = max(0.0, min(1.0, (when - start).total_seconds() / span))
        return TL_LABEL + fraction * (TL_WIDTH - TL_LABEL - 12)

    parts = [
        f'<svg class="chart timeline" viewBox="0 0 {TL_WIDTH} {height}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" focusable="false">',
        f'<title id="{chart_id}-title">{_e(title)}</title>',
        f'<desc id="{chart_id}-desc">{_e(description)}</desc>',
        "<defs>"
        '<pattern id="hatch" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)">'
        '<rect class="hatch-bg" width="6" height="6"/><line class="hatch-line" x1="0" y1="0" x2="0" y2="6"/></pattern>'
        "</defs>",
    ]
    axis_y = TL_TOP + TL_ROW * max(len(rows), 1)
    ticks = _month_ticks(start, end)
    for n, when in enumerate(ticks):
        tx = x(when)
        parts.append(f'<line class="grid" x1="{tx:.1f}" x2="{tx:.1f}" y1="{TL_TOP}" y2="{axis_y}"/>')
        parts.append(
            f'<text class="axis" x="{tx:.1f}" y="{axis_y + 16}" text-anchor="middle">{_month_label(when, n == 0)}</text>'
        )
    today = x(end)
    parts.append(f'<line class="today" x1="{today:.1f}" x2="{today:.1f}" y1="{TL_TOP}" y2="{axis_y}"/>')
    for n, (label, group, items) in enumerate(rows):
        top = TL_TOP + n * TL_ROW
        mid = top + TL_ROW / 2
        parts.append(f'<g class="tl-row tl-row--{group}" data-drug="{_e(label)}">')
        if n % 2 == 1:
            parts.append(f'<rect class="row-shade" x="0" y="{top}" width="{TL_WIDTH}" height="{TL_ROW}"/>')
        shown_label = label if len(label) <= 34 else label[:33] + "\u2026"
        parts.append(f'<text class="tl-label" x="4" y="{mid + 4:.1f}">{_e(shown_label)}</text>')
        for item in items:
            parts.append(_timeline_mark(item, x, mid, start, end))
        parts.append("</g>")
    if not rows:
        parts.append(
            f'<text class="empty-label" x="{TL_WIDTH / 2:.0f}" y="{TL_TOP + 17}" text-anchor="middle">'
            "None of the watched drugs or their substitutes in the last 12 months</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _timeline_mark(
    item: TimelineItem, x: Callable[[datetime], float], mid: float, start: datetime, end: datetime
) -> str:
    group = "substitute" if item.drug_class in ("non_calcium_binder", "doac", "sodium_thiosulfate") else "trigger"
    if item.drug_class == "sodium_thiosulfate":
        group = "thiosulfate"
    if item.kind == "administration":
        assert item.start is not None
        cx = x(item.start)
        return (
            f'<path class="tl-dose tl-dose--{group}" data-kind="administration" '
            f'd="M{cx:.1f} {mid - 7:.1f} L{cx + 4:.1f} {mid:.1f} L{cx:.1f} {mid + 7:.1f} L{cx - 4:.1f} {mid:.1f} Z"/>'
        )
    begin = item.start if item.start is not None else start
    x0 = x(max(begin, start))
    if item.ongoing:
        x1 = x(end)
    elif item.end is not None:
        x1 = x(item.end)
    else:
        x1 = x0 + 18  # stopped, end not recorded: a short open-ended stub
    width = max(x1 - x0, 3.0)
    cls = f"tl-bar tl-bar--{group} tl-bar--{item.kind}" + (
        "" if item.end is not None or item.ongoing else " tl-bar--open"
    )
    out = (
        f'<rect class="{cls}" data-kind="{item.kind}" data-status="{_e(item.status)}" x="{x0:.1f}" y="{mid - 6:.1f}" '
        f'width="{width:.1f}" height="12" rx="2"/>'
    )
    if item.ongoing:
        out += f'<path class="tl-arrow tl-arrow--{group}" d="M{x1:.1f} {mid - 7:.1f} L{x1 + 8:.1f} {mid:.1f} L{x1:.1f} {mid + 7:.1f} Z"/>'
    if begin < start:  # began before the window: a mark at the left edge says so
        out += (
            f'<path class="tl-before" d="M{x0 + 6:.1f} {mid - 7:.1f} L{x0:.1f} {mid:.1f} L{x0 + 6:.1f} {mid + 7:.1f}"/>'
        )
    return out
