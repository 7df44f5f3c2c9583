"""The shared arithmetic against the figures of margin-rules.md section 5, plus properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import examples

from rules import figures
from rules.checks.financing_cost import FinancingCostConfig, InterestTier
from rules.samples import SEED_FINANCING

SEED_TIERS = SEED_FINANCING.tiers


# -- tiered interest (001 seed) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "compute", "expected"),
    [
        ("annual", lambda c: c.annual, 8_500.00),
        ("effective rate %", lambda c: c.effective_rate * 100, 3.40),
        ("daily at /360", lambda c: c.daily, 23.61),
        ("+0.5 pp", lambda c: c.cost_of_rise, 1_250.00),
    ],
    ids=["annual-8500", "effective-3.4pct", "daily-23.61", "rise-1250"],
)
def test_seed_tiered_interest(name, compute, expected):
    """$250,000 at 3.0% to $150,000 / 4.0% above: $8,500, 3.4%, $23.61 a day, +$1,250."""
    cost = figures.financing_cost(250_000, FinancingCostConfig(tiers=SEED_TIERS))
    assert cost is not None
    assert round(compute(cost), 2) == expected


def test_rate_rise_really_costs_what_the_shortcut_says():
    """Raising every tier by 0.5 pp costs exactly the +$1,250 the shortcut reports."""
    raised = (InterestTier(up_to=150_000, rate=0.035), InterestTier(rate=0.045))
    before = figures.tiered_interest(250_000, SEED_TIERS)
    after = figures.tiered_interest(250_000, raised)
    assert round(after - before, 2) == 1_250.00


@pytest.mark.parametrize(
    ("balance", "day_count", "daily"),
    [(250_000, 360, 23.61), (250_000, 365, 23.29), (0, 360, 0.0)],
    ids=["actual-360", "actual-365", "no-loan"],
)
def test_daily_cost_day_count(balance, day_count, daily):
    """Daily interest is the annual cost over 360 (USD) or 365 (GBP) days."""
    config = FinancingCostConfig(tiers=SEED_TIERS, day_count=day_count)
    cost = figures.financing_cost(balance, config)
    assert cost is not None
    assert round(cost.daily, 2) == daily


@pytest.mark.parametrize(
    ("balance", "expected"),
    [
        (50_000, 50_000 * 0.065),
        (100_000, 6_500.0),
        (200_000, 6_500.0 + 100_000 * 0.06),
        (2_000_000, 6_500.0 + 900_000 * 0.06 + 1_000_000 * 0.0575),
    ],
    ids=["first-tier", "tier-edge", "second-tier", "third-tier"],
)
def test_ibkr_pro_spreads_over_benchmark(balance, expected):
    """Default IBKR Pro USD tiers are spreads over the configured benchmark (5% here)."""
    cost = figures.financing_cost(balance, FinancingCostConfig(benchmark_rate=0.05))
    assert cost is not None
    assert round(cost.annual, 2) == round(expected, 2)


def test_spread_tiers_without_benchmark_are_not_guessed():
    """No benchmark configured: the cost is unknown (None), never computed with a made-up rate."""
    assert figures.financing_cost(100_000, FinancingCostConfig()) is None
    with pytest.raises(ValueError, match="benchmark_rate"):
        figures.tiered_interest(100_000, FinancingCostConfig().tiers)


def test_balance_beyond_a_bounded_last_tier_pays_its_rate():
    """A balance above the last bounded tier pays that tier's rate on the excess."""
    tiers = (InterestTier(up_to=100, rate=0.10), InterestTier(up_to=200, rate=0.05))
    assert figures.tiered_interest(300, tiers) == pytest.approx(10 + 5 + 5)


# -- requirements -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factor", "base", "expected"),
    [
        (3, 0.50, 1.00),
        (2, 0.50, 1.00),
        (1.5, 0.50, 0.75),
        (3, 0.25, 0.75),
        (2, 0.25, 0.50),
        (1.5, 0.25, 0.375),
        (-3, 0.30, 0.90),
        (-1, 0.50, 0.50),
        (-1, 0.25, 0.25),
        (-0.5, 0.25, 0.25),
        (0.5, 0.50, 0.50),
    ],
    ids=[
        "regt-3x-100",
        "regt-2x-100",
        "regt-1.5x-75",
        "maint-3x-75",
        "maint-2x-50",
        "maint-1.5x-37.5",
        "short-3x-90",
        "regt-minus-1x-base",
        "maint-minus-1x-base",
        "maint-minus-half-x-base",
        "regt-half-x-base",
    ],
)
def test_leveraged_etf_requirement(factor, base, expected):
    """Max(base, Min(base x |factor|, 100%)): IB's own examples (long 2x maintenance 50%, short
    3x 90%), and never below the base: a -1x fund at 50% is 50%, a -0.5x fund (SVXY) at 25% is
    25%, not 12.5%."""
    assert figures.leveraged_requirement(factor, base) == pytest.approx(expected)


def test_leveraged_maintenance_long_and_short():
    """Maintenance uses 25% long and 30% short as the base."""
    assert figures.leveraged_maintenance(2, long=True) == pytest.approx(0.50)
    assert figures.leveraged_maintenance(-3, long=False) == pytest.approx(0.90)


@pytest.mark.parametrize(
    ("price", "mv", "elv", "im", "af", "cushion"),
    [
        (40, 20_000, 10_000, 5_000, 5_000, 0.50),
        (45, 22_500, 12_500, 5_625, 6_875, 0.55),
        (35, 17_500, 7_500, 4_375, 3_125, 0.4167),
    ],
    ids=["buy-at-40", "rise-to-45", "fall-to-35"],
)
def test_reg_t_sequence(price, mv, elv, im, af, cushion):
    """IB's Reg T example (IM = MM = 25%) follows from the fall arithmetic.

    Deposit $10,000 and buy 500 @ $40 on margin: cash -10,000, MV 20,000, ELV = NLV = 10,000,
    IM = MM = 0.25 x 20,000 = 5,000, AF = EL = 10,000 - 5,000 = 5,000. A move to price p is a
    fall d = 1 - p / 40 of the all-long book: NLV' = 10,000 - d x 20,000 and
    EL' = 5,000 - 0.75 x d x 20,000. At $45 (d = -12.5%): ELV 12,500, AF = EL 6,875,
    IM = 12,500 - 6,875 = 5,625 (25% of 22,500); at $35 (d = 12.5%): ELV 7,500, AF 3,125,
    IM 4,375; the cushions are 5,000 / 10,000 = 50%, 6,875 / 12,500 = 55%, 3,125 / 7,500.
    """
    fall = 1 - price / 40
    equity = figures.equity_after_fall(10_000, fall, 20_000)
    excess = figures.excess_after_fall(5_000, 20_000, 0.25, fall)
    assert round(20_000 * (1 - fall), 2) == mv
    assert round(equity, 2) == elv
    assert round(excess, 2) == af  # IM == MM, so EL == AF
    assert round(equity - excess, 2) == im
    assert round(figures.cushion_after_fall(10_000, 5_000, 20_000, 0.25, fall), 4) == cushion


# -- liquidation, restoring trades ------------------------------------------------------------


def test_distance_to_liquidation_example():
    """NLV 100,000, GPV 150,000, maintenance 37,500 (m = 25%), EL 62,500 -> d* = 55.6%."""
    distance = figures.distance_to_liquidation(62_500, 150_000, 37_500 / 150_000)
    assert round(distance * 100, 1) == 55.6
    # at d* the fall leaves exactly nothing
    assert figures.excess_after_fall(62_500, 150_000, 0.25, distance) == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize(
    ("fall", "expected"),
    [(0.10, 51_250 / 85_000), (0.20, 40_000 / 70_000), (62_500 / 112_500, 0.0)],
    ids=["fall-10", "fall-20", "fall-to-liquidation"],
)
def test_cushion_after_fall(fall, expected):
    """EL' = EL - (1 - m) d GPV and NLV' = NLV - d x long value (all-long book)."""
    result = figures.cushion_after_fall(100_000, 62_500, 150_000, 0.25, fall)
    assert result == pytest.approx(expected, abs=1e-4)


def test_cushion_after_fall_when_equity_is_gone():
    """A fall that wipes out NLV has no cushion (None), not a division by zero."""
    assert figures.cushion_after_fall(10_000, 5_000, 40_000, 0.25, 0.30) is None


def test_distance_to_liquidation_without_risk():
    """No positions, or requirements of 100%: no fall can liquidate."""
    assert figures.distance_to_liquidation(1_000, 0, 0.25) is None
    assert figures.distance_to_liquidation(1_000, 10_000, 1.0) is None


def test_restoring_sale_example():
    """NLV 100,000, EL 8,000, m = 25%, target 20% -> sell (20,000 - 8,000) / 0.25 = $48,000."""
    assert round(figures.restoring_sale(100_000, 8_000, 0.20, 0.25), 2) == 48_000.00


def test_restoring_deposit_example():
    """The same cushion by deposit: (20,000 - 8,000) / 0.8 = $15,000."""
    deposit = figures.restoring_deposit(100_000, 8_000, 0.20)
    assert round(deposit, 2) == 15_000.00
    assert (8_000 + deposit) / (100_000 + deposit) == pytest.approx(0.20)


def test_restoring_sale_needs_a_rate():
    """A zero maintenance rate cannot size a sale."""
    with pytest.raises(ValueError):
        figures.restoring_sale(100_000, 8_000, 0.20, 0.0)


def test_sale_for_distance_restores_the_target():
    """After the sale, the distance to liquidation is the target."""
    sale = figures.sale_for_distance(5_000, 150_000, 0.25, 0.15)
    assert figures.distance_to_liquidation(5_000 + 0.25 * sale, 150_000 - sale, 0.25) == (
        pytest.approx(0.15)
    )


def test_rebalancing_trades_three_fund():
    """SCHD 50k / VOO 60k / BND 10k toward 40/40/20: sell 2k SCHD, sell 12k VOO, buy 14k BND."""
    trades = figures.rebalancing_trades(
        {"SCHD": 50_000, "VOO": 60_000, "BND": 10_000, "AAPL": 99_000},
        {"SCHD": 0.40, "VOO": 0.40, "BND": 0.20},
    )
    assert {k: round(v, 2) for k, v in trades.items()} == {
        "SCHD": -2_000.00,
        "VOO": -12_000.00,
        "BND": 14_000.00,
    }
    assert sum(trades.values()) == pytest.approx(0)


@pytest.mark.parametrize(
    ("nlv", "peak", "expected"),
    [(88_000, 100_000, 0.12), (100_000, 100_000, 0.0), (120_000, 100_000, 0.0), (5, None, None)],
    ids=["down-12", "at-peak", "above-peak", "no-peak"],
)
def test_drawdown(nlv, peak, expected):
    """Drawdown from the peak, as a fraction."""
    result = figures.drawdown(nlv, peak)
    assert result == (pytest.approx(expected) if expected is not None else None)


def test_loan_cut():
    """The 20% cut of a $125,000 loan is $25,000."""
    assert round(figures.loan_cut(125_000), 2) == 25_000.00
    assert figures.loan_cut(-5) == 0.0


# -- the 000 seed -----------------------------------------------------------------------------


def test_seed_000_freed_collateral():
    """Margin 50% -> 35% on $500,000 frees 500,000 x (0.50 - 0.35) = $75,000 (a holding's
    requirement is Min(base x 1, 100%) = base for an unlevered fund)."""
    before = figures.leveraged_requirement(1.0, 0.50) * 500_000
    after = figures.leveraged_requirement(1.0, 0.35) * 500_000
    assert round(before - after, 2) == 75_000.00


def test_seed_000_carry():
    """$75,000 borrowed at 3% costs 0.03 x 75,000 = $2,250 a year; a 7% return earns
    0.07 x 75,000 = $5,250, so the carry nets 5,250 - 2,250 = $3,000."""
    cost = figures.financing_cost(75_000, FinancingCostConfig(tiers=(InterestTier(rate=0.03),)))
    assert cost is not None
    assert round(cost.annual, 2) == 2_250.00
    assert round(0.07 * 75_000 - cost.annual, 2) == 3_000.00


def test_seed_000_levered_fall():
    """A 12% fall at 1.5x exposure costs 18% of equity: NLV 100,000 holding 150,000 loses
    0.12 x 150,000 = 18,000, so NLV' = 82,000, 18% below the 100,000 peak."""
    equity = figures.equity_after_fall(100_000, 0.12, 150_000)
    assert round(equity, 2) == 82_000.00
    assert round(figures.drawdown(equity, 100_000) * 100, 2) == 18.00


# -- properties -------------------------------------------------------------------------------

factors = st.floats(min_value=-10, max_value=10, allow_nan=False)
bases = st.floats(min_value=0, max_value=1, allow_nan=False)
money = st.floats(min_value=0, max_value=1e9, allow_nan=False)


@given(factor=factors, base=bases, value=money)
def test_requirement_stays_within_value(factor, base, value):
    """A leveraged ETF's requirement is between 0 and 100% of its value."""
    requirement = figures.leveraged_requirement(factor, base)
    assert 0.0 <= requirement <= 1.0
    assert 0.0 <= requirement * value <= value


@st.composite
def tier_tables(draw):
    """Ascending tiers with non-negative fixed rates, the last one open or bounded."""
    bounds = sorted(set(draw(st.lists(st.floats(1, 1e8), min_size=0, max_size=5))))
    rates = draw(st.lists(st.floats(0, 0.3), min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    open_end = draw(st.booleans())
    tiers = [InterestTier(up_to=b, rate=r) for b, r in zip(bounds, rates, strict=False)]
    if open_end or not tiers:
        tiers.append(InterestTier(rate=rates[-1]))
    return tuple(tiers)


@settings(max_examples=examples(200))
@given(tiers=tier_tables(), balance=st.floats(0, 2e8), step=st.floats(0, 1e6))
def test_tiered_cost_is_continuous_and_non_decreasing(tiers, balance, step):
    """More balance never costs less, and a small step costs at most step x the top rate."""
    top = max(tier.rate for tier in tiers)
    low = figures.tiered_interest(balance, tiers)
    high = figures.tiered_interest(balance + step, tiers)
    assert high >= low - 1e-6 * max(1.0, low)
    assert high - low <= step * top + 1e-6 * max(1.0, high)


@settings(max_examples=examples(200))
@given(
    nlv=st.floats(1_000, 1e8),
    cushion=st.floats(-0.5, 0.95),
    rate=st.floats(0.05, 0.99),
    target=st.floats(0.01, 0.9),
)
def test_restoring_sale_restores_the_target(nlv, cushion, rate, target):
    """Selling S at m leaves NLV unchanged and adds m x S to EL: the cushion becomes c*."""
    excess = cushion * nlv
    sale = figures.restoring_sale(nlv, excess, target, rate)
    assert sale >= 0
    after = (excess + rate * sale) / nlv
    if excess < target * nlv:
        assert math.isclose(after, target, rel_tol=1e-9, abs_tol=1e-9)
    else:
        assert sale == 0


@pytest.mark.parametrize(
    ("long", "short", "maint", "excess", "direction", "distance"),
    [
        (150_000, 0, 37_500, 62_500, "fall", 62_500 / 112_500),
        (0, 21_000, 12_000, 18_000, "rise", 18_000 / 33_000),
        (150_000, 50_000, 52_500, 47_500, "fall", 1.0),
        (100_000, 100_000, 55_000, 45_000, "rise", 45_000 / 55_000),
        (130_000, 75_000, 55_000, 45_000, None, None),
        (80_000, 0, 20_000, 70_000, None, None),
        (150_000, 0, 37_500, -1_000, "fall", -1_000 / 112_500),
    ],
    ids=["long", "short", "mixed", "balanced", "hedged", "beyond-100", "deficit"],
)
def test_the_adverse_uniform_move(long, short, maint, excess, direction, distance):
    """EL(x) = EL + x k, k = L - |S| - maintenance (margin-rules.md section 6).
    Long 150,000 at 25%: k = 112,500, a fall of 55.6%. Short 21,000 with maintenance 12,000:
    k = -33,000, a rise of 54.5%. Long 150,000, short 50,000, maintenance 52,500: k = 47,500,
    a fall of 100%. Equal longs and shorts: k = -maintenance, a rise (the requirement grows
    with prices). Long 130,000 at 25% and short 75,000 at 30%: k = 0, hedged, none. k =
    60,000 with EL 70,000: a fall of 116.7%, none. EL below 0: a negative distance."""
    slope = figures.move_slope(long, short, maint)
    move = figures.liquidation_move(excess, slope)
    if direction is None:
        assert move is None
    else:
        assert move is not None and move.direction == direction
        assert move.distance == pytest.approx(distance)
        assert move.move == pytest.approx(-distance if direction == "fall" else distance)


def test_cushion_after_a_move_and_the_deposit_for_a_loan_cap():
    """Short-only, +10%: EL 18,000 - 3,300 over NLV 30,000 - 2,100; NLV gone at +200%.
    Loan 50,000 on NLV 100,000 to 28%: D = (50,000 - 28,000) / 1.28 = 17,187.50."""
    assert figures.cushion_after_move(30_000, 18_000, -33_000, -21_000, 0.10) == pytest.approx(
        14_700 / 27_900
    )
    assert figures.cushion_after_move(30_000, 18_000, -33_000, -21_000, 2.0) is None
    assert figures.deposit_for_loan_cap(50_000, 100_000, 0.28) == pytest.approx(17_187.5)


@pytest.mark.parametrize(
    ("excess", "slope", "rate", "change", "expected"),
    [
        (15_000, 112_500, 0.25, -0.75, 4_125 / 0.3775),
        (15_000, 112_500, 1.0, 0.0, 4_125),
        (4_000, -33_000, 0.30, 1.30, 1_610 / 0.521),
        (20_000, 100_000, 0.25, -0.75, 0.0),
    ],
    ids=["sell-longs", "deposit", "buy-back-shorts", "already-there"],
)
def test_trade_for_distance(excess, slope, rate, change, expected):
    """The smallest trade after which EL + m a >= t |k + c a| (t = 17%): a sale of longs
    (4,125 / 0.3775), a deposit (t k - EL), a buy-back of shorts (1,610 / 0.521), none."""
    assert figures.trade_for_distance(excess, slope, 0.17, rate, change) == pytest.approx(expected)


@settings(max_examples=examples(300))
@given(
    long=st.floats(0, 1e6),
    short=st.floats(0, 1e6),
    rate=st.floats(0.15, 1.0),
    cushion=st.floats(-0.3, 0.9),
    target=st.floats(0.01, 0.5),
    buy_back=st.booleans(),
)
def test_trade_for_distance_reaches_the_target(long, short, rate, cushion, target, buy_back):
    """Whenever a trade size is found, the adverse move after it is at least the target,
    whichever way the book then leans."""
    maint = 0.3 * (long + short)
    excess = cushion * (long + short + 1)
    slope = figures.move_slope(long, short, maint)
    change = 1 + rate if buy_back else -(1 - rate)
    amount = figures.trade_for_distance(excess, slope, target, rate, change)
    if amount is None:
        return
    after = excess + rate * amount - target * abs(slope + change * amount)
    assert after >= -1e-6 * (abs(excess) + abs(slope) + 1)
