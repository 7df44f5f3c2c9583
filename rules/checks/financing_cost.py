"""The ``financing_cost`` rule: the tiered cost of the margin loan and its year-over-year rise.

History (the cost a year ago) comes from the context; with none, the rule says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

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
from rules.validation import FORBID_EXTRA, finite, fraction, positive, set_field


@dataclass(frozen=True)
class InterestTier:
    """One tier of a tiered margin rate: balances up to ``up_to`` (``None`` = no upper bound).

    Exactly one of ``rate`` (a fixed annual rate) or ``spread`` (added to the benchmark).
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = FORBID_EXTRA

    up_to: float | None = None
    rate: float | None = None
    spread: float | None = None

    def __post_init__(self) -> None:
        if self.up_to is not None:
            positive("up_to", self.up_to)
        if (self.rate is None) == (self.spread is None):
            raise ValueError(
                "each tier needs exactly one of rate (a fixed annual rate, 0.03 = 3%) "
                "or spread (added to benchmark_rate, 0.015 = 1.5 points)"
            )
        if self.rate is not None:
            fraction("rate", self.rate)
        if self.spread is not None:
            finite("spread", self.spread)
            if abs(self.spread) > 1:
                raise ValueError(
                    f"spread must be a fraction (0.015 = 1.5 points), got {self.spread!r}"
                )


#: IBKR Pro USD tiers (margin-rules.md section 3): spreads over the benchmark (Fed Funds eff.).
IBKR_PRO_USD_TIERS: tuple[InterestTier, ...] = (
    InterestTier(up_to=100_000.0, spread=0.015),
    InterestTier(up_to=1_000_000.0, spread=0.01),
    InterestTier(up_to=50_000_000.0, spread=0.0075),
    InterestTier(up_to=200_000_000.0, spread=0.005),
    InterestTier(up_to=None, spread=0.005),
)


@dataclass(frozen=True)
class FinancingCostConfig(RuleConfig):
    """``financing_cost``: the tiered annual cost of the margin loan, and its year-over-year rise.

    Tiers are blended like tax brackets, in ascending ``up_to`` order; the last may be open
    (``up_to`` omitted). ``benchmark_rate`` (e.g. the Fed Funds effective rate, 0.0433) moves,
    so it has no built-in value: with spread tiers and no benchmark the cost is not computed and
    the rule says so. ``day_count`` 360 (USD, actual/360) or 365 (GBP). ``rate_rise`` is the
    what-if rise reported (0.005 = +0.5 point). Warning when the annual cost is more than
    ``increase_warning`` above its level a year earlier; ``loan_cut`` is the cut named then.
    """

    tiers: tuple[InterestTier, ...] = IBKR_PRO_USD_TIERS
    benchmark_rate: float | None = None
    day_count: int = 360
    rate_rise: float = 0.005
    increase_warning: float = 0.15
    loan_cut: float = 0.20
    clear_margin: float = 0.02

    def __post_init__(self) -> None:
        tiers = tuple(
            tier if isinstance(tier, InterestTier) else InterestTier(**tier) for tier in self.tiers
        )
        if not tiers:
            raise ValueError("tiers must hold at least one tier")
        previous = 0.0
        for index, tier in enumerate(tiers):
            if tier.up_to is None:
                if index != len(tiers) - 1:
                    raise ValueError(f"tiers[{index}]: only the last tier may omit up_to")
                continue
            if tier.up_to <= previous:
                raise ValueError(
                    f"tiers[{index}].up_to ({tier.up_to:g}) must be above the previous tier's "
                    f"({previous:g}): list tiers in ascending order"
                )
            previous = tier.up_to
        set_field(self, "tiers", tiers)
        if self.benchmark_rate is not None:
            fraction("benchmark_rate", self.benchmark_rate)
        if self.day_count not in (360, 365):
            raise ValueError(f"day_count must be 360 (actual/360) or 365, got {self.day_count!r}")
        fraction("rate_rise", self.rate_rise)
        positive("increase_warning", self.increase_warning)
        fraction("loan_cut", self.loan_cut, allow_zero=False)
        fraction("clear_margin", self.clear_margin)


NO_BENCHMARK = (
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
    loan = snapshot.margin_loan
    assert loan is not None  # absent() vouched for the cash balance
    ccy = snapshot.base_currency
    if loan <= 0:
        return not_applicable(rule, snapshot, "No margin loan: no financing cost", value=0.0)
    cost = figures.financing_cost(loan, config)
    if cost is None:
        return not_applicable(
            rule,
            snapshot,
            f"Margin loan {money(loan, ccy)}; {NO_BENCHMARK}",
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
    if not (is_number(year_ago) and year_ago > 0):
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


SPEC = RuleSpec(
    "financing_cost",
    financing_cost,
    FinancingCostConfig,
    "money",
    "tiered annual/daily cost, effective rate, +0.5 pp, year-over-year rise",
    reads=("cash_balance",),
    history={"annual_financing_cost": "annual_cost"},
)
