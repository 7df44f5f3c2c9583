"""The status page's view data (monitor/webview.py): the figures on the page are the entry
``check --json`` prints, formatted by the project's one formatter, plus the link's state, the
alerts, the day's history from a real SQLite store and the positions' assumed rates."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.estimate import RateLookup, rate_lookup
from monitor.report import account_report
from monitor.service import AccountView
from monitor.settings import Settings
from monitor.store import Store
from monitor.webchart import ChartMarker, ChartPoint, Panel, day_chart_svg, gauge_svg
from monitor.webview import (
    Recent,
    account_page,
    card,
    chart_path,
    link_status,
    markdown_html,
    overview,
    report_figures,
    summaries,
)
from rules import evaluate, leveraged_factors
from rules.lifecycle import step
from rules.model import AccountSnapshot, EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot, stock

# -- a stand-in for the service: the attributes of the WebSource protocol, real store -----------


@dataclass
class Link:
    connected: bool = True
    live: bool = True
    disconnected_since: datetime | None = None


@dataclass
class Connector:
    state: Link = field(default_factory=Link)
    seen: dict[str, datetime] = field(default_factory=dict)

    def last_values_at(self, account: str) -> datetime | None:
        return self.seen.get(account)


@dataclass
class Source:
    """What the page reads from ``MonitorService``, held as plain values."""

    settings: Settings
    store: Store
    now: datetime = SAMPLE_TIME
    views: dict[str, AccountView] = field(default_factory=dict)
    states: dict[tuple[str, str], Any] = field(default_factory=dict)
    connector: Connector = field(default_factory=Connector)
    baselines: dict[str, Any] = field(default_factory=dict)
    remembered: list[str] = field(default_factory=list)

    @property
    def known_rate(self) -> RateLookup:
        return rate_lookup(
            self.settings.monitor.maintenance_rates,
            leveraged_factors(self.settings.rules.leveraged_etf),
        )

    def clock(self) -> datetime:
        return self.now

    def accounts(self) -> list[str]:
        return list(self.views) + [a for a in self.remembered if a not in self.views]

    def evaluate(self, snapshot: AccountSnapshot) -> AccountView:
        """Evaluate like the service: IB's values one minute old, findings kept as the view."""
        self.connector.seen[snapshot.account] = self.now - timedelta(minutes=1)
        context = EvaluationContext(now=self.now, last_update=self.now - timedelta(minutes=1))
        findings = evaluate(snapshot, context, self.settings.rules)
        view = AccountView(snapshot, findings, self.now)
        self.views[snapshot.account] = view
        return view


@pytest.fixture
def source(tmp_path: Path):
    settings = Settings(monitor={"state_dir": tmp_path, "maintenance_rates": {"AAA": 0.30}})
    with Store(tmp_path / "monitor.sqlite3") as store:
        yield Source(settings, store)


def book(**values: Any) -> AccountSnapshot:
    """The sample account (NLV 100,000, EL 62,500, GPV 150,000, maintenance 37,500) holding
    AAA worth 90,000 and BBB worth 60,000."""
    positions = (stock("AAA", 90_000.0, quantity=900), stock("BBB", 60_000.0, quantity=600))
    return sample_snapshot(positions, **{"cushion": 0.625, **values})


# -- cards -------------------------------------------------------------------------------------


def test_a_card_shows_the_check_json_entry_itself(source):
    """The card's entry is ``account_report`` of the last evaluation (what ``check --json``
    prints) and each figure on it is that entry's value: cushion 62,500 / 100,000 = 62.50%;
    gross leverage 150,000 / 100,000 = 1.50x; distance to liquidation (the rule's finding)
    d* = EL / ((1 - m) x GPV) with m = 37,500 / 150,000 = 25%: 62,500 / 112,500 = 55.56%; IB's
    values are a minute old."""
    view = source.evaluate(book())
    entry = account_report("DU111", view.snapshot, view.findings)

    shown = card(source, "DU111")

    assert shown.entry == entry
    assert shown.status == entry["status"]
    assert (shown.cushion.value, shown.cushion.text) == (entry["cushion"], "62.50%")
    assert shown.net_liquidation.text == "USD 100,000.00"
    assert shown.excess_liquidity.text == "USD 62,500.00"
    assert (shown.gross_leverage.value, shown.gross_leverage.text) == (entry["leverage"], "1.50x")
    distance = next(f for f in entry["findings"] if f["rule"] == "distance_to_liquidation")
    assert shown.distance.value == distance["value"]
    assert shown.distance.text == "55.56%"
    assert shown.data_age == 60.0
    assert shown.source_text == "IB's figures"
    assert 'aria-label="cushion 62.50%; warning below 20%, critical below 10%"' in shown.gauge_svg


def test_a_card_reads_net_and_gross_leverage_when_the_report_carries_them(source):
    """The report carries ``net_leverage`` (issue 10: (long - short) / NLV, here the long-only
    book's 150,000 / 100,000 = 1.5x) and the card shows it; given ``gross_leverage`` too, the
    card shows that; a figure the report lacks reads n/a."""
    view = source.evaluate(book())
    entry = account_report("DU111", view.snapshot, view.findings)
    assert card(source, "DU111", entry).net_leverage.text == "1.50x"
    assert card(source, "DU111", {**entry, "net_leverage": None}).net_leverage.text == "n/a"

    richer = {**entry, "gross_leverage": 1.7, "net_leverage": -0.25}
    shown = card(source, "DU111", richer)
    assert (shown.gross_leverage.text, shown.net_leverage.text) == ("1.70x", "-0.25x")


def test_an_estimate_is_marked_as_such(source):
    """Figures moved by the real-time estimate say so on the card."""
    source.evaluate(book(estimated=True))
    assert card(source, "DU111").source_text == "real-time estimate"


def test_every_figure_of_the_report_is_shown_whatever_its_keys(source):
    """The account page lists every key of the entry: known ones with their labels, new ones
    by name; a missing cushion reads n/a beside its reason; a table (per currency) reads as
    ``key: value`` pairs, each by its own name: an amount in another currency (the CHF debit)
    is never labelled with the base currency, one named ``_base`` or ``_usd`` is."""
    entry = {
        "account": "DU1",
        "base_currency": "EUR",
        "net_liquidation": -1_000.0,
        "cushion": None,
        "cushion_reason": "no equity: NLV is not positive",
        "net_leverage": 1.25,
        "financing_by_currency": [
            {"currency": "CHF", "debit": 25_000.0, "debit_base": 26_500.0, "effective_rate": 0.035}
        ],
        "net_liquidation_usd": 1_080.0,
        "positions": 3,
        "status": "critical",
        "findings": [],
    }
    shown = {figure.key: (figure.label, figure.text) for figure in report_figures(entry)}
    assert shown == {
        "net_liquidation": ("Net liquidation", "EUR -1,000.00"),
        "cushion": ("Cushion", "n/a"),
        "cushion_reason": ("Cushion reason", "no equity: NLV is not positive"),
        "net_leverage": ("Net leverage", "1.25x"),
        "financing_by_currency": (
            "Financing by currency",
            "currency: CHF; debit: 25,000; debit_base: EUR 26,500.00; effective_rate: 3.50%",
        ),
        "net_liquidation_usd": ("Net liquidation usd", "USD 1,080.00"),
        "positions": ("Positions", "3"),
    }


# -- the account's page ------------------------------------------------------------------------


def test_the_account_page_has_each_finding_the_alerts_the_day_and_the_positions(source):
    """A cushion of 15,000 / 100,000 = 15% fires a warning: the page has one row per finding
    in the report's order (cushion: 15.00% against 20.00%, with its action), the alert firing,
    the day's transition from the store (and its marker on the chart), the chart drawn from
    the stored history, and the positions largest first with their share of NLV (AAA 90,000
    = 90.00%, BBB 60%) and the maintenance rate the estimate applies: AAA's configured 30%,
    and for BBB what is left of IB's 37,500 requirement, (37,500 - 0.30 x 90,000) / 60,000 =
    17.5%."""
    view = source.evaluate(book(excess_liquidity=15_000.0, cushion=0.15))
    cushion = next(f for f in view.findings if f.rule == "cushion")
    state, transition = step(None, cushion, source.now)
    assert transition is not None
    source.store.record_alert_event(transition)
    source.states[state.key] = state
    source.store.record_sample(
        "DU111", source.now - timedelta(minutes=5), {"cushion": 0.25, "leverage": 1.4}
    )
    source.store.record_sample("DU111", source.now, {"cushion": 0.15, "leverage": 1.5})
    entry = account_report("DU111", view.snapshot, view.findings)

    page = account_page(source, "DU111")

    assert page is not None
    assert [row.rule for row in page.findings] == [f["rule"] for f in entry["findings"]]
    row = next(row for row in page.findings if row.rule == "cushion")
    assert (row.severity, row.value, row.threshold) == ("warning", "15.00%", "20.00%")
    assert row.action and row.action == cushion.action
    assert [(a.rule, a.severity) for a in page.firing] == [("cushion", "warning")]
    assert [(t.rule, t.kind, t.previous, t.severity) for t in page.transitions] == [
        ("cushion", "fired", "ok", "warning")
    ]
    assert 'class="marker marker-warning"' in page.chart_svg
    assert page.chart_svg.count('class="line line-cushion"') == 1
    assert [(p.symbol, p.share_text, p.rate_text, p.rate_basis) for p in page.positions] == [
        ("AAA", "90.00%", "30.0%", "set"),
        ("BBB", "60.00%", "17.5%", "book average"),
    ]


def test_an_account_the_monitor_does_not_know_has_no_page(source):
    """Only a watched or remembered account has a page (the server answers 404 otherwise)."""
    source.evaluate(book())
    source.remembered.append("DU999")
    assert account_page(source, "DU999") is not None
    assert account_page(source, "DU111'; DROP TABLE samples; --") is None


def test_the_overview_counts_accounts_by_severity(source):
    """One card per account in the managed order; an account not evaluated yet is unknown;
    the page's colour is the worst."""
    source.evaluate(book(account="DU1", excess_liquidity=15_000.0, cushion=0.15))
    source.evaluate(sample_snapshot(account="DU2", cash_balance=10_000.0, cushion=0.625))
    source.remembered.append("DU3")

    shown = overview(source)

    assert [c.account for c in shown.cards] == ["DU1", "DU2", "DU3"]
    assert [c.status for c in shown.cards] == ["warning", "ok", "unknown"]
    assert shown.counts == {"warning": 1, "ok": 1, "unknown": 1}
    assert shown.worst == "warning"


@pytest.mark.parametrize(
    ("link", "level", "title"),
    [
        (Link(), "ok", "Connected: figures live"),
        (Link(live=False), "critical", "IB connection lost (1100)"),
        (
            Link(connected=False, disconnected_since=SAMPLE_TIME - timedelta(minutes=1)),
            "warning",
            "Gateway disconnected",
        ),
        (
            Link(connected=False, disconnected_since=SAMPLE_TIME - timedelta(minutes=5)),
            "critical",
            "Monitor blind: no data from the gateway",
        ),
    ],
    ids=["live", "1100", "disconnected", "blind"],
)
def test_the_banner_says_how_the_gateway_link_stands(source, link, level, title):
    """Live; IB lost behind the gateway; disconnected; blind once disconnected for
    ``[rules.stale_data] blind_minutes`` (5)."""
    source.connector.state = link
    shown = link_status(source)
    assert (shown.level, shown.title) == (level, title)


def test_recent_points_keep_the_last_evaluation_of_each_slot_for_a_while(source):
    """The chart's live tail: one point per 2 s slot (the last wins), none older than 30 min."""
    recent = Recent(spacing=2.0, keep=timedelta(minutes=30))
    start = SAMPLE_TIME
    for seconds, cushion in ((0.0, 0.30), (0.5, 0.29), (2.0, 0.25), (3.9, 0.20)):
        moment = start + timedelta(seconds=seconds)
        recent.record("DU111", AccountView(book(cushion=cushion), [], moment))
    assert [p.cushion for p in recent.since("DU111", start)] == [0.29, 0.20]
    later = start + timedelta(minutes=31)
    recent.record("DU111", AccountView(book(cushion=0.5), [], later))
    assert [p.cushion for p in recent.since("DU111", start)] == [0.5]


def test_without_data_the_card_shows_the_last_figures_frozen_in_the_held_alert_colour(source):
    """The gateway went away: the service's findings are unknown and it has no snapshot, but
    the cushion alert (15%: warning) is still held. The card keeps the last figures it saw,
    says they are frozen and from when, and takes the held alert's colour; its entry is still
    what ``check --json`` would print now (no figures)."""
    recent = Recent()
    view = source.evaluate(book(excess_liquidity=15_000.0, cushion=0.15))
    recent.record("DU111", view)
    cushion = next(f for f in view.findings if f.rule == "cushion")
    state, _ = step(None, cushion, source.now)
    source.states[state.key] = state
    missing = [replace(f, severity=Severity.UNKNOWN, data_missing=True) for f in view.findings]
    source.views["DU111"] = AccountView(None, missing, source.now + timedelta(minutes=1))

    shown = card(source, "DU111", recent=recent)

    assert shown.entry["net_liquidation"] is None
    assert (shown.cushion.text, shown.net_liquidation.text) == ("15.00%", "USD 100,000.00")
    assert shown.frozen_at == view.evaluated_at
    assert shown.source_text == "last known figures (no data now)"
    assert shown.status == "warning"
    page = account_page(source, "DU111", recent)
    assert page is not None
    assert {f.key: f.text for f in page.figures}["cushion"] == "15.00%"
    assert [p.symbol for p in page.positions] == ["AAA", "BBB"]
    assert {row.severity for row in page.findings} == {"unknown"}


# -- the summaries archive -------------------------------------------------------------------


def test_the_archive_lists_saved_days_newest_first_with_their_charts(tmp_path):
    """Only the daemon's file names count: ``summary-<day>.md`` and its charts
    ``summary-<account>-<day>.png``; anything else in the folder is ignored."""
    for name in (
        "summary-2026-11-20.md",
        "summary-2026-11-21.md",
        "summary-DU1-2026-11-21.png",
        "summary-DU2-2026-11-21.png",
        "notes.txt",
        "summary-2026-13-40.md",
    ):
        (tmp_path / name).write_text("x")

    found = [(e.day.isoformat(), e.charts) for e in summaries(tmp_path)]

    assert found == [
        ("2026-11-21", ["summary-DU1-2026-11-21.png", "summary-DU2-2026-11-21.png"]),
        ("2026-11-20", []),
    ]
    assert summaries(tmp_path / "missing") == []


@pytest.mark.parametrize(
    "name",
    ["../monitor.sqlite3", "summary-DU1-2026-11-21.png/..", "x.png", "summary-DU9-2026-11-21.png"],
)
def test_a_chart_is_served_only_by_its_exact_archive_name(tmp_path, name):
    """Nothing outside the folder, nothing not named like a chart, nothing that is not there."""
    (tmp_path / "summary-DU1-2026-11-21.png").write_bytes(b"png")
    assert chart_path(tmp_path, name) is None
    assert chart_path(tmp_path, "summary-DU1-2026-11-21.png") == (
        tmp_path / "summary-DU1-2026-11-21.png"
    )


def test_the_summary_markdown_becomes_escaped_html():
    """Headings, a list with a nested list, and any markup in the text escaped."""
    text = (
        "# Daily margin summary\n\n## DU1 — 2026-11-21\n- NLV <b>1</b>\n- Alerts: 2\n"
        "  - 10:51 cushion fired\n  - 12:21 cushion escalated\n- Largest: A & B\n"
    )
    assert markdown_html(text) == (
        "<h2>Daily margin summary</h2><h3>DU1 — 2026-11-21</h3>"
        "<ul><li>NLV &lt;b&gt;1&lt;/b&gt;</li><li>Alerts: 2<ul><li>10:51 cushion fired</li>"
        "<li>12:21 cushion escalated</li></ul></li><li>Largest: A &amp; B</li></ul>"
    )


# -- the drawings --------------------------------------------------------------------------------


def test_the_gauge_puts_its_needle_at_the_cushion_on_a_scale_of_twice_the_warning_level():
    """Scale 0-50% over 200 units (twice the 20% warning level is 40%, below the 50% minimum):
    bands end at 10% (x 40) and 20% (x 80); a 25% cushion sits at x 100 (the needle is 3 wide,
    centred); beyond the scale it is pinned at the end; unknown has no needle."""
    svg = gauge_svg(0.25, 0.20, 0.10)
    assert 'class="band band-critical" x="0.0" y="4" width="40.0"' in svg
    assert 'class="band band-warning" x="40.0" y="4" width="40.0"' in svg
    assert 'class="needle" x="98.5"' in svg
    assert 'class="needle" x="197.0"' in gauge_svg(0.83, 0.20, 0.10)
    assert 'class="needle" x="0.0"' in gauge_svg(-0.05, 0.20, 0.10)
    assert "needle" not in gauge_svg(None, 0.20, 0.10)


def test_the_day_chart_draws_lines_levels_alerts_and_gaps():
    """A missing value breaks the line; each level is a labelled dashed line; an alert is a
    vertical line with its description; a gap is shaded; no point at all says so."""
    start = SAMPLE_TIME
    points = [
        ChartPoint(start, 0.30, 1.5),
        ChartPoint(start + timedelta(minutes=1), 0.18, 1.7),
        ChartPoint(start + timedelta(minutes=2), None, None),
        ChartPoint(start + timedelta(minutes=3), 0.08, 2.1),
        ChartPoint(start + timedelta(minutes=4), 0.09, 2.0),
    ]
    panels = [
        Panel("cushion", "Cushion", "percent", (0.20, 0.10)),
        Panel("leverage", "Gross leverage", "multiple", (1.6, 2.0)),
    ]
    marker = ChartMarker(start + timedelta(minutes=1), "warning", "cushion fired <ok -> warning>")
    gap = (start + timedelta(minutes=2), start + timedelta(minutes=3))

    svg = day_chart_svg(points, panels, markers=[marker], gaps=[gap])

    assert svg.count('class="line line-cushion"') == 2
    assert svg.count('class="line line-leverage"') == 2
    assert ">warning 20%</text>" in svg and ">critical 10%</text>" in svg
    assert ">warning 1.6x</text>" in svg and ">critical 2.0x</text>" in svg
    assert "<title>cushion fired &lt;ok -&gt; warning&gt;</title>" in svg
    assert 'class="gap"' in svg
    assert "No history recorded today yet" in day_chart_svg([], panels)
