"""The ``cushion`` rule: ExcessLiquidity / NLV against two levels, IBKR's own warning line
and EL < 0; its action restores the level where the alert clears, by a sale or a deposit.

A known deficit is never hidden: ExcessLiquidity below 0 is critical ("IBKR is liquidating")
whatever NetLiquidation is, zero, negative or missing; the cushion itself is then reported
only when NLV is positive (EL / NLV of two negatives is no cushion).
"""

from __future__ import annotations

from dataclasses import dataclass

from rules import actions
from rules.common import MIN_EQUITY, Book, RuleConfig, RuleSpec, absent, make, missing
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
from rules.validation import fraction, ordered_below


@dataclass(frozen=True)
class CushionConfig(RuleConfig):
    """``cushion``: EL / NLV against two levels, IBKR's own warning line, and EL < 0.

    ``ib_warning_line`` is IBKR's line as a fraction of MaintMarginReq (EL <= 10% of maintenance
    is critical). The action restores the ``warning`` level plus ``clear_margin``: where the
    alert clears.
    """

    warning: float = 0.20
    critical: float = 0.10
    ib_warning_line: float = 0.10
    clear_margin: float = 0.02

    def __post_init__(self) -> None:
        fraction("warning", self.warning)
        fraction("critical", self.critical)
        fraction("ib_warning_line", self.ib_warning_line)
        fraction("clear_margin", self.clear_margin)
        ordered_below(self.warning, self.critical)
        if self.warning + self.clear_margin >= 1:
            raise ValueError("warning plus clear_margin must stay below 1 (100% cushion)")


@dataclass(frozen=True, slots=True)
class Restore:
    """What an action restoring a cushion must reach: ``target`` x NLV of excess and, when
    ``line`` is set, ``line`` x ``maintenance`` too (IBKR's warning line plus the margin)."""

    target: float
    line: float | None = None
    maintenance: float | None = None


def _verb(kind: str) -> str:
    return {"sell": "sell", "buy_back": "buy back", "reduce": "sell or buy back"}[kind]


def _positions(kind: str) -> str:
    return {"sell": "long positions", "buy_back": "short positions", "reduce": "positions"}[kind]


def sale_kind(rates: SaleRates) -> ActionKind:
    """``sell`` (only longs held), ``buy_back`` (only shorts) or ``reduce`` (both)."""
    if rates.short is None:
        return "sell"
    if rates.long is None:
        return "buy_back"
    return "reduce"


def _sale_needed(nlv: float, excess: float, goal: Restore, rate: float) -> float:
    """The sale that lifts EL to the target cushion and above the line, at ``rate``: NLV does
    not move, EL rises by m x S and maintenance falls by m x S."""
    needed = (goal.target * nlv - excess) / rate
    if goal.line is not None and goal.maintenance is not None:
        needed = max(needed, (goal.line * goal.maintenance - excess) / (rate * (1 + goal.line)))
    return max(0.0, needed)


def _deposit_needed(nlv: float, excess: float, goal: Restore) -> float:
    """The deposit that does the same: it raises NLV and EL alike, maintenance not at all."""
    needed = (goal.target * nlv - excess) / (1 - goal.target)
    if goal.line is not None and goal.maintenance is not None:
        needed = max(needed, goal.line * goal.maintenance - excess)
    return max(0.0, needed)


def restore_action(
    snapshot: AccountSnapshot,
    nlv: float | None,
    excess: float,
    goal: Restore,
    rates: SaleRates,
    *,
    average_rate: float | None = None,
    purpose: str = "",
    before: str = "",
) -> tuple[str, list[Remedy]]:
    """The text and remedies that restore ``goal``: a sale of positions at the lowest rate a
    holding can have (so it suffices whichever is sold), or a deposit.

    A sale never exceeds what is held, and cannot restore a cushion while NLV is not
    positive; without an NLV nothing can be sized but the end of the deficit.
    """
    ccy = snapshot.base_currency
    purpose = purpose or f"restore a {pct(goal.target)} cushion, where the alert clears"
    if nlv is None:
        text = (
            f"deposit at least {money(max(0.0, -excess), ccy)} or sell positions now to end the "
            f"deficit; NetLiquidation is unknown, so what it takes to {purpose} cannot be sized"
        )
        return _sentence(text, before), []
    remedies: list[Remedy] = []
    deposit = actions.deposit(_deposit_needed(nlv, excess, goal), ccy)
    deposit_text = f"deposit about {money(deposit.amount, ccy)}"
    gross = snapshot.gross_position_value
    rate = rates.any
    if nlv < MIN_EQUITY:
        text = (
            f"{deposit_text} to {purpose} (NetLiquidation is {money(nlv, ccy)}: no sale "
            "can restore a cushion while the equity is not positive)"
        )
    elif rate is None or rate <= 0 or not is_number(gross) or gross <= 0:
        text = f"{deposit_text} to {purpose}"
    else:
        kind = sale_kind(rates)
        needed = _sale_needed(nlv, excess, goal, rate)
        sale = actions.trade(kind, needed, ccy, rate=rate, held=gross)
        if sale.amount > gross:
            text = (
                f"{deposit_text} to {purpose}: selling positions alone cannot (at "
                f"{pct(rate)} it would take {money(sale.amount, ccy)}, more than the "
                f"{money(gross, ccy)} held)"
            )
        else:
            remedies.append(actions.remedy(sale))
            beside = ""
            if average_rate is not None and average_rate - rate > 0.005:
                at_average = actions.up_to_cent(_sale_needed(nlv, excess, goal, average_rate))
                beside = f"; about {money(at_average, ccy)} at the average {pct(average_rate)}"
            text = (
                f"{_verb(kind)} about {money(sale.amount, ccy)} of {_positions(kind)} (sized "
                f"at {pct(rate)}, the lowest {rates.basis} maintenance a holding here can "
                f"have{beside}) or {deposit_text} to {purpose}"
            )
    remedies.append(actions.remedy(deposit))
    return _sentence(text, before), remedies


def _sentence(text: str, before: str) -> str:
    if before:
        return f"Before {before}, {text}"
    return text[0].upper() + text[1:]


def cushion(
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: CushionConfig,
    *,
    leveraged: FactorSettings | None = None,
    portfolio_margin: PortfolioMarginSettings | None = None,
    book: Book | None = None,
) -> Finding:
    """Cushion EL / NLV against the warning and critical levels, IBKR's warning line
    (EL <= 10% of maintenance) and EL < 0 (IBKR liquidates in real time, whatever NLV is).

    The action is the sale S = (c x NLV - EL) / m that restores the clear level c (warning plus
    clear margin) and lifts EL clear of IBKR's line, at the lowest rate m a holding of the
    account can have, or the deposit D = (c x NLV - EL) / (1 - c) that does the same.
    """
    rule = "cushion"
    nlv: float | None = snapshot.net_liquidation if is_number(snapshot.net_liquidation) else None
    excess: float | None = (
        snapshot.excess_liquidity if is_number(snapshot.excess_liquidity) else None
    )
    reported: float | None = snapshot.cushion if is_number(snapshot.cushion) else None
    positive = nlv is not None and nlv >= MIN_EQUITY
    if excess is None and reported is not None and positive:
        assert nlv is not None
        excess = reported * nlv
    if excess is None:
        return missing(rule, snapshot, [*absent(snapshot, "net_liquidation"), "ExcessLiquidity"])
    deficit = falls_short(excess, 0.0)
    if not positive and not deficit:
        return missing(rule, snapshot, absent(snapshot, "net_liquidation"))
    value: float | None = None
    if positive:
        assert nlv is not None
        value = reported if reported is not None else excess / nlv
    ccy = snapshot.base_currency
    if value is not None:
        severity, clear = grade_below(value, config.warning, config.critical, config.clear_margin)
    else:
        severity = clear = Severity.OK
    reasons: list[str] = []
    maint = snapshot.maint_margin_req if is_number(snapshot.maint_margin_req) else None
    details: dict[str, object] = {
        "cushion": value,
        "excess_liquidity": excess,
        "net_liquidation": nlv,
        "maint_margin_req": maint,
        "maintenance_rate": snapshot.maintenance_rate,
    }
    if deficit:
        severity = clear = Severity.CRITICAL
        reasons.append(
            f"LIQUIDATING: ExcessLiquidity is {money(excess, ccy)}, below 0: IBKR liquidates "
            "positions in real time, without a margin call"
        )
        if value is None:
            shown = "unknown" if nlv is None else money(nlv, ccy)
            reasons.append(
                f"NetLiquidation is {shown}: no cushion can be measured (EL / NLV is "
                "meaningless without positive equity)"
            )
            details["cushion_unavailable"] = "NetLiquidation is not positive or not known"
    goal = Restore(config.warning + config.clear_margin)
    if maint is not None and maint > 0:
        line = config.ib_warning_line * maint
        details["ib_warning_line"] = line
        _, beyond_line = grade_below(excess, None, line, config.clear_margin * maint)
        if beyond_line is Severity.CRITICAL:
            clear = Severity.CRITICAL
        if excess <= line:
            severity = Severity.CRITICAL
            if not deficit:
                reasons.append(
                    f"ExcessLiquidity {money(excess, ccy)} is at or below IBKR's warning line "
                    f"({pct(config.ib_warning_line)} of maintenance {money(maint, ccy)} = "
                    f"{money(line, ccy)})"
                )
        goal = Restore(goal.target, config.ib_warning_line + config.clear_margin, maint)
    levels = f"warning below {pct(config.warning)}, critical below {pct(config.critical)}"
    if value is not None:
        if value < config.critical:
            reasons.append(
                f"cushion {pct(value)} is below the critical level {pct(config.critical)}"
            )
        elif value < config.warning:
            reasons.append(f"cushion {pct(value)} is below the warning level {pct(config.warning)}")
        elif reasons:
            reasons.append(f"cushion {pct(value)}")
    if reasons:
        message = "; ".join(reasons)
        message = message[0].upper() + message[1:]
    else:
        message = f"Cushion {pct(value or 0.0)} ({levels})"
    action = None
    remedies: list[Remedy] = []
    if severity is not Severity.OK:
        positions = Book.of(snapshot) if book is None else book
        rates = lowest_rates(
            snapshot, positions, leveraged=leveraged, portfolio_margin=portfolio_margin
        )
        action, remedies = restore_action(
            snapshot, nlv, excess, goal, rates, average_rate=snapshot.maintenance_rate
        )
    threshold = config.critical if severity is Severity.CRITICAL else config.warning
    return make(
        rule,
        snapshot,
        severity,
        value,
        threshold,
        message,
        action=action,
        clear=clear,
        details=details,
        remedies=remedies,
    )


SPEC = RuleSpec(
    "cushion",
    cushion,
    CushionConfig,
    "percent",
    "ExcessLiquidity / NLV; IBKR's warning line; EL < 0 whatever NLV is",
    reads=("net_liquidation", "excess_liquidity", "cushion", "maint_margin_req", "positions"),
    shares={"leveraged": "leveraged_etf", "portfolio_margin": "pm_equity_floor"},
)
