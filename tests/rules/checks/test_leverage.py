"""The ``leverage`` rule: net exposure |long - short| / NLV against the 1.2x-1.6x envelope of
seed 000, on long, short and mixed books; a value just past a level; a deficit; its settings."""

from __future__ import annotations

import pytest

from rules.checks.leverage import LeverageConfig, leverage
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot, stock

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN


@pytest.mark.parametrize(
    ("gpv", "severity", "clear", "in_action"),
    [
        (150_000.0, OK, OK, None),
        (158_000.0, OK, WARNING, None),
        (
            170_000.0,
            WARNING,
            WARNING,
            "Sell about USD 15,000.00 of long positions (keeping the proceeds as cash) or "
            "deposit about USD 9,677.42 to bring net exposure to 1.55x, where the alert clears",
        ),
        (210_000.0, CRITICAL, CRITICAL, "Sell about USD 55,000.00 of long positions"),
    ],
    ids=["ok", "ok-but-held", "warning", "critical"],
)
def test_leverage(gpv, severity, clear, in_action):
    """No positions received: GPV is taken as all long, so net = GPV / NLV. Warning above 1.6x,
    critical above 2.0x, clear 0.05x below. At 1.7x the clear level 1.55x needs a sale of
    170,000 - 1.55 x 100,000 = 15,000 (NLV unchanged) or a deposit of 170,000 / 1.55 - 100,000
    = 9,677.42 (rounded up); at 2.1x, 210,000 - 155,000 = 55,000."""
    finding = leverage(sample_snapshot(gross_position_value=gpv), NOON, LeverageConfig())
    assert finding.value == pytest.approx(gpv / 100_000)
    assert finding.severity is severity
    assert finding.clear_severity is clear
    assert (finding.action is None) if in_action is None else (in_action in finding.action)
    assert finding.details["assumed_all_long"] is True


def test_leverage_just_past_the_level_reads_past_it():
    """1.6003x is not shown as "1.6x above 1.6x": enough decimals to see the breach."""
    finding = leverage(sample_snapshot(gross_position_value=160_030.0), NOON, LeverageConfig())
    assert finding.severity is WARNING
    assert finding.message.startswith("Net exposure (long) 1.60030x is above the warning level")


def test_a_short_only_book_is_net_short_and_is_cut_by_buying_back():
    """Short-only: XYZ -120,000 and ABC -50,000, NLV 100,000. Net = (0 - 170,000) / 100,000
    = 1.7x short: a warning. The clear level 1.55x needs buying back 170,000 - 155,000 =
    15,000 of shorts, never "sell and repay the loan"."""
    snapshot = sample_snapshot(
        (stock("XYZ", -120_000.0), stock("ABC", -50_000.0)), gross_position_value=170_000.0
    )
    finding = leverage(snapshot, NOON, LeverageConfig())
    assert finding.severity is WARNING
    assert finding.value == pytest.approx(1.7)
    assert finding.details["net_leverage"] == pytest.approx(-1.7)
    assert "Net exposure (short) 1.7x" in finding.message
    assert finding.action.startswith("Buy back about USD 15,000.00 of short positions")
    assert "sell" not in finding.action.lower().split("buy back")[0]
    (trade,) = finding.remedies[0].actions
    assert (trade.kind, trade.amount) == ("buy_back", 15_000.0)


def test_a_mixed_book_inside_the_net_envelope():
    """Long 180,000, short 60,000, NLV 100,000: net (180,000 - 60,000) / 100,000 = 1.2x (ok),
    though gross is 2.4x (the gross_leverage rule's business)."""
    snapshot = sample_snapshot(
        (stock("AAA", 180_000.0), stock("ZZZ", -60_000.0)), gross_position_value=240_000.0
    )
    finding = leverage(snapshot, NOON, LeverageConfig())
    assert finding.severity is OK
    assert finding.value == pytest.approx(1.2)
    assert "long 180,000.00, short 60,000.00" in finding.message.replace("USD ", "")


def test_a_deficit_reports_no_ratio_and_the_worst_level():
    """NLV -10,000 with longs of 50,000: no ratio means anything (value null), the worst
    level set (critical) holds, and only a deposit can fix it: 50,000 / 1.55 + 10,000 =
    42,258.07 (32,258.0645... rounded up, plus the 10,000 below zero)."""
    snapshot = sample_snapshot(
        net_liquidation=-10_000.0, gross_position_value=50_000.0, excess_liquidity=-22_500.0
    )
    finding = leverage(snapshot, NOON, LeverageConfig())
    assert finding.severity is CRITICAL and not finding.data_missing
    assert finding.value is None
    assert "unbounded" in finding.message
    assert finding.action == (
        "Deposit about USD 42,258.07 to bring net exposure to 1.55x, where the alert clears"
    )


def test_leverage_missing():
    """No GPV and no positions: unknown, naming the tag; an unpriced position: unknown too."""
    finding = leverage(sample_snapshot(gross_position_value=None), NOON, LeverageConfig())
    assert finding.severity is UNKNOWN and finding.data_missing
    assert "GrossPositionValue" in finding.message
    unpriced = leverage(sample_snapshot((stock("XYZ", None),)), NOON, LeverageConfig())
    assert unpriced.severity is UNKNOWN and "market value of XYZ" in unpriced.message


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: LeverageConfig(warning=2.5, critical=2.0), "warning (2.5) must be below critical"),
        (lambda: LeverageConfig(clear_margin=2.0), "clear_margin must be below the lowest level"),
    ],
    ids=["order", "clear-margin"],
)
def test_leverage_settings_say_what_to_fix(build, fragment):
    """Each ValueError names the field and the problem."""
    with pytest.raises(ValueError) as caught:
        build()
    assert fragment in str(caught.value)
