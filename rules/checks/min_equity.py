"""The ``min_equity`` rule: NLV in USD against the minimum a margin account needs.

NLV at or below the floor fails, zero and negative NLV included: an account in deficit is
the first to fail it, never "data missing".
"""

from __future__ import annotations

from dataclasses import dataclass

from rules import actions
from rules.common import RuleConfig, RuleSpec, make, missing
from rules.model import (
    AccountSnapshot,
    Action,
    EvaluationContext,
    Finding,
    Severity,
    grade_below,
    is_number,
)
from rules.text import money
from rules.validation import ordered_below, positive


@dataclass(frozen=True)
class MinEquityConfig(RuleConfig):
    """``min_equity``: NLV converted to USD at or below the USD 2,000 a margin account needs."""

    warning: float = 2_000.0
    critical: float | None = None
    clear_margin: float = 100.0

    def __post_init__(self) -> None:
        positive("warning", self.warning)
        if self.critical is not None:
            positive("critical", self.critical)
        positive("clear_margin", self.clear_margin, allow_zero=True)
        ordered_below(self.warning, self.critical)


def usd_equity(snapshot: AccountSnapshot) -> tuple[float | None, float | None, list[str]]:
    """NLV converted to USD (zero or negative included), the base units per USD, and what is
    missing."""
    nlv = snapshot.net_liquidation
    lacking = [] if is_number(nlv) else ["NetLiquidation"]
    rate = snapshot.rate_to_base("USD")
    if rate is None:
        lacking.append(f"USD exchange rate for base currency {snapshot.base_currency}")
    if lacking or rate is None or not is_number(nlv):
        return None, rate, lacking
    return nlv / rate, rate, []


def deposit_to(
    snapshot: AccountSnapshot, target_usd: float, usd: float, rate: float
) -> tuple[Action, str]:
    """The deposit (in base currency, rounded up to the cent) that brings NLV from ``usd`` to
    ``target_usd``, and its text, in USD too when the base currency is not USD."""
    ccy = snapshot.base_currency or "USD"
    action = actions.deposit((target_usd - usd) * rate, ccy)
    if ccy == "USD":
        return action, money(action.amount, "USD")
    return action, f"{money(action.amount, ccy)} ({money(action.amount / rate, 'USD')})"


def min_equity(
    snapshot: AccountSnapshot, context: EvaluationContext, config: MinEquityConfig
) -> Finding:
    """Margin accounts need at least USD 2,000 (NLV converted to USD): at or below it fails.

    The deposit brings NLV to the floor plus ``clear_margin``, where the alert clears.
    """
    rule = "min_equity"
    usd, rate, lacking = usd_equity(snapshot)
    if lacking:
        return missing(rule, snapshot, lacking)
    assert usd is not None and rate is not None
    severity, clear = grade_below(usd, config.warning, config.critical, config.clear_margin)
    for level, graded in ((config.critical, Severity.CRITICAL), (config.warning, Severity.WARNING)):
        if level is not None and usd <= level and severity.rank < graded.rank:
            severity = graded  # at the floor fails too: the account needs more than it
    minimum = money(config.warning, "USD")
    if severity is Severity.OK:
        message = f"NLV {money(usd, 'USD')} (margin accounts need more than {minimum})"
    else:
        message = f"NLV {money(usd, 'USD')} is at or under the {minimum} a margin account needs"
    action = None
    remedies = []
    if severity is not Severity.OK:
        # The alert clears at the floor plus the clear margin (a cent above a bare floor).
        target = config.warning + max(config.clear_margin, 0.01)
        deposit, text = deposit_to(snapshot, target, usd, rate)
        action = (
            f"Deposit about {text} to bring NLV to {money(target, 'USD')}, where the alert clears"
        )
        remedies = [actions.remedy(deposit)]
    return make(
        rule,
        snapshot,
        severity,
        usd,
        config.warning,
        message,
        action=action,
        clear=clear,
        details={"net_liquidation_usd": usd},
        remedies=remedies,
    )


SPEC = RuleSpec(
    "min_equity",
    min_equity,
    MinEquityConfig,
    "money",
    "NLV in USD (zero and negative included)",
    reads=("net_liquidation", "exchange_rates"),
)
