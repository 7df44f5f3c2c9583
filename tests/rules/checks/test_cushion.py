"""The ``cushion`` rule: ok, warning, critical, IBKR's warning line, EL < 0, missing data,
the action's amounts (a property: the sale restores the cushion), and its settings."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import figures
from rules.checks.cushion import CushionConfig, cushion
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN


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


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: CushionConfig(warning=0.1, critical=0.2), "warning (0.1) must be above critical"),
        (lambda: CushionConfig(warning=1.5), "warning must be a fraction"),
        (lambda: CushionConfig(critical=float("nan")), "critical must be a finite number"),
    ],
    ids=["order", "range", "nan"],
)
def test_cushion_settings_say_what_to_fix(build, fragment):
    """Each ValueError names the field and the problem."""
    with pytest.raises(ValueError) as caught:
        build()
    assert fragment in str(caught.value)
