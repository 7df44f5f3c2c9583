"""Margin rules: cushion, look-ahead, SMA, portfolio-margin floor, distance to liquidation,
minimum equity. Each: ok, warning, critical, missing data, and the action's amounts."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import figures
from rules.config import (
    CushionConfig,
    DistanceToLiquidationConfig,
    LookAheadConfig,
    MinEquityConfig,
    PmEquityFloorConfig,
    SmaConfig,
)
from rules.margin import (
    cushion,
    distance_to_liquidation,
    look_ahead,
    min_equity,
    pm_equity_floor,
    sma,
)
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
IN_REG_T_WINDOW = EvaluationContext(now=datetime(2026, 5, 11, 20, 30, tzinfo=UTC))  # 16:30 EDT
SATURDAY_1630 = EvaluationContext(now=datetime(2026, 5, 16, 20, 30, tzinfo=UTC))

OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN


# -- cushion ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "severity", "value", "in_message", "in_action"),
    [
        ({}, OK, 0.625, "Cushion 62.5%", None),
        (
            {"excess_liquidity": 15_000.0},
            WARNING,
            0.15,
            "below the warning level 20%",
            "Sell about USD 20,000.00 of positions (at 25% maintenance) or deposit about "
            "USD 6,250.00 to restore a 20% cushion",
        ),
        (
            {"excess_liquidity": 8_000.0},
            CRITICAL,
            0.08,
            "below the critical level 10%",
            "Sell about USD 48,000.00 of positions (at 25% maintenance)",
        ),
        (
            {
                "excess_liquidity": 25_000.0,
                "maint_margin_req": 300_000.0,
                "gross_position_value": 600_000.0,
            },
            CRITICAL,
            0.25,
            "IBKR's warning line (10% of maintenance USD 300,000.00 = USD 30,000.00)",
            "Sell about USD 9,090.91 of positions (at 50% maintenance)",
        ),
        (
            {"excess_liquidity": -1_000.0},
            CRITICAL,
            -0.01,
            "LIQUIDATING",
            "Sell about USD 84,000.00",
        ),
        ({"cushion": 0.30}, OK, 0.30, "Cushion 30%", None),
    ],
    ids=["ok", "warning", "critical-48000", "ib-warning-line", "liquidating", "cushion-tag"],
)
def test_cushion(values, severity, value, in_message, in_action):
    """Levels 20% / 10%, IBKR's line (EL <= 10% of maintenance) and EL < 0."""
    finding = cushion(sample_snapshot(**values), NOON, CushionConfig())
    assert finding.rule == "cushion"
    assert finding.account == "DU111"
    assert finding.severity is severity
    assert finding.value == pytest.approx(value)
    assert in_message in finding.message
    if in_action is None:
        assert finding.action is None
    else:
        assert in_action in finding.action
    assert not finding.data_missing


def test_cushion_action_in_base_currency():
    """The restoring-sale figure of margin-rules.md, in the account's own currency."""
    snapshot = sample_snapshot(base_currency="EUR", excess_liquidity=8_000.0)
    finding = cushion(snapshot, NOON, CushionConfig())
    assert "Sell about EUR 48,000.00 of positions (at 25% maintenance)" in finding.action
    assert "deposit about EUR 15,000.00 to restore a 20% cushion" in finding.action


def test_cushion_without_a_rate_only_suggests_a_deposit():
    """No maintenance rate (no GPV): a deposit, never a sale sized with a made-up rate."""
    snapshot = sample_snapshot(excess_liquidity=15_000.0, gross_position_value=None)
    finding = cushion(snapshot, NOON, CushionConfig())
    assert finding.severity is WARNING
    assert finding.action == "Deposit about USD 6,250.00 to restore a 20% cushion"


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"net_liquidation": None}, "NetLiquidation"),
        ({"net_liquidation": 0.0}, "NetLiquidation (not positive: 0)"),
        ({"net_liquidation": -5.0}, "not positive"),
        ({"excess_liquidity": None}, "ExcessLiquidity"),
        ({"excess_liquidity": float("nan")}, "ExcessLiquidity"),
    ],
    ids=["no-nlv", "zero-nlv", "negative-nlv", "no-el", "nan-el"],
)
def test_cushion_missing_data(values, named):
    """Missing or nonsensical inputs: unknown, data_missing, naming what is missing."""
    finding = cushion(sample_snapshot(**values), NOON, CushionConfig())
    assert finding.severity is UNKNOWN
    assert finding.data_missing
    assert finding.value is None
    assert named in finding.message


def test_cushion_hysteresis_and_estimated_flag():
    """Just above the warning level the alert still holds (clear margin 2 pp)."""
    snapshot = sample_snapshot(excess_liquidity=21_000.0, estimated=True)
    finding = cushion(snapshot, NOON, CushionConfig())
    assert finding.severity is OK
    assert finding.clear_severity is WARNING
    assert finding.estimated is True
    assert cushion(sample_snapshot(), NOON, CushionConfig()).clear_severity is OK


def test_cushion_thresholds_are_configurable():
    """Configured levels replace the defaults."""
    config = CushionConfig(warning=0.70, critical=0.65)
    finding = cushion(sample_snapshot(), NOON, config)
    assert finding.severity is CRITICAL
    assert finding.threshold == 0.65
    assert "restore a 70% cushion" in finding.action


@settings(max_examples=150)
@given(
    nlv=st.floats(10_000, 1e8),
    leverage=st.floats(1.05, 4.0),
    rate=st.floats(0.1, 0.6),
    cushion_now=st.floats(-0.2, 0.19),
)
def test_restoring_sale_applied_to_the_snapshot_restores_the_cushion(
    nlv, leverage, rate, cushion_now
):
    """Apply the action's sale (NLV unchanged, EL + m x S, GPV - S): the cushion is the target."""
    gross = leverage * nlv
    snapshot = sample_snapshot(
        net_liquidation=nlv,
        gross_position_value=gross,
        maint_margin_req=rate * gross,
        excess_liquidity=cushion_now * nlv,
    )
    config = CushionConfig(ib_warning_line=0.0)
    before = cushion(snapshot, NOON, config)
    assert before.severity in (WARNING, CRITICAL)
    sale = figures.restoring_sale(nlv, cushion_now * nlv, config.warning, rate)
    if sale >= gross:
        assert "selling positions alone cannot" in before.action
        return
    assert f"USD {sale:,.2f}" in before.action
    after_gross = gross - sale
    restored = replace(
        snapshot,
        gross_position_value=after_gross,
        maint_margin_req=rate * after_gross,
        excess_liquidity=snapshot.excess_liquidity + rate * sale,
    )
    after = cushion(restored, NOON, config)
    assert math.isclose(after.value, config.warning, rel_tol=1e-9, abs_tol=1e-9)


# -- look-ahead -------------------------------------------------------------------------------

CHANGE = datetime(2026, 5, 11, 19, 0, tzinfo=UTC)  # 15:00 EDT, overnight margin


@pytest.mark.parametrize(
    ("values", "severity", "in_message", "in_action"),
    [
        ({}, OK, "Look-ahead cushion 62.5%", None),
        (
            {"look_ahead_excess_liquidity": 15_000.0, "look_ahead_next_change": CHANGE},
            WARNING,
            "15% at 2026-05-11 15:00 EDT is below the warning level 20%",
            "Before 2026-05-11 15:00 EDT, sell about USD 20,000.00 of positions",
        ),
        (
            {"look_ahead_excess_liquidity": -5_000.0, "look_ahead_next_change": CHANGE},
            CRITICAL,
            "LookAheadExcessLiquidity will be USD -5,000.00 at 2026-05-11 15:00 EDT",
            "Before 2026-05-11 15:00 EDT, sell about USD 100,000.00 of positions (at 25% "
            "maintenance) or deposit about USD 31,250.00 to keep a 20% cushion when the "
            "look-ahead margin takes effect",
        ),
        (
            {"look_ahead_excess_liquidity": -5_000.0},
            CRITICAL,
            "at the next margin change (time not reported)",
            "USD 100,000.00",
        ),
    ],
    ids=["ok", "warning", "critical-with-time", "critical-no-time"],
)
def test_look_ahead(values, severity, in_message, in_action):
    """LookAheadExcessLiquidity < 0 is critical and names when it takes effect."""
    finding = look_ahead(sample_snapshot(**values), NOON, LookAheadConfig())
    assert finding.severity is severity
    assert in_message in finding.message
    assert (finding.action is None) if in_action is None else (in_action in finding.action)


def test_look_ahead_uses_the_cushion_warning_level_unless_configured():
    """The warning level follows the cushion rule's unless look_ahead sets its own."""
    snapshot = sample_snapshot(look_ahead_excess_liquidity=25_000.0)
    assert look_ahead(snapshot, NOON, LookAheadConfig()).severity is OK
    shared = look_ahead(snapshot, NOON, LookAheadConfig(), cushion=CushionConfig(warning=0.3))
    assert shared.severity is WARNING
    own = look_ahead(snapshot, NOON, LookAheadConfig(warning=0.26))
    assert own.severity is WARNING


def test_look_ahead_adds_no_warning_when_no_worse_than_today():
    """A low look-ahead cushion equal to today's is the cushion rule's business alone."""
    same = sample_snapshot(excess_liquidity=15_000.0, look_ahead_excess_liquidity=15_000.0)
    finding = look_ahead(same, NOON, LookAheadConfig())
    assert finding.severity is OK and finding.held_severity is OK
    assert "no lower than today's" in finding.message
    worse = sample_snapshot(excess_liquidity=30_000.0, look_ahead_excess_liquidity=15_000.0)
    assert look_ahead(worse, NOON, LookAheadConfig()).severity is WARNING
    deficit = sample_snapshot(excess_liquidity=-5_000.0, look_ahead_excess_liquidity=-5_000.0)
    assert look_ahead(deficit, NOON, LookAheadConfig()).severity is CRITICAL


def test_look_ahead_missing():
    """No look-ahead value: unknown."""
    finding = look_ahead(sample_snapshot(look_ahead_excess_liquidity=None), NOON, LookAheadConfig())
    assert finding.severity is UNKNOWN and finding.data_missing
    assert "LookAheadExcessLiquidity" in finding.message


# -- SMA --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sma_value", "context", "severity", "in_action"),
    [
        (20_000.0, NOON, OK, None),
        (
            -1_000.0,
            NOON,
            WARNING,
            "Raise SMA by USD 1,000.00 before 15:50 America/New_York: deposit USD 1,000.00 or "
            "sell about USD 2,000.00 of positions",
        ),
        (-1_000.0, IN_REG_T_WINDOW, CRITICAL, "Raise SMA by USD 1,000.00 now"),
        (-1_000.0, SATURDAY_1630, WARNING, "before 15:50"),
        (20_000.0, IN_REG_T_WINDOW, OK, None),
    ],
    ids=["ok", "warning-midday", "critical-in-window", "weekend-not-window", "ok-in-window"],
)
def test_sma(sma_value, context, severity, in_action):
    """SMA < 0 is a warning, critical inside 15:50-17:20 New York on weekdays."""
    finding = sma(sample_snapshot(sma=sma_value), context, SmaConfig())
    assert finding.severity is severity
    assert finding.value == sma_value
    assert (finding.action is None) if in_action is None else (in_action in finding.action)
    if severity is not OK:
        assert finding.clear_severity is severity


def test_sma_missing():
    """No SMA: unknown."""
    finding = sma(sample_snapshot(sma=None), NOON, SmaConfig())
    assert finding.severity is UNKNOWN and finding.data_missing and "SMA" in finding.message


# -- portfolio-margin floor and minimum equity ------------------------------------------------

PM = PmEquityFloorConfig(portfolio_margin_accounts=("DU111",))


@pytest.mark.parametrize(
    ("values", "severity", "in_action"),
    [
        ({"net_liquidation": 120_000.0}, OK, None),
        (
            {"net_liquidation": 105_000.0},
            WARNING,
            "Deposit about USD 5,000.00 to bring NLV back to USD 110,000.00",
        ),
        ({"net_liquidation": 95_000.0}, CRITICAL, "Deposit about USD 15,000.00"),
        (
            {"net_liquidation": 95_000.0, "base_currency": "EUR", "exchange_rates": {"USD": 0.9}},
            WARNING,
            "Deposit about EUR 4,000.00 (USD 4,444.44)",
        ),
    ],
    ids=["ok", "warning", "critical", "eur-base"],
)
def test_pm_equity_floor(values, severity, in_action):
    """PM accounts: NLV in USD under 110,000 warning, under 100,000 critical."""
    finding = pm_equity_floor(sample_snapshot(**values), NOON, PM)
    assert finding.severity is severity
    assert (finding.action is None) if in_action is None else (in_action in finding.action)


def test_pm_equity_floor_not_applicable_and_missing():
    """A non-PM account is ok (not missing); a PM account without a USD rate is unknown."""
    other = pm_equity_floor(sample_snapshot(net_liquidation=5.0), NOON, PmEquityFloorConfig())
    assert other.severity is OK and not other.data_missing
    assert "Not a portfolio-margin account" in other.message
    no_rate = pm_equity_floor(sample_snapshot(base_currency="CHF"), NOON, PM)
    assert no_rate.severity is UNKNOWN and no_rate.data_missing
    assert "USD exchange rate for base currency CHF" in no_rate.message


@pytest.mark.parametrize(
    ("values", "severity", "in_action"),
    [
        ({}, OK, None),
        ({"net_liquidation": 1_500.0}, WARNING, "Deposit about USD 500.00 to reach USD 2,000.00"),
        (
            {"net_liquidation": 1_000.0, "base_currency": "GBP", "exchange_rates": {"USD": 0.8}},
            WARNING,
            "Deposit about GBP 600.00 (USD 750.00)",
        ),
    ],
    ids=["ok", "warning", "gbp-base"],
)
def test_min_equity(values, severity, in_action):
    """NLV converted to USD under 2,000."""
    finding = min_equity(sample_snapshot(**values), NOON, MinEquityConfig())
    assert finding.severity is severity
    assert (finding.action is None) if in_action is None else (in_action in finding.action)


def test_min_equity_missing():
    """Zero NLV is missing data, not a 'below minimum' alert."""
    finding = min_equity(sample_snapshot(net_liquidation=0.0), NOON, MinEquityConfig())
    assert finding.severity is UNKNOWN and finding.data_missing


# -- distance to liquidation ------------------------------------------------------------------


def test_distance_to_liquidation_example_and_falls():
    """d* = 62,500 / (0.75 x 150,000) = 55.6%, with the cushion after -10%, -12%, -20%."""
    finding = distance_to_liquidation(sample_snapshot(), NOON, DistanceToLiquidationConfig())
    assert finding.severity is OK
    assert round(finding.value * 100, 1) == 55.6
    assert "55.6%" in finding.message
    falls = finding.details["cushion_after_falls"]
    assert list(falls) == ["-10%", "-12%", "-20%"]
    assert falls["-10%"] == pytest.approx(51_250 / 85_000)
    assert falls["-20%"] == pytest.approx(40_000 / 70_000)


@pytest.mark.parametrize(
    ("values", "severity", "in_action"),
    [
        (
            {"excess_liquidity": 15_000.0},
            WARNING,
            "Sell about USD 5,172.41 of positions (at 25% maintenance) so the account withstands "
            "a 15% fall",
        ),
        ({"excess_liquidity": 7_500.0}, CRITICAL, "withstands a 15% fall"),
        ({"excess_liquidity": -100.0}, CRITICAL, "Sell about"),
    ],
    ids=["warning", "critical", "negative-el"],
)
def test_distance_to_liquidation_levels(values, severity, in_action):
    """Warning under 15%, critical under 8%; the sale restores 15%."""
    finding = distance_to_liquidation(
        sample_snapshot(**values), NOON, DistanceToLiquidationConfig()
    )
    assert finding.severity is severity
    assert in_action in finding.action


def test_distance_to_liquidation_not_applicable_and_missing():
    """No positions: ok, not applicable. Missing maintenance: unknown."""
    flat = sample_snapshot(gross_position_value=0.0, maint_margin_req=0.0)
    finding = distance_to_liquidation(flat, NOON, DistanceToLiquidationConfig())
    assert finding.severity is OK and not finding.data_missing
    gap = distance_to_liquidation(
        sample_snapshot(maint_margin_req=None), NOON, DistanceToLiquidationConfig()
    )
    assert gap.severity is UNKNOWN and "MaintMarginReq" in gap.message
