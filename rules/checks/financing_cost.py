"""The ``financing_cost`` rule: the tiered cost of the margin loan and its year-over-year rise.

History (the cost a year ago) comes from the context; with none, the rule says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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


def _ibkr_pro_tiers(*bounds: float) -> tuple[InterestTier, ...]:
    """IBKR Pro's four-bound tier shape: BM + 1.5%, + 1%, + 0.75%, + 0.5%, then + 0.5% open."""
    spreads = (0.015, 0.01, 0.0075, 0.005)
    return (
        *(InterestTier(up_to=b, spread=sp) for b, sp in zip(bounds, spreads, strict=True)),
        InterestTier(up_to=None, spread=0.005),
    )


@dataclass(frozen=True)
class CurrencyTerms:
    """How a debit in one currency is charged: ``tiers`` in that currency's units,
    ``benchmark_rate`` (it moves: configuration only) and ``day_count`` (360 or 365).

    A key left out takes the built-in IBKR Pro value for the currency, if there is one.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = FORBID_EXTRA

    tiers: tuple[InterestTier, ...] | None = None
    benchmark_rate: float | None = None
    day_count: int | None = None

    def __post_init__(self) -> None:
        if self.tiers is not None:
            set_field(self, "tiers", checked_tiers(self.tiers))
        if self.benchmark_rate is not None:
            fraction("benchmark_rate", self.benchmark_rate)
        if self.day_count is not None:
            checked_day_count(self.day_count)


def checked_tiers(raw: Any) -> tuple[InterestTier, ...]:
    """Tiers as :class:`InterestTier` values, ascending, only the last open; ValueError else."""
    tiers = tuple(tier if isinstance(tier, InterestTier) else InterestTier(**tier) for tier in raw)
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
    return tiers


def checked_day_count(value: Any) -> int:
    """360 (actual/360) or 365 (actual/365); ValueError naming the choice otherwise."""
    if value not in (360, 365):
        raise ValueError(f"day_count must be 360 (actual/360) or 365, got {value!r}")
    return int(value)


#: IBKR Pro tiers and day counts of currencies other than USD, from IBKR's published pages as
#: read on 2026-12-02: tiers from the margin-rates page (interactivebrokers.com/en/trading/
#: margin-rates.php, CHF: 90,000 / 900,000 / 46,000,000 / 180,000,000), GBP's tiers and its
#: actual/365 from the interestCharged-Examples page (80,000 / 800,000 / 38,000,000 /
#: 150,000,000, "/365"); IBKR's day-count note: most currencies on a 360-day year, "exceptional
#: currencies (ex: GBP)" on 365. Other currencies: configure them (see config.example.toml).
BUILTIN_CURRENCY_TERMS: Mapping[str, CurrencyTerms] = {
    "GBP": CurrencyTerms(
        tiers=_ibkr_pro_tiers(80_000.0, 800_000.0, 38_000_000.0, 150_000_000.0), day_count=365
    ),
    "CHF": CurrencyTerms(
        tiers=_ibkr_pro_tiers(90_000.0, 900_000.0, 46_000_000.0, 180_000_000.0), day_count=360
    ),
}


@dataclass(frozen=True, slots=True)
class Terms:
    """One currency's resolved terms (a :class:`rules.figures.FinancingTerms`)."""

    currency: str
    tiers: tuple[InterestTier, ...]
    benchmark_rate: float | None
    day_count: int
    rate_rise: float
    where: str  # the section that sets this currency's benchmark, for messages


@dataclass(frozen=True)
class FinancingCostConfig(RuleConfig):
    """``financing_cost``: the tiered annual cost of each currency's debit, and its
    year-over-year rise.

    IBKR charges each currency's debit on its own benchmark, tiers and day count; a credit in
    one currency does not cancel the interest on a debit in another. ``tiers``,
    ``benchmark_rate`` and ``day_count`` are USD's (as before: IBKR Pro USD, the Fed Funds
    effective rate, actual/360); ``currencies`` sets other currencies' (``{GBP =
    {benchmark_rate = 0.0475}}``), over built-in IBKR Pro tables for GBP and CHF. Tiers are
    blended like tax brackets, in ascending ``up_to`` order; the last may be open. Benchmarks
    move, so none is built in: a debit whose tiers are spreads and whose currency has no
    benchmark has an unknown cost, and the rule says so. ``rate_rise`` is the what-if rise
    reported (0.005 = +0.5 point). Warning when the annual cost is more than
    ``increase_warning`` above its level a year earlier; ``loan_cut`` is the cut named then.
    """

    tiers: tuple[InterestTier, ...] = IBKR_PRO_USD_TIERS
    benchmark_rate: float | None = None
    day_count: int = 360
    currencies: dict[str, CurrencyTerms] = field(default_factory=dict)
    rate_rise: float = 0.005
    increase_warning: float = 0.15
    loan_cut: float = 0.20
    clear_margin: float = 0.02

    def __post_init__(self) -> None:
        set_field(self, "tiers", checked_tiers(self.tiers))
        if self.benchmark_rate is not None:
            fraction("benchmark_rate", self.benchmark_rate)
        checked_day_count(self.day_count)
        currencies: dict[str, CurrencyTerms] = {}
        for key, terms in dict(self.currencies).items():
            code = str(key).strip().upper()
            if len(code) != 3 or not code.isalpha():
                raise ValueError(f"currencies: {key!r} is not a currency code such as GBP")
            if code == "USD":
                raise ValueError(
                    "currencies.USD: USD's terms are the top-level tiers, benchmark_rate and "
                    "day_count of [rules.financing_cost]; set them there"
                )
            currencies[code] = terms if isinstance(terms, CurrencyTerms) else CurrencyTerms(**terms)
        set_field(self, "currencies", currencies)
        fraction("rate_rise", self.rate_rise)
        positive("increase_warning", self.increase_warning)
        fraction("loan_cut", self.loan_cut, allow_zero=False)
        fraction("clear_margin", self.clear_margin)

    def terms_for(self, currency: str) -> Terms | None:
        """The terms of ``currency``'s debits (configured over built-in), ``None`` when no tiers
        are known for it."""
        code = currency.upper()
        if code == "USD":
            return Terms(
                code,
                self.tiers,
                self.benchmark_rate,
                self.day_count,
                self.rate_rise,
                "[rules.financing_cost] benchmark_rate",
            )
        built_in = BUILTIN_CURRENCY_TERMS.get(code, CurrencyTerms())
        given = self.currencies.get(code, CurrencyTerms())
        tiers = given.tiers if given.tiers is not None else built_in.tiers
        if tiers is None:
            return None
        return Terms(
            code,
            tiers,
            given.benchmark_rate if given.benchmark_rate is not None else built_in.benchmark_rate,
            given.day_count or built_in.day_count or 360,
            self.rate_rise,
            f"[rules.financing_cost.currencies.{code}] benchmark_rate",
        )


@dataclass(frozen=True, slots=True)
class CurrencyDebit:
    """One currency's debit and what it costs, in that currency and in base currency.

    ``cost`` is ``None`` when it cannot be computed; ``unknown`` then says why and what to set.
    """

    currency: str
    debit: float
    rate_to_base: float | None
    cost: figures.FinancingCost | None
    unknown: str | None = None

    @property
    def debit_base(self) -> float | None:
        """The debit in base currency (``None`` without an exchange rate)."""
        return self.debit * self.rate_to_base if self.rate_to_base is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the finding's details (and the daily summary's history)."""
        cost, rate = self.cost, self.rate_to_base
        return {
            "currency": self.currency,
            "debit": self.debit,
            "debit_base": self.debit_base,
            "annual_cost": cost.annual if cost else None,
            "daily_cost": cost.daily if cost else None,
            "annual_cost_base": cost.annual * rate if cost and rate is not None else None,
            "daily_cost_base": cost.daily * rate if cost and rate is not None else None,
            "effective_rate": cost.effective_rate if cost else None,
            "day_count": cost.day_count if cost else None,
            "unknown": self.unknown,
        }


@dataclass(frozen=True, slots=True)
class Financing:
    """Every debit of an account and the total in base currency (``None`` parts unknown)."""

    debits: tuple[CurrencyDebit, ...]
    credits: dict[str, float]
    base_currency: str

    @property
    def loan(self) -> float:
        """The debits' sum in base currency (those with an exchange rate)."""
        return sum(d.debit_base or 0.0 for d in self.debits)

    @property
    def unknown(self) -> list[str]:
        """Why some debit's cost is unknown (empty when every cost is known)."""
        return [d.unknown for d in self.debits if d.unknown]

    def total(self) -> figures.FinancingCost | None:
        """Annual and daily cost of every debit in base currency (``None`` when one is
        unknown: a partial sum would understate it)."""
        if self.unknown or not self.debits:
            return None
        annual = daily = rise = 0.0
        for debit in self.debits:
            assert debit.cost is not None and debit.rate_to_base is not None
            annual += debit.cost.annual * debit.rate_to_base
            daily += debit.cost.daily * debit.rate_to_base
            rise += debit.cost.cost_of_rise * debit.rate_to_base
        first = self.debits[0].cost
        assert first is not None
        days = {d.cost.day_count for d in self.debits if d.cost is not None}
        return figures.FinancingCost(
            balance=self.loan,
            annual=annual,
            daily=daily,
            effective_rate=figures.effective_rate(annual, self.loan),
            cost_of_rise=rise,
            rate_rise=first.rate_rise,
            day_count=days.pop() if len(days) == 1 else 0,
        )

    def scaled(self, factor: float, config: FinancingCostConfig) -> Financing:
        """The same debits times ``factor`` (a loan cut), costed again."""
        balances = {d.currency: -d.debit * factor for d in self.debits}
        rates = {d.currency: d.rate_to_base for d in self.debits}
        return financing_of(balances, rates, self.base_currency, config)


def debit_balances(snapshot: AccountSnapshot) -> dict[str, float] | None:
    """Cash per currency (own units): IB's per-currency rows, else the base total as one
    base-currency balance; ``None`` when neither is known."""
    per_currency: dict[str, float] = {
        ccy.upper(): amount
        for ccy, amount in snapshot.cash_balances.items()
        if ccy and ccy.upper() != "BASE" and is_number(amount)
    }
    if per_currency:
        return per_currency
    if is_number(snapshot.cash_balance):
        return {snapshot.base_currency: snapshot.cash_balance}
    return None


def financing_breakdown(snapshot: AccountSnapshot, config: FinancingCostConfig) -> Financing | None:
    """Each currency's debit of ``snapshot`` costed on its own terms (``None``: no cash
    figures at all)."""
    balances = debit_balances(snapshot)
    if balances is None:
        return None
    rates = {ccy: snapshot.rate_to_base(ccy) for ccy in balances}
    return financing_of(balances, rates, snapshot.base_currency, config)


def financing_of(
    balances: Mapping[str, float],
    rates: Mapping[str, float | None],
    base_currency: str,
    config: FinancingCostConfig,
) -> Financing:
    """Cost the negative ``balances`` (own units) on their currencies' terms; ``rates`` convert
    each to base currency."""
    debits: list[CurrencyDebit] = []
    credits: dict[str, float] = {}
    for ccy, amount in sorted(balances.items()):
        if amount >= 0:
            if amount > 0:
                credits[ccy] = amount
            continue
        debit, rate = -amount, rates.get(ccy)
        terms = config.terms_for(ccy)
        unknown = None
        cost = None
        if terms is None:
            unknown = (
                f"{ccy} debit {money(debit, ccy)}: no tiers known for {ccy} (add "
                f"[rules.financing_cost.currencies.{ccy}] tiers, benchmark_rate and day_count "
                "from IBKR's margin-rates page)"
            )
        else:
            cost = figures.financing_cost(debit, terms)
            if cost is None:
                unknown = (
                    f"{ccy} debit {money(debit, ccy)}: its tiers are spreads over a benchmark "
                    f"and no {ccy} benchmark is set ({terms.where})"
                )
        if unknown is None and rate is None:
            unknown = f"{ccy} debit {money(debit, ccy)}: no ExchangeRate from IB for {ccy}"
        debits.append(CurrencyDebit(ccy, debit, rate, cost if unknown is None else None, unknown))
    return Financing(tuple(debits), credits, base_currency)


def _cost_text(cost: figures.FinancingCost, ccy: str) -> str:
    effective = (
        f"{pct(cost.effective_rate, 2)} effective; " if cost.effective_rate is not None else ""
    )
    days = f" on actual/{cost.day_count}" if cost.day_count else ""
    return (
        f"costs {money(cost.annual, ccy)} a year ({effective}{money(cost.daily, ccy)} a "
        f"day{days}); a +{cost.rate_rise * 100:g} pp rise would add "
        f"{money(cost.cost_of_rise, ccy)} a year"
    )


def breakdown_text(financing: Financing) -> str:
    """``CHF 25,000.00 (EUR 26,500.00) at CHF 375.00 a year, 1.5% on actual/360`` per debit,
    then the credits that do not offset them."""
    base = financing.base_currency
    parts = []
    for d in financing.debits:
        if d.unknown:
            parts.append(f"{d.unknown}: cost unknown")
            continue
        assert d.cost is not None
        converted = (
            f" ({money(d.debit_base, base)})"
            if d.currency != base and d.debit_base is not None
            else ""
        )
        effective = pct(d.cost.effective_rate, 2) if d.cost.effective_rate is not None else "n/a"
        parts.append(
            f"{money(d.debit, d.currency)}{converted} at {money(d.cost.annual, d.currency)} a "
            f"year ({effective} on actual/{d.cost.day_count})"
        )
    text = "; ".join(parts)
    if financing.credits and financing.debits:
        held = ", ".join(money(v, c) for c, v in financing.credits.items())
        text += f"; credits ({held}) do not offset a debit in another currency"
    return text


def financing_cost(
    snapshot: AccountSnapshot, context: EvaluationContext, config: FinancingCostConfig
) -> Finding:
    """The projected annual and daily cost of each currency's debit on its own terms, summed
    in base currency, with the effective rate and the cost of a rate rise; a warning when the
    annual cost is more than 15% above its level a year earlier
    (``context.financing_cost_year_ago``)."""
    rule = "financing_cost"
    financing = financing_breakdown(snapshot, config)
    if financing is None:
        return missing(rule, snapshot, absent(snapshot, "cash_balance"))
    ccy = snapshot.base_currency
    if not financing.debits:
        return not_applicable(
            rule, snapshot, "No margin loan (no currency in debit): no financing cost", value=0.0
        )
    loan = financing.loan
    cost = financing.total()
    breakdown = [d.to_dict() for d in financing.debits]
    details: dict[str, object] = {"margin_loan": loan, "currencies": breakdown}
    if cost is None:
        return not_applicable(
            rule,
            snapshot,
            "Financing cost not computed: " + "; ".join(financing.unknown),
            details=details,
        )
    details.update(
        {
            "annual_cost": cost.annual,
            "daily_cost": cost.daily,
            "effective_rate": cost.effective_rate,
            "cost_of_rise": cost.cost_of_rise,
            "day_count": cost.day_count or None,
        }
    )
    base = f"Margin loan {money(loan, ccy)} {_cost_text(cost, ccy)}"
    if len(financing.debits) > 1 or financing.credits or financing.debits[0].currency != ccy:
        base += f" [{breakdown_text(financing)}]"
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
        after = financing.scaled(1 - config.loan_cut, config).total()
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
    "each currency's debit on its own tiers and day count; annual/daily cost, effective rate, "
    "+0.5 pp, year-over-year rise",
    reads=("cash_balance", "cash_balances"),
    history={"annual_financing_cost": "annual_cost", "financing_by_currency": "currencies"},
)
