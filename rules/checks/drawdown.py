"""The ``drawdown`` rule: the market's drawdown from its prior peak (seed 001's trigger),
with the account's own NLV drawdown beside it, naming the 20% loan cut."""

from __future__ import annotations

from dataclasses import dataclass, replace

from rules import figures
from rules.common import RuleConfig, RuleSpec, make, missing, not_applicable
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
class DrawdownConfig(RuleConfig):
    """``drawdown``: "market drawdown exceeds 12% from the prior peak" (seed 001).

    The market is ``benchmark`` (a stock or ETF symbol on ``benchmark_exchange`` in
    ``benchmark_currency``): its price against its highest daily close over the last
    ``lookback_days`` (IB's daily bars at start, the streamed price after). The account's own
    NLV drawdown from its recorded peak is reported beside it. ``benchmark = ""`` measures the
    account's NLV drawdown instead. The action names the cut of the margin loan by
    ``loan_cut`` (20%).
    """

    warning: float | None = 0.12
    critical: float | None = None
    benchmark: str = "SPY"
    benchmark_exchange: str = "SMART"
    benchmark_currency: str = "USD"
    lookback_days: int = 365
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
        positive("lookback_days", self.lookback_days)
        for name in ("benchmark", "benchmark_exchange", "benchmark_currency"):
            text = getattr(self, name)
            if not isinstance(text, str) or (text.strip() != text) or " " in text:
                raise ValueError(f"{name} must be a symbol without spaces, got {text!r}")


def account_drawdown(snapshot: AccountSnapshot, context: EvaluationContext) -> dict[str, float]:
    """The account's NLV, its peak (the recorded peak or NLV, whichever is higher: with none
    recorded yet NLV is the peak) and how far below it NLV is; empty when NLV is unknown."""
    nlv, stored = snapshot.net_liquidation, context.peak_net_liquidation
    if not (is_number(nlv) and nlv > 0):
        return {}
    peak = max(stored, nlv) if is_number(stored) and stored > 0 else nlv
    below = figures.drawdown(nlv, peak)
    assert below is not None  # the peak is a positive number
    return {"account_peak": peak, "net_liquidation": nlv, "account_drawdown": below}


def drawdown(
    snapshot: AccountSnapshot, context: EvaluationContext, config: DrawdownConfig
) -> Finding:
    """The benchmark's fall from its prior peak against 12% (the action is the 20% cut of the
    margin loan), the account's NLV drawdown beside it; the account's own drawdown when no
    benchmark is set. Missing benchmark data holds any alert and says so."""
    if not config.benchmark:
        return _account_only(snapshot, context, config)
    rule = "drawdown"
    symbol = config.benchmark
    ccy = snapshot.base_currency
    threshold = config.warning if config.warning is not None else config.critical
    account = account_drawdown(snapshot, context)
    beside = _account_text(snapshot, account)
    price, peak = context.benchmark_price, context.benchmark_peak
    if not (is_number(price) and price > 0 and is_number(peak) and peak > 0):
        lacking = "price" if not (is_number(price) and price > 0) else "prior peak"
        why = context.benchmark_note or "no data from IB yet"
        held = missing(rule, snapshot, [f"{symbol} {lacking}"])
        # Market data, not the account's: the account's status stays what its own figures
        # say; the finding holds any alert (data_missing) and says plainly what is missing.
        return replace(
            held,
            severity=Severity.OK,
            clear_severity=Severity.OK,
            message=f"Market drawdown unknown: no {symbol} {lacking} ({why}); {beside}",
            details={**held.details, "benchmark": symbol, **account},
        )
    peak = max(peak, price)
    value = 1.0 - price / peak
    severity, clear = grade_above(value, config.warning, config.critical, config.clear_margin)
    when = f" ({context.benchmark_peak_on.isoformat()})" if context.benchmark_peak_on else ""
    trigger = f", trigger {pct(threshold)}" if threshold is not None else ""
    message = (
        f"Market drawdown: {symbol} {price:,.2f} is {pct(value)} below its prior peak "
        f"{peak:,.2f}{when}{trigger}; {beside}"
    )
    details = {
        "benchmark": symbol,
        "benchmark_price": price,
        "benchmark_peak": peak,
        "benchmark_peak_on": context.benchmark_peak_on.isoformat()
        if context.benchmark_peak_on
        else None,
        "market_drawdown": value,
        "margin_loan": snapshot.margin_loan,
        **account,
    }
    action = _loan_cut_action(snapshot, config, ccy) if severity is not Severity.OK else None
    return make(
        rule, snapshot, severity, value, threshold, message, action=action, clear=clear,
        details=details,
    )  # fmt: skip


def _account_text(snapshot: AccountSnapshot, account: dict[str, float]) -> str:
    """The account's own drawdown, and why it is not the market's."""
    ccy = snapshot.base_currency
    if not account:
        return "the account's own NLV drawdown is unknown (no NetLiquidation)"
    leverage = snapshot.leverage
    magnified = f" ({leverage:.2f}x gross here)" if leverage is not None else ""
    return (
        f"this account's NLV is {pct(account['account_drawdown'])} below its peak of "
        f"{money(account['account_peak'], ccy)}: leverage magnifies a market fall{magnified}, "
        "and a withdrawal lowers NLV without any loss (reset the peak after one: "
        "margin-monitor reset-peak)"
    )


def _loan_cut_action(snapshot: AccountSnapshot, config: DrawdownConfig, ccy: str) -> str:
    """Seed 001's response: reduce margin exposure by 20%, as a repayment of the loan."""
    loan = snapshot.margin_loan
    if loan is None:
        return (
            f"Cut the margin loan by {pct(config.loan_cut)} (loan amount unknown: "
            "TotalCashBalance missing)"
        )
    if loan > 0:
        cut = figures.loan_cut(loan, config.loan_cut)
        return (
            f"Cut the margin loan by {pct(config.loan_cut)}: repay {money(cut, ccy)} of "
            f"{money(loan, ccy)} (deposit, or sell positions and keep the proceeds)"
        )
    return "No margin loan to cut: review the positions' exposure to a falling market"


def _account_only(
    snapshot: AccountSnapshot, context: EvaluationContext, config: DrawdownConfig
) -> Finding:
    """``benchmark = ""``: the account's NLV below its recorded peak is the measure."""
    rule = "drawdown"
    nlv = snapshot.net_liquidation
    if not is_number(nlv) or nlv <= 0:
        return missing(rule, snapshot, ["NetLiquidation"])
    ccy = snapshot.base_currency
    threshold = config.warning if config.warning is not None else config.critical
    account = account_drawdown(snapshot, context)
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
    value, peak = account["account_drawdown"], account["account_peak"]
    severity, clear = grade_above(value, config.warning, config.critical, config.clear_margin)
    message = f"NLV {money(nlv, ccy)} is {pct(value)} below its peak of {money(peak, ccy)}" + (
        f" (trigger {pct(threshold)})" if threshold is not None else ""
    )
    details = {
        "peak": peak,
        "net_liquidation": nlv,
        "below_peak": peak - nlv,
        "margin_loan": snapshot.margin_loan,
        "account_drawdown": value,
    }
    action = _loan_cut_action(snapshot, config, ccy) if severity is not Severity.OK else None
    return make(
        rule, snapshot, severity, value, threshold, message, action=action, clear=clear,
        details=details,
    )  # fmt: skip


SPEC = RuleSpec(
    "drawdown",
    drawdown,
    DrawdownConfig,
    "percent",
    "the market benchmark (SPY) below its prior peak, the account's NLV drawdown beside it; "
    "the action names the 20% loan cut",
    reads=("net_liquidation", "cash_balance"),
    history={"market_drawdown": "market_drawdown"},
)
