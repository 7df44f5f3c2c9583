"""The daily summary: the day of each account from stored history, as text, JSON or Markdown,
with a PNG chart of cushion and leverage (thresholds drawn).

The history keeps each minute's lowest and highest value beside its last one: the day's
"min" cushion and "max" leverage are the worst moments inside any minute (the value an alert
saw), and the chart draws each minute at its worst (lowest cushion, highest leverage).

The daemon sends it every weekday at 17:00 America/New_York (configurable) as an ``info``
notification with the chart attached, logs it as one structured event and saves the Markdown in
the state directory. ``margin-monitor summary`` builds the same thing on demand.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from monitor.notifier import DeliveryReport, Notification, Notifier
from monitor.settings import Settings
from monitor.store import LOW_IS_WORSE, RANGE_FIGURES, Store
from monitor.webchart import line_breaks, zone_name
from rules import RulesConfig, figures
from rules.checks.distance_to_liquidation import exposure_from, liquidation_profile
from rules.clock import zone as zone_named
from rules.model import is_number
from rules.text import format_value

log = structlog.get_logger("monitor.summary")

CHART_SIZE = (1200, 700)  # pixels: 12 x 7 inches at 100 dpi


@dataclass(frozen=True, slots=True)
class Sample:
    """One stored history row."""

    at: datetime
    net_liquidation: float | None = None
    excess_liquidity: float | None = None
    cushion: float | None = None
    gross_position_value: float | None = None
    maint_margin_req: float | None = None
    leverage: float | None = None
    margin_loan: float | None = None
    annual_financing_cost: float | None = None
    estimated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    lows: dict[str, float] = field(default_factory=dict)
    """The lowest value of a figure within the row's minute (see ``store.RANGE_FIGURES``)."""
    highs: dict[str, float] = field(default_factory=dict)
    """The highest value of a figure within the row's minute."""

    def last(self, name: str) -> float | None:
        """The figure's last value in the minute (``net_leverage`` lives in ``extra``)."""
        value = self.extra.get(name) if name == "net_leverage" else getattr(self, name)
        return value if is_number(value) else None

    def lowest(self, name: str) -> float | None:
        """The figure's lowest value in the minute (its last one when no range was kept)."""
        value = self.lows.get(name)
        return value if is_number(value) else self.last(name)

    def highest(self, name: str) -> float | None:
        """The figure's highest value in the minute (its last one when no range was kept)."""
        value = self.highs.get(name)
        return value if is_number(value) else self.last(name)

    def worst(self, name: str) -> float | None:
        """The minute's worst value: the lowest cushion, EL or NLV, the highest leverage."""
        return self.lowest(name) if name in LOW_IS_WORSE else self.highest(name)


@dataclass
class AccountDay:
    """The figures of one account over one day."""

    account: str
    day: date
    base_currency: str = ""
    samples: int = 0
    nlv_open: float | None = None
    nlv_close: float | None = None
    nlv_high: float | None = None
    nlv_low: float | None = None
    peak: float | None = None
    drawdown: float | None = None
    cushion_min: float | None = None
    cushion_min_at: datetime | None = None
    cushion_max: float | None = None
    cushion_close: float | None = None
    leverage_min: float | None = None
    leverage_max: float | None = None
    net_leverage_min: float | None = None
    net_leverage_max: float | None = None
    margin_loan: float | None = None
    annual_cost: float | None = None
    daily_cost: float | None = None
    effective_rate: float | None = None
    cost_of_half_point: float | None = None
    rate_rise: float | None = None
    financing_by_currency: list[dict[str, Any]] = field(default_factory=list)
    market_drawdown: float | None = None
    distance_to_liquidation: float | None = None
    liquidation_direction: str | None = None
    liquidation_note: str = ""
    cushion_after_moves: dict[str, float | None] = field(default_factory=dict)
    leveraged_etf_share: float | None = None
    largest_positions: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: datetimes (also inside alerts and gaps) as ISO-8601 strings."""
        return {key: _jsonable(getattr(self, key)) for key in self.__dataclass_fields__}


def _jsonable(value: Any) -> Any:
    """``value`` with every date/datetime (at any depth) turned into ISO-8601 text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The start and end of a local calendar day, as aware datetimes."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    return start, datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)


def summarize(
    account: str,
    day: date,
    samples: Sequence[Sample],
    *,
    peak: float | None,
    events: Sequence[dict[str, Any]] = (),
    gaps: Sequence[dict[str, Any]] = (),
    rules_config: RulesConfig | None = None,
    base_currency: str = "",
) -> AccountDay:
    """Compute an account's day from its history rows (the arithmetic shared with the rules)."""
    config = rules_config or RulesConfig()
    result = AccountDay(account, day, base_currency=base_currency, samples=len(samples))
    ordered = sorted(samples, key=lambda sample: sample.at)
    nlvs = [v for s in ordered if (v := s.last("net_liquidation")) is not None]
    if nlvs:
        result.nlv_open, result.nlv_close = nlvs[0], nlvs[-1]
        result.nlv_high = max(v for s in ordered if (v := s.highest("net_liquidation")) is not None)
        result.nlv_low = min(v for s in ordered if (v := s.lowest("net_liquidation")) is not None)
        result.peak = max(peak or nlvs[0], result.nlv_high)
        result.drawdown = figures.drawdown(result.nlv_close, result.peak)
    lows = [(v, s.at) for s in ordered if (v := s.lowest("cushion")) is not None]
    if lows:
        result.cushion_min, result.cushion_min_at = min(lows, key=lambda item: item[0])
        result.cushion_max = max(v for s in ordered if (v := s.highest("cushion")) is not None)
        result.cushion_close = next(
            v for s in reversed(ordered) if (v := s.last("cushion")) is not None
        )
    result.leverage_min, result.leverage_max = _range(ordered, "leverage")
    result.net_leverage_min, result.net_leverage_max = _range(ordered, "net_leverage")
    last = ordered[-1] if ordered else None
    if last is not None:
        _financing(result, last, config)
        _liquidation(result, last, config)
        result.leveraged_etf_share = last.extra.get("leveraged_etf_share")
        result.market_drawdown = last.extra.get("market_drawdown")
        result.largest_positions = list(last.extra.get("largest_positions", []))
    result.alerts = [dict(event) for event in events]
    result.gaps = [dict(gap) for gap in gaps]
    return result


def _range(ordered: Sequence[Sample], name: str) -> tuple[float | None, float | None]:
    """The lowest and highest value of a figure over the rows' minutes (None when unknown)."""
    lows = [v for s in ordered if (v := s.lowest(name)) is not None]
    highs = [v for s in ordered if (v := s.highest(name)) is not None]
    return (min(lows) if lows else None), (max(highs) if highs else None)


def _financing(result: AccountDay, last: Sample, config: RulesConfig) -> None:
    """The day's loan and its cost: each currency's debit as the rule costed it (history),
    else the base loan on the configured USD terms (history from before per-currency costs)."""
    breakdown = last.extra.get("financing_by_currency")
    if breakdown:
        _per_currency(result, breakdown, config)
        return
    loan = last.margin_loan
    if not is_number(loan):
        return
    result.margin_loan = loan
    cost = figures.financing_cost(loan, config.financing_cost)
    if cost is None:  # a spread tier without a configured benchmark: unknown, not guessed
        return
    result.annual_cost = cost.annual
    result.daily_cost = cost.daily
    result.effective_rate = cost.effective_rate
    result.cost_of_half_point = cost.cost_of_rise
    result.rate_rise = cost.rate_rise


def _per_currency(result: AccountDay, rows: list[dict[str, Any]], config: RulesConfig) -> None:
    """Totals in base currency from the per-currency rows (unknown when one row's is)."""
    result.financing_by_currency = [dict(row) for row in rows]
    result.margin_loan = sum(row.get("debit_base") or 0.0 for row in rows)
    annual = [row.get("annual_cost_base") for row in rows]
    daily = [row.get("daily_cost_base") for row in rows]
    if all(is_number(v) for v in annual) and all(is_number(v) for v in daily):
        result.annual_cost = sum(v for v in annual if v is not None)
        result.daily_cost = sum(v for v in daily if v is not None)
        result.effective_rate = figures.effective_rate(result.annual_cost, result.margin_loan)
        rise = config.financing_cost.rate_rise
        result.cost_of_half_point = figures.cost_of_rate_rise(result.margin_loan, rise)
        result.rate_rise = rise


def _liquidation(result: AccountDay, last: Sample, config: RulesConfig) -> None:
    """The adverse move and stress table of the day's last figures, by the function the
    ``distance_to_liquidation`` rule uses, on the exposure and moves it uses."""
    el, gpv, maint, nlv = (
        last.excess_liquidity,
        last.gross_position_value,
        last.maint_margin_req,
        last.net_liquidation,
    )
    if not (is_number(el) and is_number(gpv) and is_number(maint) and is_number(nlv)) or not gpv:
        return
    exposure = exposure_from(last.extra.get("liquidation_exposure"), gpv)
    profile = liquidation_profile(nlv, el, maint, exposure, config.distance_to_liquidation.moves)
    if profile.move is not None:
        result.distance_to_liquidation = profile.move.distance
        result.liquidation_direction = profile.move.direction
    result.liquidation_note = profile.reason
    result.cushion_after_moves = profile.stress


# -- rendering -------------------------------------------------------------------------------


def _clock(value: datetime | None, zone: ZoneInfo) -> str:
    return "" if value is None else value.astimezone(zone).strftime("%H:%M")


def _loan_line(summary: AccountDay) -> str:
    """The margin loan and what it costs (or why the cost is unknown)."""
    c = summary.base_currency
    if summary.margin_loan is None:
        return "Margin loan: n/a"
    if summary.margin_loan <= 0:
        return "Margin loan: none"
    loan = "Margin loan " + format_value(summary.margin_loan, "money", c)
    if summary.annual_cost is None:
        if summary.financing_by_currency:
            return f"{loan}: cost unknown (see the currencies below)"
        return f"{loan}: cost unknown (set [rules.financing_cost] benchmark_rate)"
    daily = format_value(summary.daily_cost, "money", c)
    annual = format_value(summary.annual_cost, "money", c)
    effective = format_value(summary.effective_rate, "percent")
    rise = f"+{(summary.rate_rise or 0.0) * 100:g} pp"
    rise_cost = format_value(summary.cost_of_half_point, "money", c)
    return (
        f"{loan}: {daily}/day, {annual}/year, effective {effective}; "
        f"{rise} costs {rise_cost}/year"
    )


def _currency_lines(summary: AccountDay) -> list[str]:
    """One line per currency in debit, in its own currency (each has its own terms)."""
    base = summary.base_currency
    rows = summary.financing_by_currency
    if not rows or (len(rows) == 1 and rows[0].get("currency") == base):
        return []
    lines = []
    for row in rows:
        ccy = row.get("currency", "")
        debit = format_value(row.get("debit"), "money", ccy)
        if row.get("debit_base") is not None and ccy != base:
            debit += f" ({format_value(row['debit_base'], 'money', base)})"
        if row.get("annual_cost") is None:
            lines.append(f"  {debit}: cost unknown: {row.get('unknown') or 'n/a'}")
            continue
        lines.append(
            f"  {debit}: {format_value(row['annual_cost'], 'money', ccy)}/year, "
            f"{format_value(row.get('daily_cost'), 'money', ccy)}/day on "
            f"actual/{row.get('day_count')}, effective "
            f"{format_value(row.get('effective_rate'), 'percent')}"
        )
    return lines


def _distance(summary: AccountDay) -> str:
    """The adverse move (``a fall of 28.0%``), or why there is none."""
    if summary.distance_to_liquidation is None:
        return f"none ({summary.liquidation_note})" if summary.liquidation_note else "n/a"
    shown = format_value(summary.distance_to_liquidation, "percent", digits=1)
    return f"a {summary.liquidation_direction} of {shown}"


def render_lines(summary: AccountDay, zone: ZoneInfo) -> list[str]:
    """The summary as readable lines (used by text and Markdown output).

    Percentages read with one decimal (``24.6%``), money with its currency, leverage as a
    multiple, all through :func:`rules.text.format_value`.
    """
    c = summary.base_currency
    pct = {
        name: format_value(getattr(summary, name), "percent", digits=1)
        for name in ("drawdown", "cushion_min", "cushion_max", "cushion_close")
    }
    nlv = {
        "open": summary.nlv_open,
        "close": summary.nlv_close,
        "high": summary.nlv_high,
        "low": summary.nlv_low,
    }
    moves = ", ".join(
        f"{move}: {format_value(value, 'percent', digits=1)}"
        for move, value in summary.cushion_after_moves.items()
    )
    lines = [
        "NLV: " + ", ".join(f"{k} {format_value(v, 'money', c)}" for k, v in nlv.items()),
        f"Peak {format_value(summary.peak, 'money', c)}; drawdown {pct['drawdown']}"
        + (
            f" (the market benchmark: {format_value(summary.market_drawdown, 'percent', digits=1)}"
            " below its prior peak)"
            if summary.market_drawdown is not None
            else ""
        ),
        f"Cushion: min {pct['cushion_min']} at {_clock(summary.cushion_min_at, zone)}, "
        f"max {pct['cushion_max']}, close {pct['cushion_close']}",
        f"Leverage: net {format_value(summary.net_leverage_min, 'multiple')} to "
        f"{format_value(summary.net_leverage_max, 'multiple')}; gross "
        f"{format_value(summary.leverage_min, 'multiple')} to "
        f"{format_value(summary.leverage_max, 'multiple')}",
        _loan_line(summary),
        *_currency_lines(summary),
        f"Distance to liquidation: {_distance(summary)}; cushion after a move of "
        f"{moves or 'n/a'}",
        "Leveraged-ETF sleeve: "
        + format_value(summary.leveraged_etf_share, "percent", digits=1),
    ]
    if summary.largest_positions:
        top = ", ".join(
            f"{p['symbol']} {format_value(p.get('share'), 'percent', digits=1)}"
            for p in summary.largest_positions
        )
        lines.append(f"Largest positions: {top}")
    if summary.alerts:
        fired = sum(1 for event in summary.alerts if event.get("kind") in ("fired", "escalated"))
        resolved = sum(1 for event in summary.alerts if event.get("kind") == "resolved")
        lines.append(f"Alerts: {fired} fired or escalated, {resolved} resolved")
        for event in summary.alerts:
            change = f"{event.get('previous_severity', '?')} -> {event.get('severity', '?')}"
            message = event.get("message") or ""
            lines.append(
                f"  {_clock(event.get('at'), zone)} {event.get('rule')} {event.get('kind')} "
                f"({change}){': ' + message if message else ''}"
            )
    else:
        lines.append("Alerts: none")
    if summary.gaps:
        lines.append("Disconnects and data gaps:")
        for gap in summary.gaps:
            lines.append(
                f"  {_clock(gap.get('start'), zone)}-{_clock(gap.get('end'), zone) or 'open'} "
                f"{gap.get('reason', '')}".rstrip()
            )
    else:
        lines.append("Disconnects and data gaps: none")
    if not summary.samples:
        lines.insert(0, "No history recorded for this day.")
    return lines


def render_text(summaries: Sequence[AccountDay], zone: ZoneInfo) -> str:
    """Plain text, one block per account."""
    blocks = []
    for summary in summaries:
        title = f"{summary.account} — {summary.day.isoformat()} ({summary.base_currency})"
        blocks.append("\n".join([title, *("  " + line for line in render_lines(summary, zone))]))
    return "\n\n".join(blocks) if blocks else "No accounts in history."


def render_markdown(summaries: Sequence[AccountDay], zone: ZoneInfo) -> str:
    """Markdown, one section per account."""
    parts = []
    for summary in summaries:
        parts.append(f"## {summary.account} — {summary.day.isoformat()}\n")
        # Detail lines (alerts, gaps) become a nested list: a bare indented line would be read
        # as a lazy continuation of the item above and run into one paragraph.
        parts.extend(
            f"  - {line.strip()}" if line.startswith("  ") else f"- {line}"
            for line in render_lines(summary, zone)
        )
        parts.append("")
    return "# Daily margin summary\n\n" + "\n".join(parts)


#: Colours of the chart's thresholds and alert marks, by severity.
SEVERITY_COLOURS = {"warning": "orange", "critical": "red", "ok": "green", "info": "grey"}


def render_chart(samples: Sequence[Sample], path: Path, **options: Any) -> Path:
    """Draw the day's chart to a PNG of CHART_SIZE at ``path``; ``options`` are
    :func:`chart_figure`'s (``title`` at least)."""
    figure = chart_figure(samples, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path


def chart_figure(
    samples: Sequence[Sample],
    *,
    title: str,
    cushion_levels: Sequence[float | None] = (0.20, 0.10),
    leverage_levels: Sequence[float | None] = (1.6, 2.0),
    gross_levels: Sequence[float | None] = (None, 2.0),
    zone: ZoneInfo | None = None,
    gaps: Sequence[dict[str, Any]] = (),
    events: Sequence[dict[str, Any]] = (),
) -> Any:
    """Cushion and leverage over the day, as a matplotlib ``Figure`` of CHART_SIZE.

    Each minute is drawn at its worst (lowest cushion, highest net and gross leverage); the
    line breaks across a recorded disconnect and across a silence well beyond the points'
    usual spacing (:func:`~monitor.webchart.line_breaks`; ``gaps`` are also shaded grey);
    thresholds are dashed and labelled "warning"/"critical"; each alert transition in
    ``events`` is a vertical line in its severity's colour; the time axis names its zone. A
    level set to ``None`` (rule level disabled) is skipped. Uses matplotlib's object API on an
    Agg canvas (no pyplot global state), so it is safe in a worker thread and never touches a
    display; matplotlib is imported here, not at module load, so the daemon starts fast.
    """
    import matplotlib.dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = CHART_SIZE
    figure = Figure(figsize=(width / 100, height / 100), dpi=100)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True)
    ordered = sorted(samples, key=lambda sample: sample.at)
    spans = [(gap["start"], gap.get("end")) for gap in gaps]
    breaks = line_breaks([s.at for s in ordered], spans)

    def series(name: str, scale: float = 1.0) -> tuple[list[datetime], list[float]]:
        """The worst value of each minute, with a NaN point wherever the line breaks."""
        times: list[datetime] = []
        values: list[float] = []
        for index, sample in enumerate(ordered):
            if index in breaks:
                previous = ordered[index - 1].at
                times.append(previous + (sample.at - previous) / 2)
                values.append(math.nan)
            value = sample.worst(name)
            times.append(sample.at.astimezone(zone) if zone else sample.at)
            values.append(value * scale if value is not None else math.nan)
        return times, values

    marker = "o" if len(ordered) < 30 else None  # a sparse day still shows its points
    top.plot(*series("cushion", 100), color="tab:blue", marker=marker, markersize=3,
             label="cushion % (lowest of each minute)")
    _levels(top, cushion_levels, "{:.0%}", scale=100)
    top.set_ylabel("cushion (%)")
    top.set_title(title)
    bottom.plot(*series("net_leverage"), color="tab:green", marker=marker, markersize=3,
                label="net leverage (highest of each minute)")
    bottom.plot(*series("leverage"), color="tab:purple", marker=marker, markersize=3,
                label="gross leverage (highest of each minute)")
    _levels(bottom, leverage_levels, "{:.1f}x", prefix="net ")
    _levels(bottom, gross_levels, "{:.1f}x", prefix="gross ")
    bottom.set_ylabel("leverage (x)")
    span = (ordered[-1].at - ordered[0].at) if ordered else timedelta(0)
    clock_format = "%H:%M" if span >= timedelta(minutes=30) else "%H:%M:%S"
    bottom.xaxis.set_major_formatter(mdates.DateFormatter(clock_format, tz=zone))
    bottom.set_xlabel(f"time ({_zone_label(zone, ordered[0].at if ordered else None)})")
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
    if ordered:
        first, last = ordered[0].at, ordered[-1].at
        for start, end in spans:
            start, end = max(start, first), min(end or last, last)
            if start < end:
                for axis in (top, bottom):
                    axis.axvspan(start, end, color="grey", alpha=0.2, linewidth=0)
        _alert_marks((top, bottom), events, first, last)
    top.legend(loc="best", fontsize="small")
    bottom.legend(loc="best", fontsize="small")
    return figure


def _levels(
    axis: Any, levels: Sequence[float | None], text: str, prefix: str = "", scale: float = 1.0
) -> None:
    """Dashed lines at a rule's warning and critical levels, labelled with their names
    (``net warning 1.6x``)."""
    for name, level in zip(("warning", "critical"), levels, strict=False):
        if level is not None:
            axis.axhline(
                level * scale,
                color=SEVERITY_COLOURS[name],
                linestyle="--",
                linewidth=1,
                label=f"{prefix}{name} {text.format(level)}",
            )


def _alert_marks(
    axes: Sequence[Any], events: Sequence[dict[str, Any]], first: datetime, last: datetime
) -> None:
    """A dotted vertical line per alert transition within the plotted span, in the colour of
    the severity it moved to, labelled once per severity in the top legend."""
    labelled: set[str] = set()
    for event in events:
        at = event.get("at")
        if not isinstance(at, datetime) or not first <= at <= last:
            continue
        severity = str(event.get("severity") or "info")
        colour = SEVERITY_COLOURS.get(severity, "grey")
        for index, axis in enumerate(axes):
            label = None
            if index == 0 and severity not in labelled:
                label = "alert: resolved" if severity == "ok" else f"alert: {severity}"
                labelled.add(severity)
            axis.axvline(at, color=colour, linestyle=":", linewidth=1.2, label=label)


def _zone_label(zone: ZoneInfo | None, moment: datetime | None) -> str:
    """``America/New_York, EDT`` (the zone's name and its abbreviation that day); ``UTC``."""
    if zone is None:
        return "UTC"
    abbreviation = zone_name(zone, moment) if moment is not None else ""
    return f"{zone.key}, {abbreviation}" if abbreviation and abbreviation != zone.key else zone.key


# -- building from the store -------------------------------------------------------------------


def build_summaries(
    store: Store,
    settings: Settings,
    day: date,
    accounts: Sequence[str] | None = None,
) -> tuple[list[AccountDay], dict[str, list[Sample]]]:
    """Every account's day from the store (accounts default to those with history that day)."""
    zone = zone_named(settings.summary.timezone)
    start, end = day_bounds(day, zone)
    chosen = list(accounts) if accounts else store.accounts_with_samples(start, end)
    summaries, samples_by_account = [], {}
    for account in chosen:
        samples = [to_sample(row) for row in store.samples(account, start, end)]
        events = [_event(row) for row in store.alert_events(account, start, end)]
        gaps = [_gap(row) for row in store.gaps(start, end)]
        base = next((s.extra.get("base_currency") for s in reversed(samples) if s.extra), "")
        summaries.append(
            summarize(
                account,
                day,
                samples,
                peak=store.peak(account),
                events=events,
                gaps=gaps,
                rules_config=settings.rules,
                base_currency=base or "",
            )
        )
        samples_by_account[account] = samples
    return summaries, samples_by_account


def to_sample(row: Any) -> Sample:
    """A store history row (mapping) as a :class:`Sample`."""
    get = row.get if hasattr(row, "get") else lambda key, default=None: getattr(row, key, default)
    extra = get("extra") or {}
    if isinstance(extra, str):
        extra = json.loads(extra)
    return Sample(
        at=get("at"),
        net_liquidation=get("net_liquidation"),
        excess_liquidity=get("excess_liquidity"),
        cushion=get("cushion"),
        gross_position_value=get("gross_position_value"),
        maint_margin_req=get("maint_margin_req"),
        leverage=get("leverage"),
        margin_loan=get("margin_loan"),
        annual_financing_cost=get("annual_financing_cost"),
        estimated=bool(get("estimated", False)),
        extra=extra,
        lows=_ends(get, "min"),
        highs=_ends(get, "max"),
    )


def _ends(get: Any, end: str) -> dict[str, float]:
    """A history row's ``<figure>_min`` (or ``_max``) columns that hold a number."""
    return {
        name: value for name in RANGE_FIGURES if is_number(value := get(f"{name}_{end}"))
    }


def _event(row: Any) -> dict[str, Any]:
    return dict(row) if not isinstance(row, dict) else row


def _gap(row: Any) -> dict[str, Any]:
    return dict(row) if not isinstance(row, dict) else row


def chart_levels(settings: Settings) -> dict[str, tuple[float | None, float | None]]:
    """The thresholds drawn on the chart: the cushion, net and gross leverage rules'
    warning/critical levels."""
    rules = settings.rules
    return {
        "cushion_levels": (rules.cushion.warning, rules.cushion.critical),
        "leverage_levels": (rules.leverage.warning, rules.leverage.critical),
        "gross_levels": (rules.gross_leverage.warning, rules.gross_leverage.critical),
    }


def charts_for(
    summaries: Sequence[AccountDay],
    samples: dict[str, list[Sample]],
    directory: Path,
    settings: Settings,
) -> list[Path]:
    """One chart per account with history, named after the account and day."""
    zone = zone_named(settings.summary.timezone)
    paths = []
    for summary in summaries:
        rows = samples.get(summary.account) or []
        if not rows:
            continue
        path = directory / f"summary-{_safe(summary.account)}-{summary.day.isoformat()}.png"
        render_chart(
            rows,
            path,
            title=f"{summary.account} {summary.day.isoformat()}",
            zone=zone,
            gaps=summary.gaps,
            events=summary.alerts,
            **chart_levels(settings),
        )
        paths.append(path)
    return paths


def _safe(name: str) -> str:
    """An account id usable in a file name (IB ids are letters and digits already)."""
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in name)


def summary_notification(
    summaries: Sequence[AccountDay],
    zone: ZoneInfo,
    day: date,
    notification_id: str,
    created_at: datetime,
    charts: Sequence[Path],
) -> Notification:
    """The ``info`` notification carrying the summary text and the charts."""
    return Notification(
        id=notification_id,
        account="*",
        rule="summary",
        severity="info",
        kind="summary",
        title=f"Daily margin summary {day.isoformat()}",
        body=render_text(summaries, zone),
        created_at=created_at,
        attachments=tuple(str(path) for path in charts),
    )


async def send_daily_summary(
    store: Store, notifier: Notifier, settings: Settings, now: datetime, day: date | None = None
) -> Path:
    """Build the day's summary, save it as Markdown, log it, and send it as ``info`` with charts.

    ``day`` defaults to the day of ``now`` in ``[summary] timezone``. The Markdown and the
    charts go to ``<state_dir>/summaries/``; the charts are drawn in a worker thread so the
    event loop (and the systemd watchdog it feeds) is not held up. The notification id is
    ``summary:<day>``: a job that fires twice for one day (restart, misfire) is sent once.
    """
    zone = zone_named(settings.summary.timezone)
    day = day or now.astimezone(zone).date()
    summaries, samples = build_summaries(store, settings, day)
    directory = settings.monitor.summaries_path
    directory.mkdir(parents=True, exist_ok=True)
    markdown_path = directory / f"summary-{day.isoformat()}.md"
    markdown_path.write_text(render_markdown(summaries, zone), encoding="utf-8")
    charts = await asyncio.to_thread(charts_for, summaries, samples, directory, settings)
    log.info(
        "daily summary",
        day=day.isoformat(),
        markdown=str(markdown_path),
        charts=[str(path) for path in charts],
        accounts=[s.to_dict() for s in summaries],
    )
    await notifier.submit(
        summary_notification(summaries, zone, day, f"summary:{day.isoformat()}", now, charts)
    )
    return markdown_path


async def send_on_request(
    notifier: Notifier,
    settings: Settings,
    summaries: list[AccountDay],
    samples: dict[str, list[Sample]],
    day: date,
) -> DeliveryReport | None:
    """Queue a summary asked for by hand (its own id, so it never collides with the daily one)
    and deliver exactly that notification now: alerts the daemon has pending stay the
    daemon's business. ``None`` when no target receives ``info``."""
    zone = zone_named(settings.summary.timezone)
    charts = charts_for(summaries, samples, settings.monitor.summaries_path, settings)
    now = datetime.now(zone)
    note = summary_notification(
        summaries, zone, day, f"summary:{day.isoformat()}:manual:{now.isoformat()}", now, charts
    )
    if not notifier.enqueue(note):
        return None
    return await notifier.deliver_due(ids=[note.id])
