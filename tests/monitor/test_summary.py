"""The daily summary from a stored synthetic day: figures, renderings, chart, command, sending.

Everything is real: a SQLite file in tmp_path written through ``Store``, alert events made by
the real lifecycle, matplotlib's Agg renderer, Apprise posting to a local ``Receiver``. The
expected figures are computed by hand in the comments next to them.

The synthetic day, account DU123, Monday 2026-06-15 in New York (EDT, UTC-4). A long-only book
with a $250,000 margin loan and an average maintenance rate m = 40%:

    local  NLV      EL       GPV      Maint    cushion         leverage
    09:30  500,000  200,000  750,000  300,000  0.40            1.50
    11:15  550,000  230,000  800,000  320,000  230/550=0.4182  800/550=1.4545
    13:45  400,000  140,000  650,000  260,000  0.35            650/400=1.625
    16:00  450,000  170,000  700,000  280,000  170/450=0.3778  700/450=1.5556

plus rows one minute before and at the next local midnight (excluded), a stored peak of
600,000, a leverage alert fired at 13:45 and resolved at 16:00, and a gap 12:00-12:07.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor.app import build_service
from monitor.cli import main
from monitor.daemon import daily_summary, summary_trigger
from monitor.service import history_figures
from monitor.settings import load_settings
from monitor.sim.receiver import Receiver
from monitor.store import Store
from monitor.summary import (
    CHART_SIZE,
    Sample,
    build_summaries,
    charts_for,
    day_bounds,
    render_lines,
    render_markdown,
    render_text,
    summarize,
)
from rules import evaluate
from rules.checks.financing_cost import CurrencyTerms, FinancingCostConfig, financing_cost
from rules.checks.leverage import LeverageConfig
from rules.lifecycle import step
from rules.model import EvaluationContext, Finding, Severity, grade_above
from rules.samples import sample_snapshot, stock

NEW_YORK = ZoneInfo("America/New_York")
DAY = date(2026, 6, 15)
ACCOUNT = "DU123"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """No MARGIN_MONITOR_* variable from the developer's shell changes the settings."""
    for name in list(os.environ):
        if name.startswith("MARGIN_MONITOR_"):
            monkeypatch.delenv(name)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    """An aware New York wall-clock time."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)


def write_config(tmp_path: Path, extra: str = "") -> Path:
    """A config whose state_dir is in tmp_path, with the worked-example interest tiers."""
    path = tmp_path / "config.toml"
    path.write_text(
        f'[monitor]\nstate_dir = "{tmp_path / "state"}"\n'
        '[summary]\ntimezone = "America/New_York"\n'
        "[rules.financing_cost]\n"
        "tiers = [{ up_to = 150000.0, rate = 0.03 }, { rate = 0.04 }]\n" + extra,
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def row(nlv, el, gpv, maint, extra=None):
    """One evaluation's history figures (the shape service.history_figures produces)."""
    return {
        "net_liquidation": nlv,
        "excess_liquidity": el,
        "cushion": el / nlv,
        "gross_position_value": gpv,
        "maint_margin_req": maint,
        "leverage": gpv / nlv,
        "margin_loan": 250_000.0,
        "annual_financing_cost": 8_500.0,
        "estimated": False,
        "extra": {
            "base_currency": "USD",
            "leveraged_etf_share": 0.10,
            "net_leverage": gpv / nlv,  # long only: net is gross
            **(extra or {}),
        },
    }


CLOSE_EXTRA = {
    "leveraged_etf_share": 0.15,
    "largest_positions": [
        {"symbol": "VOO", "value": 385_000.0, "share": 385_000 / 450_000},
        {"symbol": "SCHD", "value": 247_500.0, "share": 247_500 / 450_000},
        {"symbol": "TQQQ", "value": 67_500.0, "share": 67_500 / 450_000},
    ],
}


def leverage_finding(value: float) -> Finding:
    severity, clear = grade_above(value, 1.6, 2.0, 0.04)
    return Finding(
        "leverage",
        ACCOUNT,
        severity,
        value,
        1.6,
        f"gross leverage {value:.2f}x",
        clear_severity=clear,
    )


def store_day(path: Path) -> None:
    """Write the synthetic day (and some history around it) into a real state file."""
    with Store(path) as store:
        store.update_peak(ACCOUNT, 600_000.0)  # an earlier high
        previous_evening = local(DAY, 0) - timedelta(minutes=1)  # 23:59 the day before
        store.record_sample(ACCOUNT, previous_evening, row(900_000, 10_000, 950_000, 380_000))
        store.record_sample(ACCOUNT, local(DAY, 9, 30), row(500_000, 200_000, 750_000, 300_000))
        store.record_sample(ACCOUNT, local(DAY, 11, 15), row(550_000, 230_000, 800_000, 320_000))
        store.record_sample(ACCOUNT, local(DAY, 13, 45), row(400_000, 140_000, 650_000, 260_000))
        store.record_sample(
            ACCOUNT, local(DAY, 16, 0), row(450_000, 170_000, 700_000, 280_000, CLOSE_EXTRA)
        )
        next_midnight = local(DAY + timedelta(days=1), 0)
        store.record_sample(ACCOUNT, next_midnight, row(100_000, 5_000, 500_000, 200_000))
        # Another account, same day: listed, but its figures never mix with DU123's.
        store.record_sample("DU999", local(DAY, 10), row(80_000, 40_000, 60_000, 15_000))

        # Alerts by the real lifecycle: leverage 1.625 > 1.6 fires a warning at 13:45; at
        # 16:00 it is 1.5556, below the clear level 1.6 - 0.04 = 1.56, so it resolves.
        state, fired = step(None, leverage_finding(650_000 / 400_000), local(DAY, 13, 45))
        _, resolved = step(state, leverage_finding(700_000 / 450_000), local(DAY, 16, 0))
        assert fired is not None and fired.kind == "fired"
        assert resolved is not None and resolved.kind == "resolved"
        store.record_alert_event(fired)
        store.record_alert_event(resolved)
        # Outside the day, and another account's: neither belongs in DU123's summary.
        _, before = step(None, leverage_finding(2.5), local(DAY, 0) - timedelta(hours=2))
        store.record_alert_event(before)
        other = Finding("cushion", "DU999", Severity.WARNING, 0.15, 0.20, "cushion 15%")
        _, other_fired = step(None, other, local(DAY, 10))
        store.record_alert_event(other_fired)

        store.record_gap(local(DAY, 12), local(DAY, 12, 7), "disconnected")
        store.record_gap(local(DAY, 3) - timedelta(days=1), local(DAY, 4) - timedelta(days=1), "x")


@pytest.fixture
def configured(tmp_path):
    """(settings, config path, state file) with the synthetic day stored."""
    config = write_config(tmp_path)
    settings = load_settings(config)
    state_file = settings.monitor.database_path
    store_day(state_file)
    return settings, config, state_file


def png_size(path_or_bytes: Path | bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (after checking the signature)."""
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    assert data[:8] == PNG_MAGIC
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# -- figures -------------------------------------------------------------------------------------


def test_the_figures_of_a_stored_day_match_the_hand_computed_values(configured):
    """Every figure the issue lists, from the rows of one local day only."""
    settings, _, state_file = configured
    with Store(state_file) as store:
        summaries, samples = build_summaries(store, settings, DAY)

    assert [s.account for s in summaries] == [ACCOUNT, "DU999"]
    day = summaries[0]
    assert day.base_currency == "USD"
    assert day.samples == 4 == len(samples[ACCOUNT])  # the 23:59 and next-midnight rows are out

    assert day.nlv_open == 500_000
    assert day.nlv_close == 450_000
    assert day.nlv_high == 550_000
    assert day.nlv_low == 400_000
    assert day.peak == 600_000  # the stored peak beats the day's high
    assert day.drawdown == pytest.approx(0.25)  # 1 - 450,000 / 600,000

    assert day.cushion_min == pytest.approx(0.35)
    assert day.cushion_min_at == local(DAY, 13, 45)
    assert day.cushion_max == pytest.approx(230_000 / 550_000)
    assert day.cushion_close == pytest.approx(170_000 / 450_000)
    assert day.leverage_min == pytest.approx(800_000 / 550_000)
    assert day.leverage_max == pytest.approx(1.625)
    assert (day.net_leverage_min, day.net_leverage_max) == (day.leverage_min, day.leverage_max)

    # 150,000 x 3% + 100,000 x 4% = 8,500 a year; /360 = 23.61 a day; 3.4%; +0.5 pp = +1,250.
    assert day.margin_loan == 250_000
    assert day.annual_cost == pytest.approx(8_500)
    assert round(day.daily_cost, 2) == 23.61
    assert day.effective_rate == pytest.approx(0.034)
    assert day.cost_of_half_point == pytest.approx(1_250)

    # At the close (rows without the rule's exposure read as all long): k = 700,000 - 280,000
    # = 420,000, so a fall of EL / k = 170,000 / 420,000 empties EL.
    assert day.distance_to_liquidation == pytest.approx(170_000 / 420_000)
    assert day.liquidation_direction == "fall"
    # A fall d: EL' = 170,000 - d x 420,000 and NLV' = 450,000 - d x 700,000.
    assert day.cushion_after_moves == pytest.approx(
        {
            "-10%": 128_000 / 380_000,  # 0.3368
            "-12%": 119_600 / 366_000,  # 0.3268
            "-20%": 86_000 / 310_000,  # 0.2774
        }
    )

    assert day.leveraged_etf_share == pytest.approx(0.15)  # the close's, not the morning's 0.10
    assert [p["symbol"] for p in day.largest_positions] == ["VOO", "SCHD", "TQQQ"]
    assert day.largest_positions[0]["share"] == pytest.approx(385 / 450)

    assert [(a["rule"], a["kind"], a["previous_severity"], a["severity"]) for a in day.alerts] == [
        ("leverage", "fired", "ok", "warning"),
        ("leverage", "resolved", "warning", "ok"),
    ]
    assert [a["at"] for a in day.alerts] == [local(DAY, 13, 45), local(DAY, 16, 0)]
    assert day.gaps == [
        {"start": local(DAY, 12), "end": local(DAY, 12, 7), "reason": "disconnected"}
    ]

    other = summaries[1]
    assert other.nlv_close == 80_000 and other.samples == 1
    assert [a["rule"] for a in other.alerts] == ["cushion"]


def test_an_account_without_history_that_day_says_so(configured):
    """Asked for explicitly, an account with no rows gets an empty day, not a crash."""
    settings, _, state_file = configured
    with Store(state_file) as store:
        summaries, _ = build_summaries(store, settings, DAY + timedelta(days=3), [ACCOUNT])
    assert summaries[0].samples == 0 and summaries[0].nlv_close is None
    assert "No history recorded for this day." in render_text(summaries, NEW_YORK)


@pytest.mark.parametrize(
    ("day", "hours", "inside", "outside"),
    [
        # 2026-11-01: clocks go back at 02:00 EDT; the local day is 25 hours long, from
        # 04:00 UTC to 05:00 UTC the next day. 01:30 happens twice; 23:30 is EST (04:30 UTC).
        (
            date(2026, 11, 1),
            25,
            [
                datetime(2026, 11, 1, 4, 0, tzinfo=UTC),  # 00:00 EDT
                datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT
                datetime(2026, 11, 1, 6, 30, tzinfo=UTC),  # 01:30 EST, the second one
                datetime(2026, 11, 2, 4, 30, tzinfo=UTC),  # 23:30 EST
            ],
            [
                datetime(2026, 11, 1, 3, 59, tzinfo=UTC),  # 23:59 EDT on Oct 31
                datetime(2026, 11, 2, 5, 0, tzinfo=UTC),  # 00:00 EST on Nov 2
            ],
        ),
        # 2026-03-08: clocks go forward at 02:00 EST; 23 hours, 05:00 UTC to 04:00 UTC.
        (
            date(2026, 3, 8),
            23,
            [
                datetime(2026, 3, 8, 5, 0, tzinfo=UTC),  # 00:00 EST
                datetime(2026, 3, 9, 3, 59, tzinfo=UTC),  # 23:59 EDT
            ],
            [
                datetime(2026, 3, 8, 4, 59, tzinfo=UTC),  # 23:59 EST on Mar 7
                datetime(2026, 3, 9, 4, 0, tzinfo=UTC),  # 00:00 EDT on Mar 9
            ],
        ),
    ],
)
def test_the_local_day_follows_daylight_saving_changes(tmp_path, day, hours, inside, outside):
    """A DST day is 25 or 23 hours: rows at both ends are kept, the neighbours' are not."""
    start, end = day_bounds(day, NEW_YORK)
    # (Subtracting two datetimes of the same zone gives wall-clock time: compare in UTC.)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=hours)

    settings = load_settings(write_config(tmp_path))
    with Store(settings.monitor.database_path) as store:
        for index, moment in enumerate(sorted(inside + outside)):
            nlv = 100_000 + 1_000 * index
            store.record_sample(ACCOUNT, moment, row(nlv, nlv / 2, nlv, nlv / 4))
        summaries, samples = build_summaries(store, settings, day)

    assert [s.at for s in samples[ACCOUNT]] == inside
    ordered = sorted(inside + outside)
    assert summaries[0].samples == len(inside)
    assert summaries[0].nlv_open == 100_000 + 1_000 * ordered.index(inside[0])
    assert summaries[0].nlv_close == 100_000 + 1_000 * ordered.index(inside[-1])


def test_no_loan_an_unknown_cost_and_an_unreachable_liquidation_are_said_plainly():
    """Default tiers are spreads over a benchmark nobody configured: the cost is unknown, not
    guessed. A book with EL = (1 - m) x GPV is emptied only by a fall of 100%; one with more
    EL by no fall at all."""
    at = datetime(2026, 6, 15, 15, 0, tzinfo=UTC)
    book = {
        "net_liquidation": 100_000.0,
        "excess_liquidity": 60_000.0,  # = (1 - 0.25) x 80,000: d* = 100%
        "gross_position_value": 80_000.0,
        "maint_margin_req": 20_000.0,
        "cushion": 0.6,
        "leverage": 0.8,
    }
    no_loan = summarize(ACCOUNT, DAY, [Sample(at=at, margin_loan=0.0, **book)], peak=None)
    assert no_loan.distance_to_liquidation == pytest.approx(1.0)
    lines = render_lines(no_loan, NEW_YORK)
    assert "Margin loan: none" in lines
    assert any("Distance to liquidation: a fall of 100.0%" in x for x in lines)
    deeper = summarize(
        ACCOUNT,
        DAY,
        [Sample(at=at, margin_loan=0.0, **{**book, "excess_liquidity": 70_000.0})],
        peak=None,
    )
    assert deeper.distance_to_liquidation is None
    assert any(
        "Distance to liquidation: none (no fall empties ExcessLiquidity (it would take 116.7%" in x
        for x in render_lines(deeper, NEW_YORK)
    )

    unknown = summarize(ACCOUNT, DAY, [Sample(at=at, margin_loan=50_000.0, **book)], peak=None)
    assert unknown.margin_loan == 50_000 and unknown.annual_cost is None
    expected = "Margin loan 50,000.00: cost unknown (set [rules.financing_cost] benchmark_rate)"
    assert expected in render_lines(unknown, NEW_YORK)


def test_the_summary_agrees_with_the_rule_on_a_short_and_a_mixed_book(tmp_path):
    """The summary reads the exposure the distance rule recorded and calls the rule's own
    function: on the short-only book (shorts 21,000, maintenance 12,000, EL 18,000, NLV
    30,000: k = -33,000) both say a rise of 18,000 / 33,000 = 54.5%, and both tables are
    rises; on a mixed book (long 150,000, short 50,000, maintenance 52,500, EL 40,000, NLV
    100,000: k = 47,500) both say a fall of 84.2% and show falls and rises."""
    settings = load_settings(write_config(tmp_path))
    shorts = sample_snapshot(
        (stock("XYZ", -14_000.0), stock("MID", -7_000.0)),
        account=ACCOUNT,
        net_liquidation=30_000.0,
        gross_position_value=21_000.0,
        maint_margin_req=12_000.0,
        excess_liquidity=18_000.0,
    )
    mixed = sample_snapshot(
        (stock("AAA", 150_000.0), stock("ZZZ", -50_000.0)),
        account="DU456",
        gross_position_value=200_000.0,
        maint_margin_req=52_500.0,
        excess_liquidity=40_000.0,
    )
    context = EvaluationContext(now=local(DAY, 15))
    with Store(settings.monitor.database_path) as store:
        rules = {}
        for snapshot in (shorts, mixed):
            findings = evaluate(snapshot, context, settings.rules)
            store.record_sample(
                snapshot.account, local(DAY, 15), history_figures(snapshot, findings)
            )
            rules[snapshot.account] = next(
                f for f in findings if f.rule == "distance_to_liquidation"
            )
        summaries, _ = build_summaries(store, settings, DAY, [ACCOUNT, "DU456"])
    for day in summaries:
        rule = rules[day.account]
        assert day.distance_to_liquidation == pytest.approx(rule.value)
        assert day.liquidation_direction == rule.details["direction"]
        assert day.cushion_after_moves == pytest.approx(rule.details["cushion_after_moves"])
    short_day, mixed_day = summaries
    assert short_day.distance_to_liquidation == pytest.approx(18_000 / 33_000)
    assert short_day.liquidation_direction == "rise"
    assert list(short_day.cushion_after_moves) == ["+10%", "+12%", "+20%"]
    assert mixed_day.distance_to_liquidation == pytest.approx(40_000 / 47_500)
    assert mixed_day.liquidation_direction == "fall"
    assert list(mixed_day.cushion_after_moves) == ["-10%", "-12%", "-20%", "+10%", "+12%", "+20%"]
    assert any(
        "Distance to liquidation: a rise of 54.5%; cushion after a move of +10%" in line
        for line in render_lines(short_day, NEW_YORK)
    )


def test_the_loan_is_broken_down_per_currency_as_the_rule_costed_it():
    """The EUR account with a CHF debit (history row from the financing_cost rule, CHF
    benchmark 0.5%): CHF 25,000.00 = EUR 26,500.00 costs CHF 500.00 a year = EUR 530.00, CHF
    1.39 = EUR 1.47 a day on actual/360; +0.5 pp on EUR 26,500 = EUR 132.50 a year. The
    market benchmark's drawdown (13%) is shown beside the NLV drawdown."""
    terms = FinancingCostConfig(currencies={"CHF": CurrencyTerms(benchmark_rate=0.005)})
    snapshot = sample_snapshot(
        base_currency="EUR",
        cash_balances={"EUR": 8_000.0, "CHF": -25_000.0},
        exchange_rates={"CHF": 1.06},
    )
    finding = financing_cost(snapshot, EvaluationContext(now=snapshot.as_of), terms)
    at = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)
    extra = {"financing_by_currency": finding.details["currencies"], "market_drawdown": 0.13}
    sample = Sample(at=at, net_liquidation=27_868.0, margin_loan=18_500.0, extra=extra)
    day = summarize(ACCOUNT, DAY, [sample], peak=30_000.0, base_currency="EUR")
    assert day.margin_loan == pytest.approx(26_500.0)
    assert day.annual_cost == pytest.approx(530.0)
    lines = render_lines(day, NEW_YORK)
    assert (
        "Margin loan EUR 26,500.00: EUR 1.47/day, EUR 530.00/year, effective 2.00%; "
        "+0.5 pp costs EUR 132.50/year"
    ) in lines
    assert (
        "  CHF 25,000.00 (EUR 26,500.00): CHF 500.00/year, CHF 1.39/day on actual/360, "
        "effective 2.00%"
    ) in lines
    assert any("(the market benchmark: 13.0% below its prior peak)" in line for line in lines)


# -- renderings ----------------------------------------------------------------------------------


def test_text_markdown_and_json_carry_the_figures(configured):
    """The renderings show the figures in the summary's local time."""
    settings, _, state_file = configured
    with Store(state_file) as store:
        summaries, _ = build_summaries(store, settings, DAY, [ACCOUNT])

    text = render_text(summaries, NEW_YORK)
    for expected in (
        "DU123 — 2026-06-15 (USD)",
        "open USD 500,000.00, close USD 450,000.00, high USD 550,000.00, low USD 400,000.00",
        "Peak USD 600,000.00; drawdown 25.0%",
        "min 35.0% at 13:45, max 41.8%, close 37.8%",
        "Leverage: net 1.45x to 1.62x; gross 1.45x to 1.62x",
        "Margin loan USD 250,000.00: USD 23.61/day, USD 8,500.00/year, effective 3.40%;",
        "+0.5 pp costs USD 1,250.00/year",
        "Distance to liquidation: a fall of 40.5%",
        "-10%: 33.7%, -12%: 32.7%, -20%: 27.7%",
        "Leveraged-ETF sleeve: 15.0%",
        "Largest positions: VOO 85.6%, SCHD 55.0%, TQQQ 15.0%",
        "Alerts: 1 fired or escalated, 1 resolved",
        "13:45 leverage fired (ok -> warning)",
        "16:00 leverage resolved (warning -> ok)",
        "12:00-12:07 disconnected",
    ):
        assert expected in text, expected

    markdown = render_markdown(summaries, NEW_YORK)
    assert markdown.startswith("# Daily margin summary")
    assert "## DU123 — 2026-06-15" in markdown
    assert "- Peak USD 600,000.00; drawdown 25.0%" in markdown
    assert "  - 13:45 leverage fired (ok -> warning)" in markdown  # a nested list item
    assert "  - 12:00-12:07 disconnected" in markdown

    data = json.loads(json.dumps([s.to_dict() for s in summaries]))  # strictly JSON-able
    assert data[0]["cushion_min_at"] == "2026-06-15T17:45:00+00:00"
    assert data[0]["alerts"][1]["at"] == "2026-06-15T20:00:00+00:00"
    assert data[0]["gaps"][0]["end"] == "2026-06-15T16:07:00+00:00"


@pytest.mark.slow
def test_the_chart_is_a_png_of_the_expected_size(configured, tmp_path):
    """One chart per account with history, a real PNG of CHART_SIZE pixels."""
    settings, _, state_file = configured
    with Store(state_file) as store:
        summaries, samples = build_summaries(store, settings, DAY)
    paths = charts_for(summaries, samples, tmp_path / "charts", settings)
    assert [p.name for p in paths] == [
        "summary-DU123-2026-06-15.png",
        "summary-DU999-2026-06-15.png",
    ]
    for path in paths:
        assert png_size(path) == CHART_SIZE == (1200, 700)


def test_a_disabled_leverage_level_is_left_off_the_chart(tmp_path):
    """A rule level set to None (here leverage's critical) must not break the chart."""
    settings = load_settings(write_config(tmp_path))
    rules = replace(settings.rules, leverage=LeverageConfig(warning=1.6, critical=None))
    settings = settings.model_copy(update={"rules": rules})
    store_day(settings.monitor.database_path)
    with Store(settings.monitor.database_path) as store:
        summaries, samples = build_summaries(store, settings, DAY, [ACCOUNT])
    (path,) = charts_for(summaries, samples, tmp_path / "charts", settings)
    assert png_size(path) == CHART_SIZE


# -- the command ---------------------------------------------------------------------------------


def test_summary_command_prints_json(configured, capsys):
    """``margin-monitor summary --format json`` prints the figures as one JSON list."""
    _, config, _ = configured
    code = main(["summary", "--config", str(config), "--date", "2026-06-15", "--format", "json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [entry["account"] for entry in data] == [ACCOUNT, "DU999"]
    entry = data[0]
    assert entry["day"] == "2026-06-15"
    assert (entry["nlv_open"], entry["nlv_close"], entry["nlv_high"], entry["nlv_low"]) == (
        500_000,
        450_000,
        550_000,
        400_000,
    )
    assert entry["annual_cost"] == pytest.approx(8_500)
    assert entry["daily_cost"] == pytest.approx(8_500 / 360)
    assert entry["cushion_after_moves"]["-20%"] == pytest.approx(86_000 / 310_000)
    assert entry["rate_rise"] == pytest.approx(0.005)
    assert [a["kind"] for a in entry["alerts"]] == ["fired", "resolved"]


def test_summary_command_prints_text_and_markdown_and_writes_the_chart(
    configured, capsys, tmp_path
):
    """Text and Markdown formats, one account, and ``--chart PATH``."""
    _, config, _ = configured
    chart = tmp_path / "out" / "day.png"
    code = main(
        [
            "summary",
            "--config",
            str(config),
            "--date",
            "2026-06-15",
            "--account",
            ACCOUNT,
            "--chart",
            str(chart),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "DU123 — 2026-06-15 (USD)" in text and "DU999" not in text
    assert "USD 8,500.00/year" in text
    assert png_size(chart) == CHART_SIZE

    code = main(
        ["summary", "--config", str(config), "--date", "2026-06-15", "--format", "markdown"]
    )
    assert code == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("# Daily margin summary")
    assert "## DU999 — 2026-06-15" in markdown


def test_summary_command_without_history_exits_1(tmp_path, capsys):
    """No state file yet: a clear message on stderr and status 1, no empty database made."""
    config = write_config(tmp_path)
    assert main(["summary", "--config", str(config), "--date", "2026-06-15"]) == 1
    assert "no history yet" in capsys.readouterr().err
    assert not (tmp_path / "state" / "monitor.sqlite3").exists()


@pytest.mark.slow
def test_summary_send_delivers_the_text_and_chart_to_a_receiver(configured, capsys):
    """``--send``: one ``info`` POST with the summary and a PNG attachment per account."""
    _, config, _ = configured
    with Receiver() as receiver:
        config.write_text(
            config.read_text() + f'[notify]\nurls = ["{receiver.url}"]\n', encoding="utf-8"
        )
        code = main(["summary", "--config", str(config), "--date", "2026-06-15", "--send"])
        assert code == 0
        (message,) = receiver.wait_for(1, timeout=10)
    captured = capsys.readouterr()
    assert "sent to 1 target(s); 0 failed" in captured.err
    assert message.title == "Daily margin summary 2026-06-15"
    assert message.type == "info"
    assert "USD 8,500.00/year" in message.message
    assert message.notification_id.startswith("summary:2026-06-15:manual:")
    names = sorted(a["filename"] for a in message.attachments)
    assert names == ["summary-DU123-2026-06-15.png", "summary-DU999-2026-06-15.png"]
    for attachment in message.attachments:
        assert attachment["mimetype"] == "image/png"
        assert png_size(base64.b64decode(attachment["base64"])) == CHART_SIZE


def test_summary_send_without_targets_fails_clearly(configured, capsys):
    """``--send`` with no ``[notify] urls``: status 1 and a reason, after printing the summary."""
    _, config, _ = configured
    assert main(["summary", "--config", str(config), "--date", "2026-06-15", "--send"]) == 1
    captured = capsys.readouterr()
    assert "DU123 — 2026-06-15" in captured.out
    assert "no notification targets configured" in captured.err


@pytest.mark.slow
def test_send_daily_summary_saves_markdown_and_sends_once_per_day(configured):
    """The scheduled job: Markdown in the state dir, one ``info`` notification with charts, and
    a second run for the same day (restart, misfire) is not sent again."""
    settings, _, _ = configured
    with Receiver() as receiver:
        settings = settings.model_copy(
            update={"notify": settings.notify.model_copy(update={"urls": [receiver.url]})}
        )
        # 21:30 in New York on the 15th is already the 16th in UTC: the day is the local one.
        clock_time = datetime(2026, 6, 16, 1, 30, tzinfo=UTC)
        service = build_service(settings, clock=lambda: clock_time)
        try:
            path = asyncio.run(daily_summary(service))
            assert receiver.wait_for(1, timeout=10)
            asyncio.run(daily_summary(service))
        finally:
            service.store.close()
        messages = receiver.messages

    assert path == settings.monitor.state_path / "summaries" / "summary-2026-06-15.md"
    markdown = path.read_text(encoding="utf-8")
    assert markdown.startswith("# Daily margin summary")
    assert "USD 8,500.00/year" in markdown and "## DU999 — 2026-06-15" in markdown
    assert len(messages) == 1  # delivery is awaited inside the job, so none is in flight
    (message,) = messages
    assert message.notification_id == "summary:2026-06-15"
    assert message.type == "info"
    assert len(message.attachments) == 2
    for name in ("summary-DU123-2026-06-15.png", "summary-DU999-2026-06-15.png"):
        assert png_size(path.parent / name) == CHART_SIZE


# -- the schedule --------------------------------------------------------------------------------


def fires(settings, start: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times of the summary trigger after ``start`` (time injected)."""
    trigger = summary_trigger(settings)
    moments, previous, now = [], None, start
    for _ in range(count):
        moment = trigger.get_next_fire_time(previous, now)
        moments.append(moment)
        previous, now = moment, moment + timedelta(seconds=1)
    return moments


@pytest.mark.parametrize(
    ("now", "expected_utc"),
    [
        # Spring forward on Sunday 2026-03-08.
        (datetime(2026, 3, 5, 15, 0, tzinfo=UTC), datetime(2026, 3, 5, 22, 0, tzinfo=UTC)),
        # Friday after 17:00 EST: the weekend is skipped, Monday 17:00 is EDT (21:00 UTC).
        (datetime(2026, 3, 6, 22, 30, tzinfo=UTC), datetime(2026, 3, 9, 21, 0, tzinfo=UTC)),
        # Fall back on Sunday 2026-11-01.
        (datetime(2026, 10, 29, 12, 0, tzinfo=UTC), datetime(2026, 10, 29, 21, 0, tzinfo=UTC)),
        (datetime(2026, 10, 30, 21, 30, tzinfo=UTC), datetime(2026, 11, 2, 22, 0, tzinfo=UTC)),
        # Just before the fire time on a weekday: the same day.
        (datetime(2026, 11, 2, 21, 59, tzinfo=UTC), datetime(2026, 11, 2, 22, 0, tzinfo=UTC)),
    ],
)
def test_the_default_schedule_is_17_00_new_york_on_weekdays(now, expected_utc):
    """The cron trigger follows New York's clock through both DST changes of 2026."""
    settings = load_settings(None)
    fire = summary_trigger(settings).get_next_fire_time(None, now)
    assert fire == expected_utc
    assert fire.astimezone(NEW_YORK).hour == 17 and fire.astimezone(NEW_YORK).minute == 0


def test_two_weeks_of_fires_across_the_spring_change_are_all_at_17_00_local():
    """Ten weekday fires, each at 17:00 New York time, none on a weekend."""
    moments = fires(load_settings(None), datetime(2026, 3, 2, tzinfo=UTC), 10)
    local_times = [moment.astimezone(NEW_YORK) for moment in moments]
    assert all((t.hour, t.minute) == (17, 0) for t in local_times)
    assert all(t.weekday() < 5 for t in local_times)
    assert [t.day for t in local_times] == [2, 3, 4, 5, 6, 9, 10, 11, 12, 13]
    utc_hours = [moment.astimezone(UTC).hour for moment in moments]
    assert utc_hours == [22] * 5 + [21] * 5


def test_a_configured_time_zone_and_days_are_honoured(tmp_path):
    """08:15 London time on Saturdays: GMT before 2026-03-29, BST after."""
    config = tmp_path / "config.toml"
    config.write_text(
        '[summary]\ntime = "08:15"\ntimezone = "Europe/London"\ndays = "sat"\n', encoding="utf-8"
    )
    moments = fires(load_settings(config), datetime(2026, 3, 23, tzinfo=UTC), 2)
    assert moments == [
        datetime(2026, 3, 28, 8, 15, tzinfo=UTC),
        datetime(2026, 4, 4, 7, 15, tzinfo=UTC),
    ]
    assert all(m.astimezone(ZoneInfo("Europe/London")).weekday() == 5 for m in moments)


@pytest.mark.slow
def test_the_daemon_starts_without_importing_matplotlib():
    """matplotlib is imported only when a chart is drawn: the daemon and CLI start fast."""
    code = (
        "import sys, monitor.cli, monitor.app, monitor.demo, monitor.service, monitor.summary;"
        "sys.exit('matplotlib' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
