"""What the status page shows, as plain values: built from the service's state, never recomputed.

One source of figures: an account's figures are the entry that ``check --json`` prints
(:func:`monitor.report.account_report` of the service's last evaluation of that account), and
its findings are that entry's findings. This module adds only what a page needs around them:
the age of IB's values and whether the figures are an estimate, the gauge's bands (the cushion
rule's levels), the link's state, the alerts firing, and the day's history, transitions and
gaps from the store. Texts are formatted with :func:`rules.text.format_value`, the formatter of
``check`` and the notifications, so a cushion reads ``18.23%`` everywhere.

Standard library only: the web server (aiohttp, Jinja2) is :mod:`monitor.web`, which renders
these values; the service is known here only by the :class:`WebSource` protocol.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from monitor.estimate import Baseline, RateLookup, make_baseline
from monitor.gateway import is_link_account
from monitor.report import account_report
from monitor.settings import Settings
from monitor.store import Store, worst_in_minute
from monitor.webchart import (
    ChartMarker,
    ChartPoint,
    Panel,
    day_chart_svg,
    gauge_svg,
)
from rules.catalog import spec, unit_of
from rules.clock import zone as zone_named
from rules.lifecycle import AlertState
from rules.model import AccountSnapshot, Finding, Severity, is_number, worst
from rules.text import NOT_AVAILABLE, Unit, format_value

# -- what the page reads from the service --------------------------------------------------------


class EvaluatedView(Protocol):
    """An evaluation of one account (``monitor.service.AccountView``)."""

    @property
    def snapshot(self) -> AccountSnapshot | None: ...
    @property
    def findings(self) -> list[Finding]: ...
    @property
    def evaluated_at(self) -> datetime | None: ...


class _Link(Protocol):
    @property
    def connected(self) -> bool: ...
    @property
    def live(self) -> bool: ...
    @property
    def disconnected_since(self) -> datetime | None: ...


class _Connector(Protocol):
    @property
    def state(self) -> _Link: ...
    def last_values_at(self, account: str) -> datetime | None: ...


class WebSource(Protocol):
    """What the page reads (``monitor.service.MonitorService`` provides it)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def views(self) -> Mapping[str, EvaluatedView]: ...
    @property
    def states(self) -> Mapping[tuple[str, str], AlertState]: ...
    @property
    def connector(self) -> _Connector: ...
    @property
    def store(self) -> Store: ...
    @property
    def baselines(self) -> Mapping[str, Baseline]: ...
    @property
    def known_rate(self) -> RateLookup: ...
    def clock(self) -> datetime: ...
    def accounts(self) -> list[str]: ...


# -- values the templates render ---------------------------------------------------------------

#: Labels of the report's figures; a key not listed reads as its name.
LABELS = {
    "base_currency": "Base currency",
    "net_liquidation": "Net liquidation",
    "excess_liquidity": "Excess liquidity",
    "cushion": "Cushion",
    "gross_position_value": "Gross position value",
    "maint_margin_req": "Maintenance margin",
    "init_margin_req": "Initial margin",
    "equity_with_loan": "Equity with loan",
    "available_funds": "Available funds",
    "sma": "SMA",
    "margin_loan": "Margin loan",
    "leverage": "Gross leverage",
    "gross_leverage": "Gross leverage",
    "net_leverage": "Net leverage",
    "positions": "Positions",
}

#: Keys of the report entry that are not figures (shown elsewhere on the page).
NOT_FIGURES = frozenset({"account", "status", "findings", "base_currency"})


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure as shown: its report key, label, raw value and text."""

    key: str
    label: str
    value: Any
    text: str


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """The gateway link as the banner shows it: ``level`` ok, warning or critical."""

    level: str
    title: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Card:
    """An account's card on the overview."""

    account: str
    status: str
    base_currency: str
    entry: dict[str, Any]
    net_liquidation: Figure
    excess_liquidity: Figure
    cushion: Figure
    gross_leverage: Figure
    net_leverage: Figure
    distance: Figure
    gauge_svg: str
    estimated: bool
    data_age: float | None
    evaluated_at: datetime | None
    frozen_at: datetime | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def source_text(self) -> str:
        """Whose figures these are: IB's, the real-time estimate between IB's pushes, or the
        last ones known (frozen while there is no data)."""
        if self.frozen_at is not None:
            return "last known figures (no data now)"
        if self.net_liquidation.value is None:
            return "no data"
        return "real-time estimate" if self.estimated else "IB's figures"


@dataclass(frozen=True, slots=True)
class FindingRow:
    """A rule's current finding, formatted."""

    rule: str
    summary: str
    severity: str
    value: str
    threshold: str
    message: str
    action: str
    estimated: bool
    data_missing: bool
    details: list[Figure]


@dataclass(frozen=True, slots=True)
class AlertRow:
    """An alert firing now."""

    rule: str
    severity: str
    since: datetime | None
    last_notified: datetime | None
    last_value: str


@dataclass(frozen=True, slots=True)
class TransitionRow:
    """One of the day's alert transitions."""

    at: datetime
    rule: str
    kind: str
    previous: str
    severity: str
    value: str
    message: str
    estimated: bool


@dataclass(frozen=True, slots=True)
class PositionRow:
    """A position with its share of NLV and the maintenance rate the engine assumes."""

    symbol: str
    sec_type: str
    quantity: float
    currency: str
    price: str
    value: str
    value_base: str
    share: float | None
    share_text: str
    rate: float | None
    rate_text: str
    rate_basis: str


@dataclass(frozen=True, slots=True)
class AccountPage:
    """Everything on an account's page."""

    card: Card
    figures: list[Figure]
    findings: list[FindingRow]
    firing: list[AlertRow]
    transitions: list[TransitionRow]
    chart_svg: str
    positions: list[PositionRow]
    day: date
    zone: ZoneInfo


@dataclass(frozen=True, slots=True)
class Overview:
    """The overview: every account's card and the link's state."""

    cards: list[Card]
    status: LinkStatus
    worst: str
    counts: dict[str, int]


# -- what the page remembers of the latest evaluations -----------------------------------------


class Recent:
    """The latest evaluations as the page needs them (bounded, in memory).

    The chart's live tail: the cushion and leverage of the last evaluation of every
    ``spacing`` seconds, for the last ``keep`` (the store keeps one row a minute, so a sell-off
    inside a minute shows as a line). And each account's last evaluation that had IB's values,
    shown frozen while the gateway is away (the service then has no figures to judge).
    """

    def __init__(self, spacing: float = 2.0, keep: timedelta = timedelta(minutes=30)) -> None:
        self.spacing = spacing
        self.keep = keep
        self._points: dict[str, deque[ChartPoint]] = {}
        self._with_values: dict[str, EvaluatedView] = {}

    def record(self, account: str, view: EvaluatedView) -> None:
        """Remember an evaluation; within one ``spacing`` slot the worst point is kept (the
        lowest cushion, the highest leverage), as the history keeps each minute's."""
        snapshot, at = view.snapshot, view.evaluated_at
        if snapshot is None or at is None or not is_number(snapshot.net_liquidation):
            return
        self._with_values[account] = view
        points = self._points.setdefault(account, deque())
        point = ChartPoint(at, snapshot.measured_cushion, snapshot.leverage, snapshot.estimated)
        if points and self._slot(points[-1].at) == self._slot(at):
            points[-1] = _worse(points[-1], point)
        else:
            points.append(point)
        while points and at - points[0].at > self.keep:
            points.popleft()

    def since(self, account: str, start: datetime) -> list[ChartPoint]:
        """The points of ``account`` at or after ``start``."""
        return [point for point in self._points.get(account, ()) if point.at >= start]

    def with_values(self, account: str) -> EvaluatedView | None:
        """The account's last evaluation that had IB's values."""
        return self._with_values.get(account)

    def _slot(self, moment: datetime) -> int:
        return int(moment.timestamp() // self.spacing)


def _worse(kept: ChartPoint, new: ChartPoint) -> ChartPoint:
    """One point for a slot: the new point's time, the lower cushion, the higher leverage."""
    cushions = [v for v in (kept.cushion, new.cushion) if v is not None]
    leverages = [v for v in (kept.leverage, new.leverage) if v is not None]
    return ChartPoint(
        new.at,
        min(cushions) if cushions else None,
        max(leverages) if leverages else None,
        kept.estimated or new.estimated,
    )


# -- building the values -----------------------------------------------------------------------


def account_entry(source: WebSource, account: str) -> dict[str, Any]:
    """The account's ``check --json`` entry from the service's last evaluation (no findings
    before the first one)."""
    view = source.views.get(account)
    if view is None:
        return account_report(account, None, [])
    return account_report(account, view.snapshot, view.findings)


def known_accounts(source: WebSource) -> list[str]:
    """Every account the page can show: watched now, remembered, or evaluated (not the
    link's pseudo-account: the banner says when the monitor is blind)."""
    accounts = [a for a in source.accounts() if not is_link_account(a)]
    return accounts + sorted(a for a in set(source.views) - set(accounts) if not is_link_account(a))


def link_status(source: WebSource) -> LinkStatus:
    """The gateway link: live, lost at IB (1100), disconnected, or blind (too long without)."""
    state = source.connector.state
    now = source.clock()
    rules = source.settings.rules.stale_data
    if not state.connected:
        since = state.disconnected_since
        gone = (now - since).total_seconds() if since is not None else None
        zone = zone_named(source.settings.summary.timezone)
        when = f" since {since.astimezone(zone):%H:%M:%S}" if since is not None else ""
        if gone is not None and gone >= rules.blind_minutes * 60:
            return LinkStatus(
                "critical",
                "Monitor blind: no data from the gateway",
                f"Disconnected{when}; the figures below are the last ones received.",
            )
        return LinkStatus(
            "warning",
            "Gateway disconnected",
            f"Reconnecting{when}; the figures below are frozen.",
        )
    if not state.live:
        return LinkStatus(
            "critical",
            "IB connection lost (1100)",
            "The gateway is up but has no connection to IB; the figures are frozen.",
        )
    return LinkStatus("ok", "Connected: figures live")


def card(
    source: WebSource,
    account: str,
    entry: dict[str, Any] | None = None,
    recent: Recent | None = None,
) -> Card:
    """An account's card; ``entry`` is its ``check --json`` entry (built when not given).

    While the service has no figures for the account (the gateway is away), the card shows
    the last ones it had, marked frozen, coloured by the alerts still held.
    """
    entry = entry if entry is not None else account_entry(source, account)
    shown, frozen = entry, None
    view = source.views.get(account)
    if (view is None or view.snapshot is None) and recent is not None:
        frozen = recent.with_values(account)
        if frozen is not None:
            shown = account_report(account, frozen.snapshot, frozen.findings)
    base = shown.get("base_currency") or ""
    latest = frozen or view
    snapshot = latest.snapshot if latest is not None else None
    levels = source.settings.rules.cushion
    cushion = _figure(shown, "cushion", "percent", base)
    distance = next(
        (f for f in shown["findings"] if f["rule"] == "distance_to_liquidation"), None
    )
    seen = source.connector.last_values_at(account)
    return Card(
        account=account,
        status=account_status(source, account),
        base_currency=base,
        entry=entry,
        net_liquidation=_figure(shown, "net_liquidation", "money", base),
        excess_liquidity=_figure(shown, "excess_liquidity", "money", base),
        cushion=cushion,
        gross_leverage=_figure(
            shown, "gross_leverage" if "gross_leverage" in shown else "leverage", "multiple", base
        ),
        net_leverage=_figure(shown, "net_leverage", "multiple", base),
        distance=Figure(
            "distance_to_liquidation",
            "Distance to liquidation",
            distance["value"] if distance else None,
            format_value(distance["value"] if distance else None, "percent"),
        ),
        gauge_svg=gauge_svg(
            cushion.value if is_number(cushion.value) else None,
            levels.warning,
            levels.critical,
            label=f"cushion {cushion.text}; warning below {_level(levels.warning)}, "
            f"critical below {_level(levels.critical)}",
        ),
        estimated=bool(snapshot is not None and snapshot.estimated),
        data_age=(source.clock() - seen).total_seconds() if seen is not None else None,
        evaluated_at=view.evaluated_at if view is not None else None,
        frozen_at=frozen.evaluated_at if frozen is not None else None,
        problems=[
            f"{f['rule']}: {f['message']}" for f in entry["findings"] if f["severity"] != "ok"
        ],
    )


def overview(source: WebSource, recent: Recent | None = None) -> Overview:
    """Every account's card (in the managed accounts' order) and the link's state."""
    cards = [card(source, account, recent=recent) for account in known_accounts(source)]
    counts, overall = tally(item.status for item in cards)
    return Overview(cards, link_status(source), overall, counts)


def account_status(source: WebSource, account: str) -> str:
    """The account's worst severity now (its report's ``status``); while its data is missing
    (``unknown``), the worst alert still held (missing data never resolves an alert)."""
    view = source.views.get(account)
    if view is not None and view.findings:
        now = worst(finding.severity for finding in view.findings)
        if now != Severity.UNKNOWN:
            return now.value
    held = worst(
        state.severity for (name, _), state in source.states.items() if name == account
    )
    return held.value if held in (Severity.WARNING, Severity.CRITICAL) else "unknown"


def tally(statuses: Iterable[str]) -> tuple[dict[str, int], str]:
    """Accounts per severity, and the worst severity (``unknown`` with no account)."""
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    if not counts:
        return counts, Severity.UNKNOWN.value
    return counts, worst(Severity(status) for status in counts).value


def account_page(
    source: WebSource, account: str, recent: Recent | None = None
) -> AccountPage | None:
    """The account's page, or ``None`` for an account the monitor does not know."""
    if account not in known_accounts(source):
        return None
    entry = account_entry(source, account)
    base = entry.get("base_currency") or ""
    shown = card(source, account, entry, recent)
    view = source.views.get(account)
    if shown.frozen_at is not None and recent is not None:
        view = recent.with_values(account)
    snapshot = view.snapshot if view is not None else None
    zone = zone_named(source.settings.summary.timezone)
    now = source.clock()
    day = now.astimezone(zone).date()
    start = datetime.combine(day, datetime.min.time(), tzinfo=zone)
    end = start + timedelta(days=1)
    events = source.store.alert_events(account, start, end)
    figures = (
        entry if view is None or shown.frozen_at is None
        else account_report(account, snapshot, view.findings)
    )
    return AccountPage(
        card=shown,
        figures=report_figures(figures),
        findings=[finding_row(f, base) for f in entry["findings"]],
        firing=firing_alerts(source.states.values(), account, base),
        transitions=[transition_row(event, base) for event in reversed(events)],
        chart_svg=day_chart(source, account, start, end, events, recent, zone),
        positions=position_rows(snapshot, _rates(source, account, snapshot)),
        day=day,
        zone=zone,
    )


def report_figures(entry: Mapping[str, Any]) -> list[Figure]:
    """Every figure of the report entry, in its order, whatever keys it carries."""
    base = entry.get("base_currency") or ""
    return [
        _figure(entry, key, None, base) for key in entry if key not in NOT_FIGURES
    ]


#: Figures that are amounts in the account's base currency: the report's, and those the
#: rules put at the top of a finding's details (deeper, a name can mean another currency).
BASE_MONEY = frozenset(
    {
        "net_liquidation", "excess_liquidity", "gross_position_value", "maint_margin_req",
        "init_margin_req", "equity_with_loan", "available_funds", "sma", "margin_loan",
        "long_value", "reserve", "required", "quarterly_cost", "annual_financing_cost",
        "look_ahead_excess_liquidity", "projected_excess_liquidity", "deposit", "account_peak",
        "ib_warning_line", "annual_cost", "daily_cost", "cost_of_rise", "below_peak",
        "requirement_increase", "excess_liquidity_cost",
    }
)
#: Words that make a figure a fraction shown as a percentage (``sleeve_share``, ``cap``...).
PERCENT_WORDS = frozenset(
    {"cushion", "share", "rate", "ratio", "drawdown", "distance", "cap", "weight", "drift",
     "move", "jump"}
)
#: An amount named with its currency: ``net_liquidation_usd``.
CURRENCY_SUFFIX = re.compile(r"_(usd|eur|gbp|chf|jpy|cad|aud|hkd|sgd|sek|nok|dkk)$")


def reading(key: str, *, nested: bool = False) -> tuple[Unit, str | None]:
    """How a figure named ``key`` reads: its unit and, for money, its currency (``None``: the
    base currency). Only names known to be base-currency amounts get the base currency; an
    unknown name reads as a plain number rather than risk a wrong currency."""
    name = key.lower()
    if name.endswith("leverage"):
        return "multiple", None
    if PERCENT_WORDS & set(name.split("_")):
        return "percent", None
    if name.endswith("_base") or (name in BASE_MONEY and not nested):
        return "money", None
    if match := CURRENCY_SUFFIX.search(name):
        return "money", match.group(1).upper()
    return "number", None


def finding_row(finding: Mapping[str, Any], base: str) -> FindingRow:
    """A finding of the report entry, formatted with its rule's unit."""
    rule = finding["rule"]
    unit = unit_of(rule)
    try:
        summary = spec(rule).summary
    except KeyError:
        summary = ""
    details = finding.get("details") or {}
    return FindingRow(
        rule=rule,
        summary=summary,
        severity=finding["severity"],
        value=format_value(finding["value"], unit, base),
        threshold=format_value(finding["threshold"], unit, base),
        message=finding["message"],
        action=finding.get("action") or "",
        estimated=bool(finding.get("estimated")),
        data_missing=bool(finding.get("data_missing")),
        details=[
            _figure(details, key, None, base, label=key.replace("_", " ")) for key in details
        ],
    )


def firing_alerts(states: Iterable[AlertState], account: str, base: str) -> list[AlertRow]:
    """The account's alerts firing now (warning or critical), worst first."""
    rows = [
        AlertRow(
            rule=state.rule,
            severity=state.severity.value,
            since=state.episode_started,
            last_notified=state.last_notified,
            last_value=format_value(state.last_value, unit_of(state.rule), base),
        )
        for state in states
        if state.account == account and state.severity in (Severity.WARNING, Severity.CRITICAL)
    ]
    return sorted(rows, key=lambda row: (-Severity(row.severity).rank, row.rule))


def transition_row(event: Mapping[str, Any], base: str) -> TransitionRow:
    """A stored alert event as the page lists it."""
    return TransitionRow(
        at=event["at"],
        rule=event["rule"],
        kind=event["kind"],
        previous=event["previous_severity"],
        severity=event["severity"],
        value=format_value(event.get("value"), unit_of(event["rule"]), base),
        message=event.get("message") or "",
        estimated=bool(event.get("estimated")),
    )


def day_chart(
    source: WebSource,
    account: str,
    start: datetime,
    end: datetime,
    events: Sequence[Mapping[str, Any]],
    recent: Recent | None,
    zone: ZoneInfo,
) -> str:
    """Today's cushion and gross leverage from the history store, each minute at its worst
    (lowest cushion, highest leverage), plus the latest evaluations (finer than its minutes);
    the cushion and gross leverage rules' levels, the day's alert transitions and gaps."""
    tail = recent.since(account, start) if recent is not None else []
    cut = tail[0].at if tail else end
    points = [
        ChartPoint(
            row["at"],
            worst_in_minute(row, "cushion"),
            worst_in_minute(row, "leverage"),
            row["estimated"],
        )
        for row in source.store.samples(account, start, end)
        if row["at"] < cut
    ] + tail
    rules = source.settings.rules
    panels = (
        Panel("cushion", "Cushion", "percent", (rules.cushion.warning, rules.cushion.critical)),
        Panel(
            "leverage",
            "Gross leverage",
            "multiple",
            (rules.gross_leverage.warning, rules.gross_leverage.critical),
        ),
    )
    markers = [
        ChartMarker(
            event["at"],
            event["severity"],
            f"{event['at'].astimezone(zone):%H:%M:%S} {event['rule']} {event['kind']} "
            f"({event['previous_severity']} -> {event['severity']})",
        )
        for event in events
    ]
    gaps = [(gap["start"], gap["end"]) for gap in source.store.gaps(start, end)]
    return day_chart_svg(
        points,
        panels,
        markers=markers,
        gaps=gaps,
        now=source.clock(),
        zone=zone,
        title=f"{account}: cushion and gross leverage today",
    )


def position_rows(
    snapshot: AccountSnapshot | None, rates: Mapping[int, tuple[float, str]]
) -> list[PositionRow]:
    """The positions, largest first, with their share of NLV and the assumed maintenance rate."""
    if snapshot is None:
        return []
    nlv = snapshot.net_liquidation
    base = snapshot.base_currency
    rows = []
    ordered = sorted(
        snapshot.positions, key=lambda p: abs(p.market_value_base or 0.0), reverse=True
    )
    for position in ordered:
        value = position.market_value_base
        share = value / nlv if is_number(value) and is_number(nlv) and nlv > 0 else None
        rate, basis = rates.get(position.con_id, (None, ""))
        rows.append(
            PositionRow(
                symbol=position.symbol,
                sec_type=position.sec_type,
                quantity=position.quantity,
                currency=position.currency,
                price=_number(position.market_price),
                value=format_value(position.market_value, "money", position.currency),
                value_base=format_value(value, "money", base),
                share=share,
                share_text=format_value(share, "percent"),
                rate=rate,
                rate_text=format_value(rate, "percent", digits=1),
                rate_basis=basis,
            )
        )
    return rows


def _rates(
    source: WebSource, account: str, snapshot: AccountSnapshot | None
) -> dict[int, tuple[float, str]]:
    """Each position's maintenance rate as the estimate applies it, and where it comes from:
    configured (or a leveraged ETF's), else the average IB's requirement leaves for the rest."""
    if snapshot is None:
        return {}
    baseline = source.baselines.get(account) or make_baseline(snapshot, source.known_rate)
    positions = {p.con_id: p for p in baseline.snapshot.positions}
    rates = {}
    for con_id, rate in baseline.maintenance_rates.items():
        position = positions.get(con_id)
        known = position is not None and source.known_rate(position) is not None
        rates[con_id] = (rate, "set" if known else "book average")
    return rates


def _figure(
    entry: Mapping[str, Any], key: str, unit: Unit | None, base: str, *, label: str | None = None
) -> Figure:
    """``entry[key]`` with its label and text (``n/a`` when missing or unknown); its unit
    from its name unless given."""
    value = entry.get(key)
    shown = label or LABELS.get(key, key.replace("_", " ").capitalize())
    if unit is None:
        unit, currency = reading(key)
        return Figure(key, shown, value, _text(value, unit, currency or base))
    return Figure(key, shown, value, _text(value, unit, base))


def _text(value: Any, unit: Unit, currency: str) -> str:
    """Any value as text: numbers by ``unit`` (money in ``currency``), tables as ``key:
    value`` pairs each read by its own name, lists joined."""
    if value is None:
        return NOT_AVAILABLE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if unit == "number" and float(value).is_integer():
            return f"{int(value):,}"
        return format_value(float(value), unit, currency)
    if isinstance(value, Mapping):
        parts = []
        for key, item in value.items():
            inner, named = reading(str(key), nested=True)
            if inner == "number" and unit == "percent":
                inner = unit  # a table of fractions: {"-10%": 0.55}
            parts.append(f"{key}: {_text(item, inner, named or currency)}")
        return "; ".join(parts) or "none"
    if isinstance(value, list | tuple):
        return ", ".join(_text(item, unit, currency) for item in value) or "none"
    return str(value)


def _level(fraction: float | None) -> str:
    """A rule level as a whole percentage: ``20%``."""
    return format_value(fraction, "percent", digits=0)


def _number(value: float | None) -> str:
    """A price: two decimals (four significant digits under 1)."""
    if not is_number(value):
        return NOT_AVAILABLE
    return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"


# -- the summaries archive ---------------------------------------------------------------------

#: The daily summary's Markdown file and its charts, as the daemon names them.
SUMMARY_FILE = re.compile(r"^summary-(\d{4}-\d{2}-\d{2})\.md$")
CHART_FILE = re.compile(r"^summary-[A-Za-z0-9._-]+-(\d{4}-\d{2}-\d{2})\.png$")


@dataclass(frozen=True, slots=True)
class SummaryEntry:
    """One day of the archive: its Markdown file and its chart files."""

    day: date
    markdown: Path
    charts: list[str]


def summaries(directory: Path) -> list[SummaryEntry]:
    """The daily summaries saved in ``directory``, newest first (none when it is missing)."""
    if not directory.is_dir():
        return []
    charts: dict[str, list[str]] = {}
    days: dict[str, Path] = {}
    for path in directory.iterdir():
        if match := SUMMARY_FILE.match(path.name):
            days[match.group(1)] = path
        elif match := CHART_FILE.match(path.name):
            charts.setdefault(match.group(1), []).append(path.name)
    entries = []
    for text, path in days.items():
        try:
            day = date.fromisoformat(text)
        except ValueError:
            continue
        entries.append(SummaryEntry(day, path, sorted(charts.get(text, []))))
    return sorted(entries, key=lambda entry: entry.day, reverse=True)


def summary_for(directory: Path, day: str) -> SummaryEntry | None:
    """The archive's entry for ``day`` (as given in a URL), or ``None``: only a listed day."""
    return next((entry for entry in summaries(directory) if entry.day.isoformat() == day), None)


def chart_path(directory: Path, name: str) -> Path | None:
    """A chart file of the archive by its name, only when it is one (never a path outside)."""
    if not CHART_FILE.match(name):
        return None
    path = directory / name
    return path if path.is_file() else None


def markdown_html(text: str) -> str:
    """The daily summary's Markdown as HTML: headings, nested lists and paragraphs.

    The summary is written by :func:`monitor.summary.render_markdown`, which uses no more than
    this; everything is escaped, so a symbol or message can never inject markup.
    """
    html: list[str] = []
    lists: list[bool] = []  # one per open <ul>: whether an <li> is open in it

    def close_to(level: int) -> None:
        while len(lists) > level:
            if lists.pop():
                html.append("</li>")
            html.append("</ul>")

    for raw in text.splitlines():
        line = raw.rstrip()
        if item := re.match(r"^( *)- (.*)$", line):
            level = min(len(item.group(1)) // 2 + 1, len(lists) + 1)
            close_to(level)
            if len(lists) < level:
                html.append("<ul>")
                lists.append(False)
            if lists[-1]:
                html.append("</li>")
            html.append(f"<li>{escape(item.group(2))}")
            lists[-1] = True
            continue
        close_to(0)
        if heading := re.match(r"^(#{1,4}) (.*)$", line):
            size = len(heading.group(1)) + 1
            html.append(f"<h{size}>{escape(heading.group(2))}</h{size}>")
        elif line:
            html.append(f"<p>{escape(line)}</p>")
    close_to(0)
    return "".join(html)
