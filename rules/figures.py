"""Plain margin arithmetic shared by the rules and the daily summary.

Standard library only, no I/O. Money stays a ``float`` here; round to the cent only when
presenting (``round(x, 2)``). Rates and shares are fractions (0.25 = 25%).

Formulas (margin-rules.md sections 2 and 3):

- tiered interest: the balance is split into tiers like tax brackets; each slice pays its own
  tier's rate (a fixed ``rate`` or ``benchmark + spread``);
- leveraged-ETF requirement: ``Max(base, Min(base x |factor|, 100%))`` (base 50% Reg T, 25%
  maintenance long, 30% short): never below the base, whatever the factor;
- uniform fall ``d`` of the positions: ELV falls by ``d x GPV`` and maintenance by
  ``m x d x GPV``, so ``EL' = EL - (1 - m) x d x GPV`` and ``NLV' = NLV - d x long value``
  (a fall of long positions lowers NLV by their lost value; GPV is used for the long value
  when it is not given, i.e. an all-long book). EL reaches 0 at ``d* = EL / ((1 - m) x GPV)``;
- selling ``S`` at maintenance rate ``m`` leaves NLV unchanged and raises EL by ``m x S``,
  so the sale that restores cushion ``c*`` is ``S = (c* x NLV - EL) / m``;
- a uniform move ``x`` of every price (x > 0 a rise, x < 0 a fall, beta 1) of a book with longs
  ``L`` and shorts ``|S|`` (stock and funds, the positions in EquityWithLoanValue):
  ``EL(x) = EL + x k`` with ``k = L (1 - m_L) - |S| (1 + m_S) = L - |S| - MaintMarginReq``
  (margin-rules.md section 6); the adverse move is a fall of ``EL / k`` when ``k > 0`` (none
  beyond 100%), a rise of ``EL / |k|`` when ``k < 0``, none when ``k = 0``;
- a deposit ``D`` raises NLV, ELV and EL by ``D``: it restores cushion ``c*`` at
  ``D = (c* x NLV - EL) / (1 - c*)`` and brings loan / NLV to cap ``c`` at
  ``D = (loan - c x NLV) / (1 + c)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

#: Reg T end-of-day initial requirement base, long or short.
REG_T_BASE = 0.50
#: IB maintenance base for a long position.
MAINTENANCE_LONG_BASE = 0.25
#: IB maintenance base for a short position.
MAINTENANCE_SHORT_BASE = 0.30


# -- financing cost ---------------------------------------------------------------------------


class InterestTier(Protocol):
    """One tier of a tiered rate (``rules.checks.financing_cost.InterestTier`` is one)."""

    @property
    def up_to(self) -> float | None: ...
    @property
    def rate(self) -> float | None: ...
    @property
    def spread(self) -> float | None: ...


class FinancingTerms(Protocol):
    """How a loan is charged (the ``[rules.financing_cost]`` settings are such terms)."""

    @property
    def tiers(self) -> Sequence[InterestTier]: ...
    @property
    def benchmark_rate(self) -> float | None: ...
    @property
    def day_count(self) -> int: ...
    @property
    def rate_rise(self) -> float: ...


def tier_rates(
    tiers: Sequence[InterestTier], benchmark_rate: float | None = None
) -> list[tuple[float, float | None, float]]:
    """Resolve tiers into ``(lower, upper, annual_rate)`` bands (``upper`` None = open).

    Raises ValueError when a tier is a spread and no benchmark rate is given.
    """
    bands: list[tuple[float, float | None, float]] = []
    lower = 0.0
    for tier in tiers:
        if tier.rate is not None:
            rate = tier.rate
        else:
            if benchmark_rate is None:
                raise ValueError(
                    "a tier is a spread over the benchmark but no benchmark_rate is set"
                )
            rate = benchmark_rate + (tier.spread or 0.0)
        bands.append((lower, tier.up_to, rate))
        if tier.up_to is None:
            break
        lower = tier.up_to
    return bands


def tiered_interest(
    balance: float, tiers: Sequence[InterestTier], benchmark_rate: float | None = None
) -> float:
    """Annual interest on ``balance`` with tiers blended like tax brackets.

    A balance above the last bounded tier pays the last tier's rate on the excess.
    """
    if balance <= 0:
        return 0.0
    bands = tier_rates(tiers, benchmark_rate)
    cost = 0.0
    last_rate = bands[-1][2]
    top = 0.0
    for lower, upper, rate in bands:
        if balance <= lower:
            break
        slice_top = balance if upper is None else min(balance, upper)
        cost += (slice_top - lower) * rate
        top = slice_top
    if top < balance:
        cost += (balance - top) * last_rate
    return cost


def effective_rate(annual_cost: float, balance: float) -> float | None:
    """The blended annual rate: cost / balance (``None`` without a balance)."""
    if balance <= 0:
        return None
    return annual_cost / balance


def daily_cost(annual_cost: float, day_count: int = 360) -> float:
    """One day's interest: actual/360 (USD) or actual/365 (GBP)."""
    return annual_cost / day_count


def cost_of_rate_rise(balance: float, rise: float = 0.005) -> float:
    """Extra annual cost when every tier's rate rises by ``rise`` (0.005 = +0.5 point)."""
    return max(balance, 0.0) * rise


@dataclass(frozen=True, slots=True)
class FinancingCost:
    """The cost of a margin loan: annual, daily, effective rate, and a rate rise's extra cost."""

    balance: float
    annual: float
    daily: float
    effective_rate: float | None
    cost_of_rise: float
    rate_rise: float
    day_count: int


def financing_cost(balance: float, config: FinancingTerms) -> FinancingCost | None:
    """The cost of ``balance`` under ``config``'s tiers.

    ``None`` when a spread tier applies and no ``benchmark_rate`` is configured: the cost is
    then unknown, never guessed.
    """
    balance = max(balance, 0.0)
    try:
        annual = tiered_interest(balance, config.tiers, config.benchmark_rate)
    except ValueError:
        return None
    return FinancingCost(
        balance=balance,
        annual=annual,
        daily=daily_cost(annual, config.day_count),
        effective_rate=effective_rate(annual, balance),
        cost_of_rise=cost_of_rate_rise(balance, config.rate_rise),
        rate_rise=config.rate_rise,
        day_count=config.day_count,
    )


# -- requirements -----------------------------------------------------------------------------


def leveraged_requirement(factor: float, base: float = REG_T_BASE) -> float:
    """IB's requirement for a leveraged ETF: Min(base x |factor|, 100%), never below the base
    itself (a fund of factor under 1 in size is margined like any other)."""
    return max(base, min(base * abs(factor), 1.0))


def leveraged_maintenance(factor: float, *, long: bool) -> float:
    """IB's maintenance rate for a leveraged ETF: 25% (long) or 30% (short) x |factor|, max 100%."""
    return leveraged_requirement(factor, MAINTENANCE_LONG_BASE if long else MAINTENANCE_SHORT_BASE)


# -- falls, liquidation, restoring trades -----------------------------------------------------


def distance_to_liquidation(
    excess_liquidity: float, gross_position_value: float, maintenance_rate: float
) -> float | None:
    """The uniform fall d* = EL / ((1 - m) x GPV) that brings ExcessLiquidity to 0.

    Negative when EL is already negative. ``None`` when no fall can liquidate: no positions
    (GPV <= 0) or a rate of 100% or more (a fall then frees as much as it costs).
    """
    if gross_position_value <= 0 or maintenance_rate >= 1:
        return None
    return excess_liquidity / ((1 - maintenance_rate) * gross_position_value)


def excess_after_fall(
    excess_liquidity: float, gross_position_value: float, maintenance_rate: float, fall: float
) -> float:
    """EL after a uniform fall: EL' = EL - (1 - m) x fall x GPV."""
    return excess_liquidity - (1 - maintenance_rate) * fall * gross_position_value


def equity_after_fall(net_liquidation: float, fall: float, long_value: float) -> float:
    """NLV after a uniform fall: NLV' = NLV - fall x long value (a rise is a negative fall)."""
    return net_liquidation - fall * long_value


def cushion_after_fall(
    net_liquidation: float,
    excess_liquidity: float,
    gross_position_value: float,
    maintenance_rate: float,
    fall: float,
    long_value: float | None = None,
) -> float | None:
    """Cushion EL' / NLV' after a uniform fall ``fall`` (0.10 = -10%).

    EL' = EL - (1 - m) x fall x GPV and NLV' = NLV - fall x long_value (``long_value``
    defaults to GPV: an all-long book). ``None`` when NLV' <= 0 (the equity is gone).
    """
    longs = gross_position_value if long_value is None else long_value
    nlv_after = equity_after_fall(net_liquidation, fall, longs)
    if nlv_after <= 0:
        return None
    return excess_after_fall(excess_liquidity, gross_position_value, maintenance_rate, fall) / (
        nlv_after
    )


def restoring_sale(
    net_liquidation: float, excess_liquidity: float, target_cushion: float, maintenance_rate: float
) -> float:
    """The sale S = (c* x NLV - EL) / m that restores cushion c* (0 when already there).

    Selling S at maintenance rate m leaves NLV unchanged and raises EL by m x S.
    """
    if maintenance_rate <= 0:
        raise ValueError("the maintenance rate must be above 0 to size a sale")
    return max(0.0, (target_cushion * net_liquidation - excess_liquidity) / maintenance_rate)


def restoring_deposit(
    net_liquidation: float, excess_liquidity: float, target_cushion: float
) -> float:
    """The deposit D that restores cushion c*.

    (EL + D) / (NLV + D) = c*, so D = (c* x NLV - EL) / (1 - c*) (0 when already there).
    """
    if target_cushion >= 1:
        raise ValueError("a cushion target must be below 100%")
    return max(0.0, (target_cushion * net_liquidation - excess_liquidity) / (1 - target_cushion))


def sale_for_distance(
    excess_liquidity: float,
    gross_position_value: float,
    maintenance_rate: float,
    target_distance: float,
) -> float:
    """The sale S that moves d* to ``target_distance`` (0 when already there).

    After selling S: EL + m S = t (1 - m)(GPV - S), so S = (t (1 - m) GPV - EL) / (m + t (1 - m)).
    """
    denominator = maintenance_rate + target_distance * (1 - maintenance_rate)
    if denominator <= 0:
        raise ValueError("the maintenance rate and target must not both be 0")
    needed = target_distance * (1 - maintenance_rate) * gross_position_value - excess_liquidity
    return min(max(0.0, needed / denominator), max(gross_position_value, 0.0))


def deposit_for_loan_cap(margin_loan: float, net_liquidation: float, cap: float) -> float:
    """The deposit D that brings loan / NLV to ``cap``: it repays D of the loan and adds D to
    NLV, so (loan - D) / (NLV + D) = cap gives D = (loan - cap x NLV) / (1 + cap)."""
    return max(0.0, (margin_loan - cap * net_liquidation) / (1 + cap))


# -- uniform moves of a book with longs and shorts ----------------------------------------------


#: Below this in size (base currency per unit move) the book is taken as hedged: k = 0.
HEDGED_SLOPE = 0.005


def move_slope(long_value: float, short_value: float, maint_margin_req: float) -> float:
    """k in EL(x) = EL + x k for a uniform move x of every price.

    ``long_value`` and ``short_value`` (its size) are the positions whose value is in
    EquityWithLoanValue (stocks and funds; options are not): k = L (1 - m_L) - |S| (1 + m_S),
    which is L - |S| - MaintMarginReq whatever the split of the requirement between them.
    """
    return long_value - short_value - maint_margin_req


@dataclass(frozen=True, slots=True)
class LiquidationMove:
    """The uniform move that empties ExcessLiquidity: ``distance`` (a fraction, negative when
    EL is already below 0) in ``direction`` "fall" or "rise"."""

    distance: float
    direction: str

    @property
    def move(self) -> float:
        """The signed move x (a fall is negative)."""
        return -self.distance if self.direction == "fall" else self.distance


def liquidation_move(excess_liquidity: float, slope: float) -> LiquidationMove | None:
    """The adverse uniform move: a fall of EL / k (k > 0) or a rise of EL / |k| (k < 0).

    ``None`` when no uniform move empties EL: a hedged book (k = 0), or one whose fall would
    have to exceed 100% (prices cannot fall further).
    """
    if abs(slope) < HEDGED_SLOPE:
        return None
    distance = excess_liquidity / abs(slope)
    if slope > 0:
        return None if distance > 1 else LiquidationMove(distance, "fall")
    return LiquidationMove(distance, "rise")


def cushion_after_move(
    net_liquidation: float,
    excess_liquidity: float,
    slope: float,
    net_exposure: float,
    move: float,
) -> float | None:
    """Cushion EL(x) / NLV(x) after a uniform move x (0.10 a rise of 10%, -0.10 a fall).

    EL(x) = EL + x k; NLV(x) = NLV + x (long - short) over every position (``net_exposure``,
    options included). ``None`` when NLV(x) <= 0: the equity is gone.
    """
    nlv_after = net_liquidation + move * net_exposure
    if nlv_after <= 0:
        return None
    return (excess_liquidity + move * slope) / nlv_after


def trade_for_distance(
    excess_liquidity: float, slope: float, target: float, rate: float, slope_change: float
) -> float | None:
    """The smallest trade a >= 0 after which the adverse move is at least ``target``.

    A trade of a at maintenance rate m raises EL by m a and changes k by ``slope_change`` x a:
    -(1 - m) for a sale of longs, +(1 + m) for a buy-back of shorts, 0 for a deposit (with
    m = 1). After it, EL + m a >= target x |k + c a| must hold (the adverse direction may flip
    on a mixed book). That function of a is concave, so the trades that satisfy it form an
    interval: its left end is 0 or a root of one of the two linear pieces. ``None`` when no
    trade size satisfies it.
    """

    def margin(amount: float) -> float:
        return excess_liquidity + rate * amount - target * abs(slope + slope_change * amount)

    scale = abs(excess_liquidity) + target * abs(slope) + 1.0
    candidates = [0.0]
    for sign in (1.0, -1.0):  # EL + m a = sign x target x (k + c a)
        denominator = rate - sign * target * slope_change
        if denominator != 0:
            amount = (sign * target * slope - excess_liquidity) / denominator
            if amount > 0:
                candidates.append(amount)
    fits = [amount for amount in sorted(candidates) if margin(amount) >= -1e-9 * scale]
    return fits[0] if fits else None


def rebalancing_trades(
    values: Mapping[str, float], targets: Mapping[str, float], total: float | None = None
) -> dict[str, float]:
    """Dollars to trade per symbol to reach ``targets`` (fractions): positive buy, negative sell.

    ``total`` is the value the weights apply to (default: the sum of ``values`` over the target
    symbols, so the trades net to zero). Symbols held but not targeted are left alone.
    """
    base = sum(values.get(symbol, 0.0) for symbol in targets) if total is None else total
    return {symbol: weight * base - values.get(symbol, 0.0) for symbol, weight in targets.items()}


def drawdown(net_liquidation: float, peak: float | None) -> float | None:
    """How far NLV sits below its peak, as a fraction (0 at or above the peak)."""
    if peak is None or not math.isfinite(peak) or peak <= 0:
        return None
    return max(0.0, 1.0 - net_liquidation / peak)


def loan_cut(margin_loan: float, fraction: float = 0.20) -> float:
    """The repayment that cuts a margin loan by ``fraction`` (20% by default)."""
    return max(margin_loan, 0.0) * fraction
