"""Financing rules: the cost of the margin loan, the reserve against it, and the drawdown trigger.

Each rule is ``(snapshot, context, config) -> Finding``. History (the NLV peak, the financing
cost a year ago) comes from ``context``; with none, the rules say so instead of guessing.
"""

from __future__ import annotations

from rules import figures
from rules.common import absent, book, make, missing, not_applicable
from rules.config import CashReserveConfig, DrawdownConfig, FinancingCostConfig
from rules.model import (
    AccountSnapshot,
    EvaluationContext,
    Finding,
    Severity,
    grade_above,
    grade_below,
    is_number,
)
from rules.text import money, names, pct

_NO_BENCHMARK = (
    "cost not computed: the tiers are spreads over a benchmark and no benchmark_rate is "
    "set (set [rules.financing_cost] benchmark_rate, e.g. the Fed Funds effective rate "
    "0.0433, or give each tier a fixed rate)"
)


def _cost_text(cost: figures.FinancingCost, ccy: str) -> str:
    effective = (
        f"{pct(cost.effective_rate, 2)} effective; " if cost.effective_rate is not None else ""
    )
    return (
        f"costs {money(cost.annual, ccy)} a year ({effective}{money(cost.daily, ccy)} a day on "
        f"actual/{cost.day_count}); a +{cost.rate_rise * 100:g} pp rise would add "
        f"{money(cost.cost_of_rise, ccy)} a year"
    )


def financing_cost(
    snapshot: AccountSnapshot, context: EvaluationContext, config: FinancingCostConfig
) -> Finding:
    """The projected annual and daily cost of the margin loan from the configured tiers, its
    effective rate and the cost of a rate rise; a warning when the annual cost is more than 15%
    above its level a year earlier (``context.financing_cost_year_ago``)."""
    rule = "financing_cost"
    lacking = absent(snapshot, "cash_balance")
    if lacking:
        return missing(rule, snapshot, lacking)
    loan: float = snapshot.margin_loan  # type: ignore[assignment]
    ccy = snapshot.base_currency
    if loan <= 0:
        return not_applicable(rule, snapshot, "No margin loan: no financing cost", value=0.0)
    cost = figures.financing_cost(loan, config)
    if cost is None:
        return not_applicable(
            rule,
            snapshot,
            f"Margin loan {money(loan, ccy)}; {_NO_BENCHMARK}",
            details={"margin_loan": loan},
        )
    details: dict[str, object] = {
        "margin_loan": loan,
        "annual_cost": cost.annual,
        "daily_cost": cost.daily,
        "effective_rate": cost.effective_rate,
        "cost_of_rise": cost.cost_of_rise,
        "day_count": cost.day_count,
    }
    base = f"Margin loan {money(loan, ccy)} {_cost_text(cost, ccy)}"
    year_ago = context.financing_cost_year_ago
    if not (is_number(year_ago) and year_ago > 0):  # type: ignore[operator]
        return not_applicable(
            rule,
            snapshot,
            f"{base}; no year-ago history to compare with",
            value=cost.annual,
            details=details,
        )
    limit = year_ago * (1 + config.increase_warning)
    change = cost.annual / year_ago - 1
    details["year_ago"] = year_ago
    details["change"] = change
    severity, clear = grade_above(cost.annual, limit, None, year_ago * config.clear_margin)
    direction = "up" if change >= 0 else "down"
    message = f"{base}; {direction} {pct(abs(change))} from {money(year_ago, ccy)} a year ago" + (
        f", more than {pct(config.increase_warning)}" if severity is not Severity.OK else ""
    )
    action = None
    if severity is not Severity.OK:
        cut = figures.loan_cut(loan, config.loan_cut)
        after = figures.financing_cost(loan - cut, config)
        saving = cost.annual - after.annual if after is not None else 0.0
        action = (
            f"Cut the margin loan by {pct(config.loan_cut)}: repay {money(cut, ccy)} "
            f"(saves about {money(saving, ccy)} a year)"
        )
    return make(
        rule,
        snapshot,
        severity,
        cost.annual,
        limit,
        message,
        action=action,
        clear=clear,
        details=details,
    )


def cash_reserve(
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: CashReserveConfig,
    *,
    financing: FinancingCostConfig | None = None,
) -> Finding:
    """The reserve (ExcessLiquidity, or the value of the listed reserve holdings) against
    ``quarters`` quarters of the projected financing cost (from ``[rules.financing_cost]``)."""
    rule = "cash_reserve"
    tiers = financing or FinancingCostConfig()
    lacking = absent(snapshot, "cash_balance")
    if not config.reserve_symbols:
        lacking += absent(snapshot, "excess_liquidity")
    if lacking:
        return missing(rule, snapshot, lacking)
    loan: float = snapshot.margin_loan  # type: ignore[assignment]
    ccy = snapshot.base_currency
    if loan <= 0:
        return not_applicable(rule, snapshot, "No margin loan: no financing cost to reserve for")
    cost = figures.financing_cost(loan, tiers)
    if cost is None:
        return not_applicable(rule, snapshot, f"Reserve not checked; {_NO_BENCHMARK}")
    if config.reserve_symbols:
        positions = book(snapshot)
        unpriced = [s for s in config.reserve_symbols if s in positions.unpriced]
        if unpriced:
            return missing(rule, snapshot, [f"market value of {names(unpriced)}"])
        reserve = sum(positions.values.get(s, 0.0) for s in config.reserve_symbols)
        source = f"reserve holdings ({names(config.reserve_symbols)})"
    else:
        reserve = snapshot.excess_liquidity  # type: ignore[assignment]
        source = "ExcessLiquidity"
    quarterly = cost.annual / 4
    needed = config.quarters * quarterly
    severity, clear = grade_below(reserve, needed, None, needed * config.clear_margin)
    quarters = f"{config.quarters:g} quarters"
    covers = reserve / quarterly if quarterly > 0 else None
    cover_text = f", {covers:.1f} quarters" if covers is not None else ""
    message = (
        f"Reserve {money(reserve, ccy)} ({source}{cover_text}) against {quarters} of financing "
        f"cost, {money(needed, ccy)} ({money(quarterly, ccy)} a quarter)"
    )
    if severity is not Severity.OK:
        message = "Reserve too small: " + message
    action = None
    if severity is not Severity.OK:
        shortfall = needed - reserve
        if config.reserve_symbols:
            action = (
                f"Add about {money(shortfall, ccy)} to the reserve (buy more "
                f"{names(config.reserve_symbols)} with cash, or deposit) to cover {quarters} of "
                "financing cost"
            )
        else:
            rate = snapshot.maintenance_rate
            sale = f" or sell about {money(shortfall / rate, ccy)} of positions" if rate else ""
            action = (
                f"Raise ExcessLiquidity by about {money(shortfall, ccy)}: deposit "
                f"{money(shortfall, ccy)}{sale} to cover {quarters} of financing cost"
            )
    return make(
        rule,
        snapshot,
        severity,
        reserve,
        needed,
        message,
        action=action,
        clear=clear,
        details={
            "reserve": reserve,
            "required": needed,
            "quarterly_cost": quarterly,
            "source": source,
        },
    )


def drawdown(
    snapshot: AccountSnapshot, context: EvaluationContext, config: DrawdownConfig
) -> Finding:
    """NLV more than 12% below its recorded peak: the action is the 20% cut of the margin loan."""
    rule = "drawdown"
    lacking = absent(snapshot, "net_liquidation")
    if lacking:
        return missing(rule, snapshot, lacking)
    nlv: float = snapshot.net_liquidation  # type: ignore[assignment]
    ccy = snapshot.base_currency
    threshold = config.warning if config.warning is not None else config.critical
    stored = context.peak_net_liquidation
    if not (is_number(stored) and stored > 0):  # type: ignore[operator]
        return not_applicable(
            rule,
            snapshot,
            f"No recorded peak yet: NLV {money(nlv, ccy)} is the peak",
            value=0.0,
            threshold=threshold,
            details={"peak": nlv},
        )
    peak = max(stored, nlv)
    value: float = figures.drawdown(nlv, peak)  # type: ignore[assignment]
    severity, clear = grade_above(value, config.warning, config.critical, config.clear_margin)
    loan = snapshot.margin_loan
    details = {"peak": peak, "net_liquidation": nlv, "below_peak": peak - nlv, "margin_loan": loan}
    message = f"NLV {money(nlv, ccy)} is {pct(value)} below its peak of {money(peak, ccy)}" + (
        f" (trigger {pct(threshold)})" if threshold is not None else ""
    )
    action = None
    if severity is not Severity.OK:
        if loan is None:
            action = (
                f"Cut the margin loan by {pct(config.loan_cut)} (loan amount unknown: "
                "TotalCashBalance missing)"
            )
        elif loan > 0:
            cut = figures.loan_cut(loan, config.loan_cut)
            action = (
                f"Cut the margin loan by {pct(config.loan_cut)}: repay {money(cut, ccy)} of "
                f"{money(loan, ccy)} (deposit, or sell positions and keep the proceeds)"
            )
        else:
            action = (
                f"No margin loan to cut; NLV is {money(peak - nlv, ccy)} below its peak: review "
                "the positions"
            )
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
    )
