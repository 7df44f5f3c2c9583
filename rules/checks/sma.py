"""The ``sma`` rule: Reg T SMA below 0, critical inside the end-of-day window."""

from __future__ import annotations

from dataclasses import dataclass

from rules import actions
from rules.clock import session_window
from rules.common import RuleConfig, RuleSpec, absent, make, missing
from rules.model import (
    AccountSnapshot,
    EvaluationContext,
    Finding,
    Severity,
    grade_below,
    is_number,
)
from rules.text import money, pct
from rules.validation import fraction, positive, window_fields


@dataclass(frozen=True)
class SmaConfig(RuleConfig):
    """``sma``: SMA < 0 is a warning, critical inside the Reg T end-of-day window (trading days;
    on an early-close day it moves with the close; weekdays when the calendar is unknown).

    ``reg_t_rate`` is the share of a sale credited to SMA (50%), used to size the sale.
    ``clear_margin`` is in base currency.
    """

    window_start: str = "15:50"
    window_end: str = "17:20"
    timezone: str = "America/New_York"
    reg_t_rate: float = 0.50
    clear_margin: float = 0.0

    def __post_init__(self) -> None:
        window_fields(self)
        fraction("reg_t_rate", self.reg_t_rate, allow_zero=False)
        positive("clear_margin", self.clear_margin, allow_zero=True)


def sma(snapshot: AccountSnapshot, context: EvaluationContext, config: SmaConfig) -> Finding:
    """SMA < 0 is a warning, critical inside the Reg T end-of-day window (15:50-17:20 ET)."""
    rule = "sma"
    lacking = absent(snapshot, "sma")
    if lacking:
        return missing(rule, snapshot, lacking)
    value = snapshot.sma
    assert is_number(value)  # absent() vouched for it
    today = session_window(
        context.now, config.window_start, config.window_end, config.timezone, context.trading_day
    )
    window = today.inside
    severity, clear = grade_below(value, 0.0, None, config.clear_margin)
    if window:
        severity = Severity.CRITICAL if severity is Severity.WARNING else severity
        clear = Severity.CRITICAL if clear is Severity.WARNING else clear
    ccy = snapshot.base_currency
    span = today.text
    if severity is Severity.OK:
        message = f"SMA {money(value, ccy)} (must be 0 or more at the Reg T check, {span})"
    elif window:
        message = (
            f"SMA is {money(value, ccy)}, below 0, inside the Reg T end-of-day check ({span}): "
            "a Reg T call or liquidation follows on a day with a position change"
        )
    else:
        check = f"the {span} check" if today.exists else f"the next session's check ({span})"
        message = f"SMA is {money(value, ccy)}, below 0: it must be 0 or more by {check}"
    action = None
    remedies = []
    if severity is not Severity.OK:
        needed = config.clear_margin - value  # to 0 plus the clear margin
        deposit = actions.deposit(needed, ccy)
        sale = actions.trade(
            "reduce", needed / config.reg_t_rate, ccy, held=snapshot.gross_position_value
        )
        when = "now" if window else f"before {today.starts}"
        gross = snapshot.gross_position_value
        raise_by = money(deposit.amount, ccy)
        action = f"Raise SMA by {raise_by} {when}: deposit {raise_by}"
        remedies = [actions.remedy(deposit)]
        if is_number(gross) and 0 < sale.amount <= gross:
            action += (
                f" or sell (or buy back) about {money(sale.amount, ccy)} of positions (a trade "
                f"credits {pct(config.reg_t_rate)} of its value to SMA)"
            )
            remedies.append(actions.remedy(sale))
    return make(
        rule,
        snapshot,
        severity,
        value,
        0.0,
        message,
        action=action,
        clear=clear,
        details={"sma": value, "in_window": window},
        remedies=remedies,
    )


SPEC = RuleSpec("sma", sma, SmaConfig, "money", "Reg T SMA", reads=("sma",))
