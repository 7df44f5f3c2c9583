"""The ``cash_reserve`` rule: the reserve against quarters of projected financing cost."""

from __future__ import annotations

from dataclasses import dataclass

from rules import actions
from rules.checks.financing_cost import (
    FinancingCostConfig,
    breakdown_text,
    financing_breakdown,
)
from rules.common import (
    Book,
    RuleConfig,
    RuleSpec,
    absent,
    exposure_of,
    make,
    missing,
    not_applicable,
)
from rules.model import (
    AccountSnapshot,
    EvaluationContext,
    Finding,
    Remedy,
    Severity,
    grade_below,
    is_number,
)
from rules.rates import FactorSettings, PortfolioMarginSettings, lowest_rates
from rules.text import money, names, pct
from rules.validation import fraction, positive, set_field, symbol_list


@dataclass(frozen=True)
class CashReserveConfig(RuleConfig):
    """``cash_reserve``: the reserve against ``quarters`` quarters of projected financing cost.

    The reserve is ExcessLiquidity when ``reserve_symbols`` is empty, else the market value of
    the listed holdings (e.g. ``["SGOV", "BIL"]``). The cost comes from ``[rules.financing_cost]``.
    ``clear_margin`` is a fraction of the requirement (0.05: clear at 105%).
    """

    quarters: float = 2.0
    reserve_symbols: tuple[str, ...] = ()
    clear_margin: float = 0.05

    def __post_init__(self) -> None:
        positive("quarters", self.quarters)
        fraction("clear_margin", self.clear_margin)
        set_field(self, "reserve_symbols", symbol_list("reserve_symbols", self.reserve_symbols))


def cash_reserve(
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: CashReserveConfig,
    *,
    financing: FinancingCostConfig | None = None,
    leveraged: FactorSettings | None = None,
    portfolio_margin: PortfolioMarginSettings | None = None,
    book: Book | None = None,
) -> Finding:
    """The reserve (ExcessLiquidity, or the value of the listed reserve holdings) against
    ``quarters`` quarters of the projected financing cost (from ``[rules.financing_cost]``)."""
    rule = "cash_reserve"
    tiers = financing or FinancingCostConfig()
    financing_now = financing_breakdown(snapshot, tiers)
    lacking = [] if financing_now is not None else absent(snapshot, "cash_balance")
    if not config.reserve_symbols:
        lacking += absent(snapshot, "excess_liquidity")
    if lacking or financing_now is None:
        return missing(rule, snapshot, lacking)
    ccy = snapshot.base_currency
    if not financing_now.debits:
        return not_applicable(rule, snapshot, "No margin loan: no financing cost to reserve for")
    cost = financing_now.total()
    if cost is None:
        return not_applicable(
            rule,
            snapshot,
            "Reserve not checked; financing cost not computed: " + "; ".join(financing_now.unknown),
        )
    if config.reserve_symbols:
        positions = Book.of(snapshot) if book is None else book
        unpriced = [s for s in config.reserve_symbols if s in positions.unpriced]
        if unpriced:
            return missing(rule, snapshot, positions.lacking(unpriced))
        reserve: float = sum(positions.values.get(s, 0.0) for s in config.reserve_symbols)
        source = f"reserve holdings ({names(config.reserve_symbols)})"
    else:
        excess = snapshot.excess_liquidity
        assert is_number(excess)  # absent() vouched for it
        reserve, source = excess, "ExcessLiquidity"
    quarterly = cost.annual / 4
    needed = config.quarters * quarterly
    severity, clear = grade_below(reserve, needed, None, needed * config.clear_margin)
    quarters = f"{config.quarters:g} quarters"
    covers = reserve / quarterly if quarterly > 0 else None
    cover_text = f", {covers:.1f} quarters" if covers is not None else ""
    message = (
        f"Reserve {money(reserve, ccy)} ({source}{cover_text}) against {quarters} of financing "
        f"cost, {money(needed, ccy)} ({money(quarterly, ccy)} a quarter on "
        f"{breakdown_text(financing_now)})"
    )
    if severity is not Severity.OK:
        message = "Reserve too small: " + message
    action = None
    remedies: list[Remedy] = []
    if severity is not Severity.OK:
        positions = Book.of(snapshot) if book is None else book
        action, remedies = _replenish(
            snapshot,
            needed * (1 + config.clear_margin) - reserve,
            config,
            positions,
            leveraged,
            portfolio_margin,
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
            "currencies": [d.to_dict() for d in financing_now.debits],
        },
        remedies=remedies,
    )


def _replenish(
    snapshot: AccountSnapshot,
    shortfall: float,
    config: CashReserveConfig,
    book: Book,
    leveraged: FactorSettings | None,
    portfolio_margin: PortfolioMarginSettings | None,
) -> tuple[str, list[Remedy]]:
    """What lifts the reserve by ``shortfall`` (to the required reserve plus the clear margin).

    Either way the loan, and so the cost the reserve covers, does not grow: a deposit (or a
    sale of longs) repays part of it, and reserve holdings are bought with the deposit.
    """
    ccy = snapshot.base_currency
    quarters = f"{config.quarters:g} quarters"
    deposit = actions.deposit(shortfall, ccy)
    if config.reserve_symbols:
        symbol = config.reserve_symbols[0]
        purchase = actions.trade("buy", shortfall, ccy, symbols=(symbol,))
        text = (
            f"Deposit about {money(deposit.amount, ccy)} and buy {money(purchase.amount, ccy)} of "
            f"{names(config.reserve_symbols)} with it (or fund the purchase by selling other "
            f"holdings) to cover {quarters} of financing cost, where the alert clears"
        )
        return text, [actions.remedy(deposit, purchase)]
    remedies = []
    sale_text = ""
    rate = lowest_rates(snapshot, book, leveraged=leveraged, portfolio_margin=portfolio_margin).long
    exposure = exposure_of(snapshot, book)
    if rate and exposure is not None:
        sale = actions.trade(
            "sell", shortfall / rate, ccy, rate=rate, held=exposure.long_marginable
        )
        if sale.amount <= exposure.long_marginable:
            remedies.append(actions.remedy(sale))
            sale_text = (
                f" or sell about {money(sale.amount, ccy)} of long positions (sized at "
                f"{pct(rate)}, the lowest maintenance a holding here can have)"
            )
    remedies.append(actions.remedy(deposit))
    text = (
        f"Raise ExcessLiquidity by about {money(deposit.amount, ccy)}: deposit "
        f"{money(deposit.amount, ccy)}{sale_text} to cover {quarters} of financing cost, where "
        "the alert clears"
    )
    return text, remedies


SPEC = RuleSpec(
    "cash_reserve",
    cash_reserve,
    CashReserveConfig,
    "money",
    "reserve vs two quarters of financing cost",
    reads=("cash_balance", "cash_balances", "excess_liquidity", "positions"),
    shares={
        "financing": "financing_cost",
        "leveraged": "leveraged_etf",
        "portfolio_margin": "pm_equity_floor",
    },
)
