"""The ``margin_utilization`` rule: the margin loan as a share of NLV, against the cap."""

from __future__ import annotations

from dataclasses import dataclass

from rules.common import RuleConfig, RuleSpec, absent, make, missing, not_applicable
from rules.model import (
    AccountSnapshot,
    EvaluationContext,
    Finding,
    Severity,
    grade_above,
    is_number,
)
from rules.text import money, pct
from rules.validation import fraction, ordered_above, positive


@dataclass(frozen=True)
class MarginUtilizationConfig(RuleConfig):
    """``margin_utilization``: margin loan / NLV against the cap (fractions)."""

    warning: float | None = 0.30
    critical: float | None = None
    clear_margin: float = 0.02

    def __post_init__(self) -> None:
        for name in ("warning", "critical"):
            value = getattr(self, name)
            if value is not None:
                positive(name, value)
        fraction("clear_margin", self.clear_margin)
        ordered_above(self.warning, self.critical)


def margin_utilization(
    snapshot: AccountSnapshot, context: EvaluationContext, config: MarginUtilizationConfig
) -> Finding:
    """The margin loan (negative base cash) as a share of NLV, against the cap (30%)."""
    rule = "margin_utilization"
    lacking = absent(snapshot, "net_liquidation", "cash_balance")
    if lacking:
        return missing(rule, snapshot, lacking)
    nlv, loan = snapshot.net_liquidation, snapshot.margin_loan
    assert is_number(nlv) and loan is not None  # absent() vouched for them
    ccy = snapshot.base_currency
    cap = config.warning if config.warning is not None else config.critical
    if loan <= 0:
        return not_applicable(
            rule, snapshot, "No margin loan (base cash is not negative)", value=0.0, threshold=cap
        )
    value = loan / nlv
    severity, clear = grade_above(value, config.warning, config.critical, config.clear_margin)
    share = f"margin loan {money(loan, ccy)} is {pct(value)} of NLV"
    if severity is Severity.OK:
        message = f"The {share}" + (f" (cap {pct(cap)})" if cap is not None else "")
    else:
        level = config.critical if severity is Severity.CRITICAL else config.warning
        assert level is not None  # a level was breached
        message = f"The {share}, above the {pct(level)} cap"
    action = None
    if severity is not Severity.OK and cap is not None:
        repay = loan - cap * nlv
        action = (
            f"Repay about {money(repay, ccy)} of the {money(loan, ccy)} margin loan (deposit, or "
            f"sell positions and keep the proceeds) to bring it to {pct(cap)} of NLV"
        )
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
    )


SPEC = RuleSpec(
    "margin_utilization",
    margin_utilization,
    MarginUtilizationConfig,
    "percent",
    "margin loan / NLV",
    reads=("net_liquidation", "cash_balance"),
)
