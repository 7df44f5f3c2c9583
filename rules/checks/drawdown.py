"""The ``drawdown`` rule: NLV below its recorded peak (from the context), naming the loan cut."""

from __future__ import annotations

from dataclasses import dataclass

from rules import figures
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
from rules.validation import fraction, ordered_above


@dataclass(frozen=True)
class DrawdownConfig(RuleConfig):
    """``drawdown``: NLV below its recorded peak (fractions).

    The action names the cut of the margin loan by ``loan_cut`` (20%).
    """

    warning: float | None = 0.12
    critical: float | None = None
    loan_cut: float = 0.20
    clear_margin: float = 0.02

    def __post_init__(self) -> None:
        for name in ("warning", "critical"):
            value = getattr(self, name)
            if value is not None:
                fraction(name, value, allow_zero=False)
        fraction("loan_cut", self.loan_cut, allow_zero=False)
        fraction("clear_margin", self.clear_margin)
        ordered_above(self.warning, self.critical)


def drawdown(
    snapshot: AccountSnapshot, context: EvaluationContext, config: DrawdownConfig
) -> Finding:
    """NLV more than 12% below its recorded peak: the action is the 20% cut of the margin loan."""
    rule = "drawdown"
    lacking = absent(snapshot, "net_liquidation")
    if lacking:
        return missing(rule, snapshot, lacking)
    nlv = snapshot.net_liquidation
    assert is_number(nlv)  # absent() vouched for it
    ccy = snapshot.base_currency
    threshold = config.warning if config.warning is not None else config.critical
    stored = context.peak_net_liquidation
    if not (is_number(stored) and stored > 0):
        return not_applicable(
            rule,
            snapshot,
            f"No recorded peak yet: NLV {money(nlv, ccy)} is the peak",
            value=0.0,
            threshold=threshold,
            details={"peak": nlv},
        )
    peak = max(stored, nlv)
    value = figures.drawdown(nlv, peak)
    assert value is not None  # the peak is a positive number
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


SPEC = RuleSpec(
    "drawdown",
    drawdown,
    DrawdownConfig,
    "percent",
    "NLV below its recorded peak; the action names the 20% loan cut",
    reads=("net_liquidation", "cash_balance"),
)
