"""The ``min_equity`` rule: NLV in USD against the minimum a margin account needs."""

from __future__ import annotations

from dataclasses import dataclass

from rules.common import RuleConfig, RuleSpec, absent, make, missing
from rules.model import (
    AccountSnapshot,
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
    """``min_equity``: NLV converted to USD below the USD 2,000 a margin account needs."""

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
    """NLV converted to USD, the base units per USD, and what is missing."""
    lacking = absent(snapshot, "net_liquidation")
    rate = snapshot.rate_to_base("USD")
    if rate is None:
        lacking.append(f"USD exchange rate for base currency {snapshot.base_currency}")
    nlv = snapshot.net_liquidation
    if lacking or rate is None or not is_number(nlv):
        return None, rate, lacking
    return nlv / rate, rate, []


def deposit_text(snapshot: AccountSnapshot, usd: float, rate: float) -> str:
    """A deposit of ``usd`` USD, shown in the base currency too when that is not USD."""
    base = usd * rate
    if snapshot.base_currency in ("USD", ""):
        return money(usd, "USD")
    return f"{money(base, snapshot.base_currency)} ({money(usd, 'USD')})"


def min_equity(
    snapshot: AccountSnapshot, context: EvaluationContext, config: MinEquityConfig
) -> Finding:
    """Margin accounts need at least USD 2,000 (NLV converted to USD)."""
    rule = "min_equity"
    usd, rate, lacking = usd_equity(snapshot)
    if lacking:
        return missing(rule, snapshot, lacking)
    assert usd is not None and rate is not None
    severity, clear = grade_below(usd, config.warning, config.critical, config.clear_margin)
    minimum = money(config.warning, "USD")
    if severity is Severity.OK:
        message = f"NLV {money(usd, 'USD')} (margin accounts need at least {minimum})"
    else:
        message = f"NLV {money(usd, 'USD')} is under the {minimum} a margin account needs to trade"
    action = None
    if severity is not Severity.OK:
        deposit = deposit_text(snapshot, config.warning - usd, rate)
        action = f"Deposit about {deposit} to reach {minimum}"
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
    )


SPEC = RuleSpec(
    "min_equity",
    min_equity,
    MinEquityConfig,
    "money",
    "NLV in USD",
    reads=("net_liquidation", "exchange_rates"),
)
