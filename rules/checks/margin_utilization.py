"""The ``margin_utilization`` rule: the margin loan as a share of NLV, against the cap."""

from __future__ import annotations

from dataclasses import dataclass

from rules import actions, figures
from rules.common import (
    MIN_EQUITY,
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
    grade_above,
    is_number,
)
from rules.text import money, pct
from rules.validation import fraction, upper_levels


@dataclass(frozen=True)
class MarginUtilizationConfig(RuleConfig):
    """``margin_utilization``: margin loan / NLV against the cap (fractions)."""

    warning: float | None = 0.30
    critical: float | None = None
    clear_margin: float = 0.02

    def __post_init__(self) -> None:
        fraction("clear_margin", self.clear_margin)
        upper_levels(self.warning, self.critical, self.clear_margin)


def margin_utilization(
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: MarginUtilizationConfig,
    *,
    book: Book | None = None,
) -> Finding:
    """The margin loan (negative base cash) as a share of NLV, against the cap (30%).

    The action brings the loan to the clear level c (the cap less ``clear_margin``): a sale
    of long positions whose proceeds repay S = loan - c x NLV (NLV does not move), or a deposit
    D = (loan - c x NLV) / (1 + c) (it repays D and adds D to NLV). With NLV not positive the
    loan exceeds the equity: no ratio, the worst level, and a deposit.
    """
    rule = "margin_utilization"
    lacking = absent(snapshot, "net_liquidation", "cash_balance", positive_equity=False)
    if lacking:
        return missing(rule, snapshot, lacking)
    nlv, loan = snapshot.net_liquidation, snapshot.margin_loan
    assert is_number(nlv) and loan is not None  # absent() vouched for them
    ccy = snapshot.base_currency
    cap = config.warning if config.warning is not None else config.critical
    if loan < MIN_EQUITY:  # under a cent: nothing to repay
        return not_applicable(
            rule, snapshot, "No margin loan (base cash is not negative)", value=0.0, threshold=cap
        )
    value: float | None = None
    share = f"margin loan {money(loan, ccy)}"
    if nlv < MIN_EQUITY:
        severity = Severity.CRITICAL if config.critical is not None else Severity.WARNING
        clear = severity
        message = (
            f"The {share} exceeds the equity: NetLiquidation is {money(nlv, ccy)} (no ratio "
            "is reported)"
        )
    else:
        value = loan / nlv
        share += f" is {pct(value)} of NLV"
        severity, clear = grade_above(value, config.warning, config.critical, config.clear_margin)
        if severity is Severity.OK:
            message = f"The {share}" + (f" (cap {pct(cap)})" if cap is not None else "")
        else:
            level = config.critical if severity is Severity.CRITICAL else config.warning
            assert level is not None  # a level was breached
            message = f"The {share}, above the {pct(level)} cap"
    action = None
    remedies: list[Remedy] = []
    if severity is not Severity.OK and cap is not None:
        target = cap - config.clear_margin
        goal = f"bring it to {pct(target)} of NLV, where the alert clears"
        deposit = actions.deposit(figures.deposit_for_loan_cap(loan, nlv, target), ccy)
        deposit_text = f"deposit about {money(deposit.amount, ccy)}"
        positions = Book.of(snapshot) if book is None else book
        exposure = exposure_of(snapshot, positions)
        longs = exposure.long if exposure is not None else 0.0
        sale = actions.trade("sell", loan - target * max(nlv, 0.0), ccy, held=longs)
        if nlv >= MIN_EQUITY and 0 < sale.amount <= longs:
            remedies.append(actions.remedy(sale))
            action = (
                f"Sell about {money(sale.amount, ccy)} of long positions and keep the proceeds "
                f"(they repay the loan), or {deposit_text}, to {goal}"
            )
        else:
            action = f"{deposit_text[0].upper()}{deposit_text[1:]} to {goal}"
            if nlv >= MIN_EQUITY:
                action += f" (selling cannot: it would take {money(sale.amount, ccy)} of longs)"
        remedies.append(actions.remedy(deposit))
    threshold = config.critical if severity is Severity.CRITICAL else cap
    return make(
        rule,
        snapshot,
        severity,
        value,
        threshold,
        message,
        action=action,
        clear=clear,
        details={"margin_loan": loan, "net_liquidation": nlv},
        remedies=remedies,
    )


SPEC = RuleSpec(
    "margin_utilization",
    margin_utilization,
    MarginUtilizationConfig,
    "percent",
    "margin loan / NLV",
    reads=("net_liquidation", "cash_balance", "positions"),
)
