"""The ``distance_to_liquidation`` rule: the adverse uniform move (a fall for a long book, a
rise for a short one, none for a hedged one), the cushion after each move, its levels, the
trade that lengthens the move to the clear level, and when no move can liquidate."""

from __future__ import annotations

import pytest

from rules.checks.distance_to_liquidation import (
    DistanceToLiquidationConfig,
    distance_to_liquidation,
)
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot, stock

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN
CONFIG = DistanceToLiquidationConfig()

#: Short-only, the shorts_options scenario's DU6000001: 21,000 of shorts, NLV 30,000,
#: maintenance 12,000, EL 18,000.
SHORTS = (
    stock("XYZ", -10_000.0),
    stock("MID", -5_000.0),
    stock("LOW", -4_000.0),
    stock("PEN", -2_000.0),
)
SHORT_BOOK = {
    "net_liquidation": 30_000.0,
    "gross_position_value": 21_000.0,
    "maint_margin_req": 12_000.0,
    "excess_liquidity": 18_000.0,
}


def test_distance_to_liquidation_example_and_falls():
    """margin-rules.md section 5: k = 150,000 - 37,500 = 112,500 (= (1 - 25%) x GPV), so
    d* = 62,500 / 112,500 = 55.6%, a fall; the cushion after -10%: EL 62,500 - 11,250 =
    51,250 over NLV 100,000 - 15,000; after -20%: 40,000 / 70,000. No shorts: no rises."""
    finding = distance_to_liquidation(sample_snapshot(), NOON, CONFIG)
    assert finding.severity is OK
    assert round(finding.value * 100, 1) == 55.6
    assert finding.details["direction"] == "fall"
    assert finding.message.startswith("A uniform fall of 55.6% would bring ExcessLiquidity to 0")
    moves = finding.details["cushion_after_moves"]
    assert list(moves) == ["-10%", "-12%", "-20%"]
    assert moves["-10%"] == pytest.approx(51_250 / 85_000)
    assert moves["-20%"] == pytest.approx(40_000 / 70_000)


@pytest.mark.parametrize(
    ("values", "severity", "in_action"),
    [
        (
            {"excess_liquidity": 15_000.0},
            WARNING,
            "Sell about USD 10,927.16 of long positions (sized at 25%, the lowest Reg T "
            "maintenance such a holding can have) or deposit about USD 4,125.00 so the book "
            "withstands a 17% fall, where the alert clears",
        ),
        ({"excess_liquidity": 7_500.0}, CRITICAL, "withstands a 17% fall"),
        ({"excess_liquidity": -100.0}, CRITICAL, "Sell about USD 50,927.16 of long positions"),
    ],
    ids=["warning", "critical", "negative-el"],
)
def test_distance_to_liquidation_levels(values, severity, in_action):
    """Warning under 15%, critical under 8%; the trade reaches the clear level t = 17%. From EL
    15,000 (d* = 13.3%): a sale s at m = 25% raises EL by m s and cuts k by (1 - m) s, so
    15,000 + 0.25 s = 0.17 (112,500 - 0.75 s) gives s = 4,125 / 0.3775 = 10,927.16 (rounded
    up); a deposit leaves k alone: 0.17 x 112,500 - 15,000 = 4,125. From EL -100: 19,225 /
    0.3775 = 50,927.16."""
    finding = distance_to_liquidation(sample_snapshot(**values), NOON, CONFIG)
    assert finding.severity is severity
    assert in_action in finding.action


def test_a_short_only_book_is_liquidated_by_a_rise():
    """k = 0 - 21,000 - 12,000 = -33,000: a rise of 18,000 / 33,000 = 54.5% empties EL. The
    table shows rises only: +10%: EL 18,000 - 3,300 = 14,700 over NLV 30,000 - 2,100 = 27,900;
    +20%: 11,400 / 25,800."""
    finding = distance_to_liquidation(sample_snapshot(SHORTS, **SHORT_BOOK), NOON, CONFIG)
    assert finding.severity is OK
    assert finding.value == pytest.approx(18_000 / 33_000)
    assert finding.details["direction"] == "rise"
    assert finding.message.startswith("A uniform rise of 54.5% would bring ExcessLiquidity to 0")
    moves = finding.details["cushion_after_moves"]
    assert list(moves) == ["+10%", "+12%", "+20%"]
    assert moves["+10%"] == pytest.approx(14_700 / 27_900)
    assert moves["+20%"] == pytest.approx(11_400 / 25_800)


def test_a_short_book_near_liquidation_buys_back():
    """EL 4,000: a rise of 4,000 / 33,000 = 12.1% (a warning). Buying back b at 30% raises EL
    by 0.3 b and shrinks |k| by 1.3 b: 4,000 + 0.3 b = 0.17 (33,000 - 1.3 b) gives b = 1,610 /
    0.521 = 3,090.22 (rounded up); or deposit 0.17 x 33,000 - 4,000 = 1,610."""
    snapshot = sample_snapshot(SHORTS, **{**SHORT_BOOK, "excess_liquidity": 4_000.0})
    finding = distance_to_liquidation(snapshot, NOON, CONFIG)
    assert finding.severity is WARNING
    assert finding.action == (
        "Buy back about USD 3,090.22 of short positions (sized at 30%, the lowest Reg T "
        "maintenance such a holding can have) or deposit about USD 1,610.00 so the book "
        "withstands a 17% rise, where the alert clears"
    )
    trade, deposit = (remedy.actions[0] for remedy in finding.remedies)
    assert (trade.kind, trade.amount, trade.rate) == ("buy_back", 3_090.22, 0.30)
    assert (deposit.kind, deposit.amount) == ("deposit", 1_610.0)


def test_a_hedged_book_has_no_liquidating_move():
    """Long 130,000 at 25% (32,500) and short 75,000 at 30% (22,500): k = 130,000 - 75,000 -
    55,000 = 0, so no uniform move empties EL 45,000; the table shows falls and rises, EL
    unchanged over NLV 100,000 + x x 55,000: -10% 45,000 / 94,500, +10% 45,000 / 105,500."""
    snapshot = sample_snapshot(
        (stock("AAA", 130_000.0), stock("ZZZ", -75_000.0)),
        gross_position_value=205_000.0,
        maint_margin_req=55_000.0,
        excess_liquidity=45_000.0,
    )
    finding = distance_to_liquidation(snapshot, NOON, CONFIG)
    assert finding.severity is OK and finding.value is None and not finding.data_missing
    assert finding.message.startswith("The book is hedged: no uniform move of every price")
    moves = finding.details["cushion_after_moves"]
    assert list(moves) == ["-10%", "-12%", "-20%", "+10%", "+12%", "+20%"]
    assert moves["-10%"] == pytest.approx(45_000 / 94_500)
    assert moves["+10%"] == pytest.approx(45_000 / 105_500)


def test_a_mixed_book_shows_falls_and_rises():
    """Long 150,000, short 50,000, maintenance 52,500, EL 47,500, NLV 100,000: k = 150,000 -
    50,000 - 52,500 = 47,500, a fall of 100% empties EL exactly; the table has both sides:
    -10%: EL 47,500 - 4,750 = 42,750 over NLV 100,000 - 10,000; +10%: 52,250 / 110,000."""
    snapshot = sample_snapshot(
        (stock("AAA", 150_000.0), stock("ZZZ", -50_000.0)),
        gross_position_value=200_000.0,
        maint_margin_req=52_500.0,
        excess_liquidity=47_500.0,
    )
    finding = distance_to_liquidation(snapshot, NOON, CONFIG)
    assert finding.value == pytest.approx(1.0) and finding.details["direction"] == "fall"
    moves = finding.details["cushion_after_moves"]
    assert moves["-10%"] == pytest.approx(42_750 / 90_000)
    assert moves["+10%"] == pytest.approx(52_250 / 110_000)


def test_no_fall_beyond_100_percent_and_no_positions():
    """k = 80,000 - 20,000 = 60,000 with EL 70,000: a fall of 116.7% would be needed, which
    prices cannot do: ok, no value. No positions: ok, not applicable. No maintenance: unknown."""
    deep = sample_snapshot(
        gross_position_value=80_000.0, maint_margin_req=20_000.0, excess_liquidity=70_000.0
    )
    finding = distance_to_liquidation(deep, NOON, CONFIG)
    assert finding.severity is OK and finding.value is None
    assert "it would take 116.7%, more than 100%" in finding.message
    flat = sample_snapshot(gross_position_value=0.0, maint_margin_req=0.0)
    assert distance_to_liquidation(flat, NOON, CONFIG).severity is OK
    gap = distance_to_liquidation(sample_snapshot(maint_margin_req=None), NOON, CONFIG)
    assert gap.severity is UNKNOWN and "MaintMarginReq" in gap.message


def test_a_deficit_without_equity_is_critical():
    """NLV -10,000, EL -40,000, all long 50,000 with maintenance 12,500: critical, liquidation
    under way; the cushion after a fall reads "equity gone"."""
    snapshot = sample_snapshot(
        net_liquidation=-10_000.0,
        excess_liquidity=-40_000.0,
        gross_position_value=50_000.0,
        maint_margin_req=12_500.0,
    )
    finding = distance_to_liquidation(snapshot, NOON, CONFIG)
    assert finding.severity is CRITICAL and not finding.data_missing
    assert finding.message.startswith("ExcessLiquidity is already negative (USD -40,000.00)")
    assert "-10%: equity gone" in finding.message


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: DistanceToLiquidationConfig(moves=(0.1, 2.0)), "moves must be a fraction"),
    ],
    ids=["moves-range"],
)
def test_distance_to_liquidation_settings_say_what_to_fix(build, fragment):
    """Each ValueError names the field and the problem."""
    with pytest.raises(ValueError) as caught:
        build()
    assert fragment in str(caught.value)
