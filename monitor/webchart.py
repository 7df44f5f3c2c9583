"""Small SVG drawings for the status page: the cushion gauge and the day's chart.

Drawn on the server as text (standard library only, no JavaScript, no charting library to ship
or trust): the page stays readable without scripts, a live update is the same markup again, and
a test reads the figures back from the markup. Colours come from CSS classes, so the page's
stylesheet (and a dark-mode rule) styles them; every label is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from html import escape
from itertools import pairwise

from rules.text import Unit, format_value

#: The chart's drawing box (SVG user units; the page scales it to its width).
WIDTH = 720
PANEL_HEIGHT = 150
LEFT, RIGHT, TOP, GAP, BOTTOM = 52, 96, 22, 34, 24

#: Maps a moment to its x coordinate on the chart.
XOf = Callable[[datetime], float]

#: Two history points further apart than this, or than three times the usual spacing of the
#: points if longer, are not joined by the line: nothing was recorded between them (the
#: monitor stopped, or had no data).
HOLE = timedelta(minutes=5)

#: Tick steps of the time axis, in seconds, smallest first.
TIME_STEPS = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
)


@dataclass(frozen=True, slots=True)
class ChartPoint:
    """One evaluation's cushion and gross leverage (``None`` where unknown)."""

    at: datetime
    cushion: float | None
    leverage: float | None
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class ChartMarker:
    """An alert transition drawn as a vertical line: ``severity`` colours it."""

    at: datetime
    severity: str
    label: str


@dataclass(frozen=True, slots=True)
class Panel:
    """One of the chart's panels: which figure, how it reads, its warning/critical levels."""

    figure: str
    title: str
    unit: Unit
    levels: tuple[float | None, float | None]


def gauge_svg(
    cushion: float | None, warning: float | None, critical: float | None, *, label: str = ""
) -> str:
    """A horizontal cushion gauge: critical, warning and safe bands with a needle at the value.

    The scale runs from 0 to at least twice the warning level (50% at least), so the bands keep
    their width; a cushion beyond the scale pins the needle at the end, a negative one at 0.
    """
    top = max(0.5, 2 * (warning or 0.0), 2 * (critical or 0.0))
    width, height = 200.0, 16.0

    def x(value: float) -> float:
        return round(width * min(max(value, 0.0), top) / top, 2)

    bands = []
    edges = [0.0, critical or 0.0, warning or critical or 0.0, top]
    for name, low, high in zip(("critical", "warning", "safe"), edges, edges[1:], strict=False):
        if high > low:
            bands.append(
                f'<rect class="band band-{name}" x="{x(low)}" y="4" '
                f'width="{round(x(high) - x(low), 2)}" height="{height - 8}"/>'
            )
    needle = ""
    if cushion is not None and math.isfinite(cushion):
        at = x(cushion)
        needle = (
            f'<rect class="needle" x="{max(0.0, min(at - 1.5, width - 3))}" y="0" width="3" '
            f'height="{height}"/>'
        )
    name = escape(label or "cushion gauge", quote=True)
    return (
        f'<svg class="gauge" viewBox="0 0 {width:g} {height:g}" role="img" '
        f'aria-label="{name}" preserveAspectRatio="none">{"".join(bands)}{needle}</svg>'
    )


def line_breaks(
    times: Sequence[datetime],
    gaps: Sequence[tuple[datetime, datetime | None]] = (),
    hole: timedelta | None = None,
) -> set[int]:
    """The indexes ``i`` (of time-ordered ``times``) where a line must not join point
    ``i - 1`` to point ``i``: a recorded disconnect (a gap, ``None`` end while open) lies
    between them, or they are more than ``hole`` apart (default :data:`HOLE`, or three times
    the median spacing when the points are sparser, as on an accelerated demo clock)."""
    if hole is None:
        spacings = sorted(after - before for before, after in pairwise(times))
        usual = spacings[len(spacings) // 2] if spacings else timedelta(0)
        hole = max(HOLE, 3 * usual)
    breaks = set()
    for index in range(1, len(times)):
        before, after = times[index - 1], times[index]
        if after - before > hole or any(
            start < after and (end is None or end > before) for start, end in gaps
        ):
            breaks.add(index)
    return breaks


def day_chart_svg(
    points: Sequence[ChartPoint],
    panels: Sequence[Panel],
    *,
    markers: Sequence[ChartMarker] = (),
    gaps: Sequence[tuple[datetime, datetime | None]] = (),
    now: datetime | None = None,
    zone: tzinfo | None = None,
    title: str = "",
    hole: timedelta | None = None,
) -> str:
    """The day's figures over time, one panel per figure, levels dashed and named
    ("warning"/"critical"), alerts as lines, disconnects shaded.

    The time axis runs from the first point to the last (or ``now``) and names its time zone;
    a line breaks where a figure is missing, across a gap and across a silence longer than
    ``hole`` (:func:`line_breaks`, which chooses it when ``None``). With no point at all the
    chart says so in words.
    """
    ordered = sorted(points, key=lambda point: point.at)
    label = escape(title or "the day's figures", quote=True)
    height = TOP + len(panels) * PANEL_HEIGHT + (len(panels) - 1) * GAP + BOTTOM
    head = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{label}">'
        f"<title>{label}</title>"
    )
    if not ordered:
        return (
            f'{head}<text class="empty" x="{WIDTH / 2}" y="{height / 2}" text-anchor="middle">'
            "No history recorded today yet</text></svg>"
        )
    start = ordered[0].at
    end = max(ordered[-1].at, now or ordered[-1].at)
    if end <= start:
        end = start + timedelta(minutes=1)
    span = (end - start).total_seconds()
    plot_width = WIDTH - LEFT - RIGHT

    def x_of(moment: datetime) -> float:
        fraction = (moment - start).total_seconds() / span
        return round(LEFT + plot_width * min(max(fraction, 0.0), 1.0), 2)

    parts = [head]
    bottom_edge = height - BOTTOM
    for gap_start, gap_end in gaps:
        left, right = x_of(max(gap_start, start)), x_of(min(gap_end or end, end))
        if right > left:
            parts.append(
                f'<rect class="gap" x="{left}" y="{TOP}" width="{round(right - left, 2)}" '
                f'height="{bottom_edge - TOP}"><title>no data</title></rect>'
            )
    breaks = line_breaks([point.at for point in ordered], gaps, hole)
    for index, panel in enumerate(panels):
        top = TOP + index * (PANEL_HEIGHT + GAP)
        parts.append(_panel(ordered, panel, top, x_of, breaks))
    for marker in markers:
        if start <= marker.at <= end:
            at = x_of(marker.at)
            parts.append(
                f'<line class="marker marker-{escape(marker.severity, quote=True)}" x1="{at}" '
                f'y1="{TOP}" x2="{at}" y2="{bottom_edge}"><title>{escape(marker.label)}</title>'
                "</line>"
            )
    parts.append(_time_axis(start, end, bottom_edge, x_of, zone))
    parts.append("</svg>")
    return "".join(parts)


def _panel(
    ordered: Sequence[ChartPoint], panel: Panel, top: float, x_of: XOf, breaks: set[int]
) -> str:
    """One panel: frame, value ticks, dashed levels, the line and (when sparse) its points."""
    values = [v for p in ordered if (v := getattr(p, panel.figure)) is not None]
    levels = [level for level in panel.levels if level is not None]
    low = min([0.0, *values])
    high = max([*values, *levels, low + 1e-9])
    high += (high - low) * 0.08 or 1.0
    bottom = top + PANEL_HEIGHT

    def y_of(value: float) -> float:
        return round(bottom - (value - low) / (high - low) * PANEL_HEIGHT, 2)

    parts = [
        f'<g class="panel panel-{panel.figure}">',
        f'<rect class="frame" x="{LEFT}" y="{top}" width="{WIDTH - LEFT - RIGHT}" '
        f'height="{PANEL_HEIGHT}"/>',
        f'<text class="panel-title" x="{LEFT}" y="{top - 7}">{escape(panel.title)}</text>',
    ]
    for tick in _nice_ticks(low, high, 4):
        y = y_of(tick)
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4}" text-anchor="end">'
            f"{escape(_tick_text(tick, panel.unit))}</text>"
        )
    for name, level in zip(("warning", "critical"), panel.levels, strict=False):
        if level is None:
            continue
        y = y_of(level)
        text = format_value(level, panel.unit, digits=0 if panel.unit == "percent" else 1)
        parts.append(
            f'<line class="level level-{name}" x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" '
            f'y2="{y}"/><text class="level-label level-{name}" x="{WIDTH - RIGHT + 6}" '
            f'y="{y + 4}">{name} {escape(text)}</text>'
        )
    for segment in _segments(ordered, panel.figure, breaks):
        coordinates = " ".join(f"{x_of(at)},{y_of(value)}" for at, value, _ in segment)
        parts.append(f'<polyline class="line line-{panel.figure}" points="{coordinates}"/>')
    if len(ordered) <= 60:
        for point in ordered:
            value = getattr(point, panel.figure)
            if value is None:
                continue
            kind = "point estimated" if point.estimated else "point"
            parts.append(
                f'<circle class="{kind} point-{panel.figure}" cx="{x_of(point.at)}" '
                f'cy="{y_of(value)}" r="2.5"/>'
            )
    parts.append("</g>")
    return "".join(parts)


def _segments(
    ordered: Sequence[ChartPoint], figure: str, breaks: set[int]
) -> list[list[tuple[datetime, float, bool]]]:
    """Runs of consecutive points where ``figure`` is known (a missing value breaks the line,
    and so does each index in ``breaks``)."""
    runs: list[list[tuple[datetime, float, bool]]] = [[]]
    for index, point in enumerate(ordered):
        if index in breaks and runs[-1]:
            runs.append([])
        value = getattr(point, figure)
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((point.at, value, point.estimated))
    return [run for run in runs if run]


def _time_axis(
    start: datetime, end: datetime, baseline: float, x_of: XOf, zone: tzinfo | None
) -> str:
    """Tick labels under the chart at a round step giving about six of them."""
    span = (end - start).total_seconds()
    step = next((s for s in TIME_STEPS if span / s <= 7), TIME_STEPS[-1])
    pattern = "%H:%M:%S" if step < 60 else "%H:%M"
    local_start = start.astimezone(zone) if zone else start
    offset = local_start.utcoffset() or timedelta(0)
    first = math.ceil((start.timestamp() + offset.total_seconds()) / step) * step
    parts = ['<g class="time-axis">']
    tick = first
    while tick - offset.total_seconds() <= end.timestamp():
        moment = datetime.fromtimestamp(tick - offset.total_seconds(), start.tzinfo)
        x = x_of(moment)
        text = (moment.astimezone(zone) if zone else moment).strftime(pattern)
        parts.append(
            f'<text class="tick" x="{x}" y="{baseline + 16}" text-anchor="middle">{text}</text>'
        )
        tick += step
    parts.append(
        f'<text class="zone" x="{WIDTH - 4}" y="{baseline + 16}" text-anchor="end">'
        f"{escape(zone_name(zone, end))}</text>"
    )
    parts.append("</g>")
    return "".join(parts)


def zone_name(zone: tzinfo | None, moment: datetime) -> str:
    """The time axis's zone as a reader knows it at ``moment``: ``EDT``, ``CET``, ``UTC``."""
    local = moment.astimezone(zone) if zone is not None else moment
    return local.tzname() or str(zone or "UTC")


def _nice_ticks(low: float, high: float, count: int) -> list[float]:
    """Round values between ``low`` and ``high``, about ``count`` of them."""
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + 1e-12:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _tick_text(value: float, unit: Unit) -> str:
    """An axis label: ``20%``, ``12.5%``, ``1.5x``."""
    if unit == "percent":
        return f"{round(value * 100, 1):g}%"
    return f"{value:g}x" if unit == "multiple" else f"{value:g}"
