"""The ``cushion`` rule: ok, warning, critical, IBKR's warning line, EL < 0 whatever NLV is,
missing data, the action's amounts (tests/rules/test_remedies.py proves on random books that
they clear the alert), and its settings."""

from __future__ import annotations

import pytest

from rules.checks.cushion import CushionConfig, cushion
from rules.checks.pm_equity_floor import PmEquityFloorConfig
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot, stock

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
            "Sell about USD 28,000.00 of long positions (sized at 25%, the lowest Reg T "
            "maintenance a holding here can have) or deposit about USD 8,974.36 to restore a "
            "22% cushion, where the alert clears",
        ),
        (
            {"excess_liquidity": 8_000.0},
            CRITICAL,
            0.08,
            "below the critical level 10%",
            "Sell about USD 56,000.00 of long positions (sized at 25%",
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
            "Sell about USD 39,285.72 of long positions (sized at 25%, the lowest Reg T "
            "maintenance a holding here can have; about USD 19,642.86 at the average 50%) or "
            "deposit about USD 11,000.00",
        ),
        (
            {"excess_liquidity": -1_000.0},
            CRITICAL,
            -0.01,
            "LIQUIDATING",
            "Sell about USD 92,000.00 of long positions (sized at 25%, the lowest Reg T "
            "maintenance a holding here can have) or deposit about USD 29,487.18",
        ),
        ({"cushion": 0.30}, OK, 0.30, "Cushion 30%", None),
    ],
    ids=["ok", "warning", "critical-56000", "ib-warning-line", "liquidating", "cushion-tag"],
)
def test_cushion(values, severity, value, in_message, in_action):
    """Levels 20% / 10%, IBKR's line (EL <= 10% of maintenance) and EL < 0, on NLV 100,000 and
    GPV 150,000 (no positions: all long). Every action reaches the clear level, 20% + 2 pp =
    22%, at the lowest rate a long Reg T holding can have, 25%, NLV unchanged by a sale:
    from EL 15,000, (22,000 - 15,000) / 25% = 28,000, or a deposit of 7,000 / (1 - 22%) =
    8,974.36 (rounded up). From EL 8,000: 14,000 / 25% = 56,000. From -1,000: 23,000 / 25% =
    92,000 or 23,000 / 0.78 = 29,487.18. IBKR's line, maintenance 300,000: EL must reach 12% of
    a maintenance the sale lowers: (36,000 - 25,000) / (25% x 1.12) = 39,285.72 (19,642.86 at
    the account's average 50%), or a deposit of 36,000 - 25,000 = 11,000."""
    finding = cushion(sample_snapshot(**values), NOON, CushionConfig())
    assert finding.rule == "cushion"
    assert finding.account == "DU111"
    assert finding.severity is severity
    assert finding.value == pytest.approx(value)
    assert in_message in finding.message
    if in_action is None:
        assert finding.action is None
        assert finding.remedies == ()
    else:
        assert in_action in finding.action
    assert not finding.data_missing


def test_cushion_action_in_base_currency():
    """The restoring figures in the account's own currency, as structured remedies too."""
    snapshot = sample_snapshot(base_currency="EUR", excess_liquidity=8_000.0)
    finding = cushion(snapshot, NOON, CushionConfig())
    assert "Sell about EUR 56,000.00 of long positions (sized at 25%" in finding.action
    assert "deposit about EUR 17,948.72 to restore a 22% cushion" in finding.action
    sale, deposit = (remedy.actions for remedy in finding.remedies)
    assert [(a.kind, a.amount, a.currency, a.rate) for a in sale] == [
        ("sell", 56_000.0, "EUR", 0.25)
    ]
    assert [(a.kind, a.amount, a.currency) for a in deposit] == [("deposit", 17_948.72, "EUR")]


def test_cushion_without_positions_value_only_suggests_a_deposit():
    """No GPV and no positions: nothing is known to be held, so a deposit only."""
    snapshot = sample_snapshot(excess_liquidity=15_000.0, gross_position_value=None)
    finding = cushion(snapshot, NOON, CushionConfig())
    assert finding.severity is WARNING
    assert finding.action == (
        "Deposit about USD 8,974.36 to restore a 22% cushion, where the alert clears"
    )


@pytest.mark.parametrize(
    ("nlv", "excess", "value", "in_message", "action"),
    [
        (
            50_000.0,
            -5_000.0,
            -0.10,
            "LIQUIDATING: ExcessLiquidity is USD -5,000.00",
            "Sell about USD 64,000.00 of long positions",
        ),
        (
            0.0,
            -30_000.0,
            None,
            "NetLiquidation is USD 0.00: no cushion can be measured",
            "Deposit about USD 38,461.54 to restore a 22% cushion, where the alert clears "
            "(NetLiquidation is USD 0.00: no sale can restore a cushion while the equity is not "
            "positive)",
        ),
        (
            -10_000.0,
            -40_000.0,
            None,
            "NetLiquidation is USD -10,000.00",
            "Deposit about USD 48,461.54 to restore a 22% cushion",
        ),
        (
            None,
            -40_000.0,
            None,
            "NetLiquidation is unknown",
            "Deposit at least USD 40,000.00 or sell positions now to end the deficit; "
            "NetLiquidation is unknown",
        ),
    ],
    ids=["positive-nlv", "zero-nlv", "negative-nlv", "nlv-unset"],
)
def test_a_deficit_is_critical_whatever_nlv_is(nlv, excess, value, in_message, action):
    """EL < 0 is critical ("IBKR is liquidating") with NLV positive, zero, negative or unset
    (IB's 1.797E308 parses as None), and IB's Cushion tag is ignored without positive equity
    (here a bogus 1.75 = EL / NLV of two negatives). Maintenance 30,000.
    NLV 50,000, EL -5,000: -10% cushion; (0.22 x 50,000 + 5,000) / 25% = 64,000.
    NLV 0, EL -30,000: (0 + 30,000) / 0.78 = 38,461.54; then EL 8,461.54 / NLV 38,461.54 = 22%.
    NLV -10,000, EL -40,000: (-2,200 + 40,000) / 0.78 = 48,461.54 (EL 8,461.54 on NLV
    38,461.54, 22%; and above 12% of maintenance, 3,600)."""
    snapshot = sample_snapshot(
        net_liquidation=nlv,
        excess_liquidity=excess,
        maint_margin_req=30_000.0,
        gross_position_value=120_000.0,
        cushion=1.75 if nlv is not None and nlv <= 0 else None,
    )
    finding = cushion(snapshot, NOON, CushionConfig())
    assert finding.severity is CRITICAL and finding.clear_severity is CRITICAL
    assert not finding.data_missing
    assert finding.value == (pytest.approx(value) if value is not None else None)
    assert finding.message.startswith("LIQUIDATING")
    assert in_message in finding.message
    assert action in finding.action


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"net_liquidation": None}, "NetLiquidation"),
        ({"net_liquidation": 0.0}, "NetLiquidation (not positive: 0.00"),
        ({"net_liquidation": -5.0}, "not positive"),
        ({"excess_liquidity": None}, "ExcessLiquidity"),
        ({"excess_liquidity": float("nan")}, "ExcessLiquidity"),
    ],
    ids=["no-nlv", "zero-nlv", "negative-nlv", "no-el", "nan-el"],
)
def test_cushion_missing_data(values, named):
    """Missing or nonsensical inputs with no known deficit: unknown, naming what is missing."""
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
    assert "restore a 72% cushion" in finding.action


def test_a_short_only_book_buys_back_and_a_portfolio_margin_account_sizes_at_its_floor():
    """Short-only (XYZ -80,000, NLV 100,000, EL 15,000): the action buys back, sized at 30%,
    the lowest Reg T short rate: (22,000 - 15,000) / 30% = 23,333.34 (23,333.33... rounded
    up). Listed as a portfolio-margin account: sized at its 15% floor, 7,000 / 15% = 46,666.67.
    """
    snapshot = sample_snapshot(
        (stock("XYZ", -80_000.0),), excess_liquidity=15_000.0, gross_position_value=80_000.0
    )
    finding = cushion(snapshot, NOON, CushionConfig())
    assert finding.action.startswith(
        "Buy back about USD 23,333.34 of short positions (sized at 30%"
    )
    pm = PmEquityFloorConfig(portfolio_margin_accounts=("DU111",))
    under_pm = cushion(snapshot, NOON, CushionConfig(), portfolio_margin=pm)
    assert under_pm.action.startswith(
        "Buy back about USD 46,666.67 of short positions (sized at 15%, the lowest portfolio "
        "margin maintenance"
    )


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
