"""The ``distance_to_liquidation`` rule: the uniform move of every price that empties
ExcessLiquidity, in the direction that hurts the book as held.

A uniform move x of every price (x > 0 a rise, x < 0 a fall, beta 1) changes ExcessLiquidity by
x k with k = L (1 - m_L) - |S| (1 + m_S) = L - |S| - MaintMarginReq, over the longs L and
shorts S whose value is in EquityWithLoanValue (margin-rules.md section 6). A long book
(k > 0) is liquidated by a fall of EL / k (none beyond 100%), a short one (k < 0) by a rise of
EL / |k|; a hedged book (k = 0) by no uniform move at all. The daily summary calls
:func:`liquidation_profile` on the figures this rule records, so both say the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rules import actions, figures
from rules.common import (
    MIN_EQUITY,
    TRADE_WORDS,
    Book,
    Exposure,
    RuleConfig,
    RuleSpec,
    absent,
    exposure_of,
    make,
    missing,
    missing_exposure,
    not_applicable,
)
from rules.model import (
    AccountSnapshot,
    ActionKind,
    EvaluationContext,
    Finding,
    Remedy,
    Severity,
    falls_short,
    grade_below,
    is_number,
)
from rules.rates import FactorSettings, PortfolioMarginSettings, SaleRates, lowest_rates
from rules.text import money, pct
from rules.validation import fraction, ordered_below, set_field


@dataclass(frozen=True)
class DistanceToLiquidationConfig(RuleConfig):
    """``distance_to_liquidation``: the adverse uniform move that empties EL (a fall of EL / k
    for a long book, a rise of EL / |k| for a short one).

    ``moves`` are the what-if moves whose resulting cushion is reported, in the adverse
    direction (falls and rises both when the book holds longs and shorts).
    """

    warning: float = 0.15
    critical: float = 0.08
    moves: tuple[float, ...] = (0.10, 0.12, 0.20)
    clear_margin: float = 0.02

    def __post_init__(self) -> None:
        fraction("warning", self.warning)
        fraction("critical", self.critical)
        fraction("clear_margin", self.clear_margin)
        ordered_below(self.warning, self.critical)
        moves = tuple(fraction("moves", move, allow_zero=False) for move in self.moves)
        set_field(self, "moves", moves)


@dataclass(frozen=True, slots=True)
class Profile:
    """The book's exposure to uniform moves: k, the adverse move (``None``: no move empties
    EL, ``reason`` says why) and the cushion after each what-if move, labelled ``-10%`` (a
    fall) or ``+10%`` (a rise)."""

    slope: float
    move: figures.LiquidationMove | None
    stress: dict[str, float | None]
    reason: str = ""


def liquidation_profile(
    net_liquidation: float,
    excess_liquidity: float,
    maint_margin_req: float,
    exposure: Exposure,
    moves: Iterable[float],
) -> Profile:
    """k, the adverse move and the stress table of a book (the rule and the summary share it)."""
    slope = figures.move_slope(
        exposure.long_marginable, exposure.short_marginable, maint_margin_req
    )
    move = figures.liquidation_move(excess_liquidity, slope)
    reason = ""
    if move is None:
        if abs(slope) < figures.HEDGED_SLOPE:
            reason = "the book is hedged: no uniform move of every price empties ExcessLiquidity"
        else:
            reason = (
                f"no fall empties ExcessLiquidity (it would take {pct(excess_liquidity / slope)},"
                " more than 100%)"
            )
    sides = []
    if exposure.long > 0:
        sides.append(-1.0)
    if exposure.short > 0:
        sides.append(1.0)
    stress = {
        f"{'-' if side < 0 else '+'}{pct(size)}": figures.cushion_after_move(
            net_liquidation, excess_liquidity, slope, exposure.net, side * size
        )
        for side in sides
        for size in moves
    }
    return Profile(slope, move, stress, reason)


def exposure_from(details: Mapping[str, Any] | None, gross: float) -> Exposure:
    """The exposure this rule recorded in the history (``exposure`` of its details); an older
    row without it is read as an all-long book of ``gross``."""
    if details:
        try:
            return Exposure(**details)
        except TypeError:
            pass
    return Exposure(gross, 0.0, assumed=True)


def distance_to_liquidation(
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: DistanceToLiquidationConfig,
    *,
    leveraged: FactorSettings | None = None,
    portfolio_margin: PortfolioMarginSettings | None = None,
    book: Book | None = None,
) -> Finding:
    """The adverse uniform move that brings ExcessLiquidity to 0, with the cushion after each
    configured move (EL(x) = EL + x k, NLV(x) = NLV + x (long - short)).

    The action sells longs (a book hurt by a fall) or buys back shorts (one hurt by a rise) so
    the book withstands the warning level plus ``clear_margin``, sized at the lowest rate a
    holding can have; or deposits t x |k| - EL.
    """
    rule = "distance_to_liquidation"
    lacking = absent(
        snapshot, "net_liquidation", "excess_liquidity", "maint_margin_req", positive_equity=False
    )
    if lacking:
        return missing(rule, snapshot, lacking)
    nlv, excess = snapshot.net_liquidation, snapshot.excess_liquidity
    maint = snapshot.maint_margin_req
    assert is_number(nlv) and is_number(excess) and is_number(maint)
    positions = Book.of(snapshot) if book is None else book
    exposure = exposure_of(snapshot, positions)
    if exposure is None:
        return missing_exposure(rule, snapshot, positions)
    ccy = snapshot.base_currency
    deficit = falls_short(excess, 0.0)
    if exposure.long + exposure.short < MIN_EQUITY and not deficit:
        return not_applicable(rule, snapshot, "No positions: no move can liquidate the account")
    profile = liquidation_profile(nlv, excess, maint, exposure, config.moves)
    move = profile.move
    distance = move.distance if move is not None else None
    average = snapshot.maintenance_rate
    rates_text = f"maintenance {pct(average)} of positions" if average is not None else ""
    stress = ", ".join(
        f"{label}: {pct(value) if value is not None else 'equity gone'}"
        for label, value in profile.stress.items()
    )
    if deficit:
        severity = clear = Severity.CRITICAL
        message = (
            f"ExcessLiquidity is already negative ({money(excess, ccy)}): liquidation is under way"
        )
    elif move is None:
        severity = clear = Severity.OK
        message = profile.reason[0].upper() + profile.reason[1:]
    else:
        severity, clear = grade_below(
            move.distance, config.warning, config.critical, config.clear_margin
        )
        message = (
            f"A uniform {move.direction} of {pct(move.distance)} would bring ExcessLiquidity to 0"
        )
        if severity is not Severity.OK:
            level = config.critical if severity is Severity.CRITICAL else config.warning
            message += f", under the {severity.value} level {pct(level)}"
    extras = [text for text in (rates_text, f"cushion after {stress}" if stress else "") if text]
    if exposure.long_options or exposure.short_options:
        extras.append(
            "options held: the move takes their prices and requirement as moving with the market"
        )
    if extras:
        message += " (" + "; ".join(extras) + ")"
    action = None
    remedies: list[Remedy] = []
    if severity is not Severity.OK:
        action, remedies = _withstand(
            snapshot,
            excess,
            profile.slope,
            exposure,
            config,
            leveraged,
            portfolio_margin,
            positions,
        )
    threshold = config.critical if severity is Severity.CRITICAL else config.warning
    details = {
        "distance": distance,
        "direction": move.direction if move is not None else None,
        "slope": profile.slope,
        "maintenance_rate": average,
        "exposure": {
            "long": exposure.long,
            "short": exposure.short,
            "long_options": exposure.long_options,
            "short_options": exposure.short_options,
            "assumed": exposure.assumed,
        },
        "cushion_after_moves": profile.stress,
    }
    return make(
        rule,
        snapshot,
        severity,
        distance,
        threshold,
        message,
        action=action,
        clear=clear,
        details=details,
        remedies=remedies,
    )


def _withstand(
    snapshot: AccountSnapshot,
    excess: float,
    slope: float,
    exposure: Exposure,
    config: DistanceToLiquidationConfig,
    leveraged: FactorSettings | None,
    portfolio_margin: PortfolioMarginSettings | None,
    book: Book,
) -> tuple[str, list[Remedy]]:
    """The trade, at the lowest rate a holding of its side can have, and the deposit after
    which the adverse move is at least the warning level plus the clear margin."""
    ccy = snapshot.base_currency
    target = config.warning + config.clear_margin
    rates = lowest_rates(snapshot, book, leveraged=leveraged, portfolio_margin=portfolio_margin)
    if abs(slope) < figures.HEDGED_SLOPE:
        goal = "to end the deficit (the book is hedged: no uniform move empties a positive EL)"
    else:
        direction = "fall" if slope > 0 else "rise"
        goal = f"so the book withstands a {pct(target)} {direction}, where the alert clears"
    deposit = actions.deposit(
        figures.trade_for_distance(excess, slope, target, 1.0, 0.0) or 0.0, ccy
    )
    deposit_text = f"deposit about {money(deposit.amount, ccy)}"
    remedies: list[Remedy] = []
    sale_text = ""
    side = _side(slope, rates, exposure)
    if side is not None:
        kind, rate, held = side
        change = -(1 - rate) if kind == "sell" else 1 + rate
        needed = figures.trade_for_distance(excess, slope, target, rate, change)
        words = "long positions" if kind == "sell" else "short positions"
        trade = actions.trade(kind, needed or 0.0, ccy, rate=rate, held=held)
        if needed is not None and 0 < trade.amount <= held:
            remedies.append(actions.remedy(trade))
            sale_text = (
                f"{TRADE_WORDS[kind]} about {money(trade.amount, ccy)} of {words} (sized at "
                f"{pct(rate)}, the lowest {rates.basis} maintenance such a holding can have) or "
            )
        else:
            goal += f" (trading {words} alone cannot: {money(held, ccy)} held)"
    remedies.append(actions.remedy(deposit))
    text = f"{sale_text}{deposit_text} {goal}"
    return text[0].upper() + text[1:], remedies


def _side(
    slope: float, rates: SaleRates, exposure: Exposure
) -> tuple[ActionKind, float, float] | None:
    """The trade that lengthens the adverse move, its lowest rate and what is held: selling
    longs when a fall hurts (k > 0), buying back shorts when a rise does (k < 0)."""
    if slope > 0 and rates.long is not None:
        return "sell", rates.long, exposure.long_marginable
    if slope < 0 and rates.short is not None:
        return "buy_back", rates.short, exposure.short_marginable
    return None


SPEC = RuleSpec(
    "distance_to_liquidation",
    distance_to_liquidation,
    DistanceToLiquidationConfig,
    "percent",
    "the adverse uniform move (fall or rise) that empties ExcessLiquidity",
    reads=(
        "net_liquidation",
        "excess_liquidity",
        "gross_position_value",
        "maint_margin_req",
        "positions",
    ),
    shares={"leveraged": "leveraged_etf", "portfolio_margin": "pm_equity_floor"},
    history={"liquidation_exposure": "exposure"},
)
