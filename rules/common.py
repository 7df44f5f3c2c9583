"""What every rule module declares and uses: its spec, its settings' base, findings, input
checks and the per-snapshot sums (:class:`Book`).

Standard library only, and no state: everything here is a value or a pure function.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rules.model import (
    IB_MARGIN_TAGS,
    AccountSnapshot,
    ActionKind,
    Finding,
    Position,
    Remedy,
    Severity,
    is_number,
)
from rules.text import Unit, names
from rules.validation import FORBID_EXTRA

#: IB's tag names, used in "data missing" messages.
TAGS = {**IB_MARGIN_TAGS, "cushion": "Cushion", "cash_balance": "TotalCashBalance (BASE)"}

#: Below this, an NLV is treated as no equity at all (ratios to it would be meaningless).
MIN_EQUITY = 0.01

#: Figures that cannot be negative: a negative one is garbage, not a number to compute with.
NON_NEGATIVE = frozenset(
    {"gross_position_value", "init_margin_req", "maint_margin_req", "look_ahead_maint_margin_req"}
)

#: Security types whose holdings count as stock or ETF positions.
EQUITY_TYPES = frozenset({"STK", "ETF"})
#: Contract-details stockType values that mark an ETF.
ETF_STOCK_TYPES = frozenset({"ETF", "etf", "Etf"})
#: Security types of options: in NLV and GPV, not in EquityWithLoanValue.
OPTION_TYPES = frozenset({"OPT", "FOP", "WAR"})


# -- declaring a rule ------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleConfig:
    """The settings every rule has (``enabled``); each rule subclasses it with its own.

    A subclass is a frozen dataclass whose ``__post_init__`` checks its values; pydantic
    validates it from the ``[rules.<id>]`` TOML section and, through ``__pydantic_config__``,
    rejects unknown keys.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = FORBID_EXTRA

    enabled: bool = True


#: ``(snapshot, context, config, **shared) -> Finding``.
RuleFunction = Callable[..., Finding]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """Everything about one rule that is not its arithmetic, declared beside its function.

    ``id`` is stable (the ``rule`` of ``check --json`` and the ``[rules.<id>]`` section);
    ``unit`` is how its measured value reads; ``reads`` names the snapshot fields it uses.
    ``shares`` maps a keyword argument of ``check`` to the id of another rule whose section it
    also receives (the leveraged-ETF rule reads the cushion levels). ``history`` maps a key of
    the per-minute history row to the key of the finding's ``details`` it is copied from.
    """

    id: str
    check: RuleFunction
    config: type[RuleConfig]
    unit: Unit
    summary: str
    reads: tuple[str, ...] = ()
    shares: Mapping[str, str] = field(default_factory=dict)
    history: Mapping[str, str] = field(default_factory=dict)


# -- findings ---------------------------------------------------------------------------------


def make(
    rule: str,
    snapshot: AccountSnapshot,
    severity: Severity,
    value: float | None,
    threshold: float | None,
    message: str,
    *,
    action: str | None = None,
    clear: Severity | None = None,
    details: Mapping[str, Any] | None = None,
    remedies: Iterable[Remedy] = (),
) -> Finding:
    """A finding for ``snapshot`` (``estimated`` copied from it). The action text and the
    remedies are kept only on a warning or critical finding."""
    alerting = severity in (Severity.WARNING, Severity.CRITICAL)
    return Finding(
        rule=rule,
        account=snapshot.account,
        severity=severity,
        value=value if value is None or math.isfinite(value) else None,
        threshold=threshold if threshold is None or math.isfinite(threshold) else None,
        message=message,
        action=action if alerting else None,
        clear_severity=clear if clear is not None else severity,
        estimated=snapshot.estimated,
        details=dict(details or {}),
        remedies=tuple(remedy for remedy in remedies if remedy.actions) if alerting else (),
    )


def missing(rule: str, snapshot: AccountSnapshot, what: Iterable[str]) -> Finding:
    """An ``unknown`` finding naming the inputs that are missing: nothing was computed."""
    listed = ", ".join(what)
    return Finding(
        rule=rule,
        account=snapshot.account,
        severity=Severity.UNKNOWN,
        value=None,
        threshold=None,
        message=f"data missing: {listed}; not evaluated",
        data_missing=True,
        estimated=snapshot.estimated,
        details={"missing": listed},
    )


def not_applicable(
    rule: str,
    snapshot: AccountSnapshot,
    message: str,
    *,
    value: float | None = None,
    threshold: float | None = None,
    details: Mapping[str, Any] | None = None,
) -> Finding:
    """An ``ok`` finding for a rule that does not apply to this account (not missing data)."""
    return make(rule, snapshot, Severity.OK, value, threshold, message, details=details)


def absent(snapshot: AccountSnapshot, *fields: str, positive_equity: bool = True) -> list[str]:
    """The IB tag names of ``fields`` that are missing or not finite; NLV must be at least a
    cent (unless ``positive_equity`` is false: a rule that handles a deficit itself) and
    requirements and GPV must not be negative."""
    result = []
    for name in fields:
        value = getattr(snapshot, name)
        tag = TAGS.get(name, name)
        if not is_number(value):
            result.append(tag)
        elif name == "net_liquidation" and not positive_equity:
            continue
        elif name == "net_liquidation" and value <= 0:
            result.append(f"{tag} (not positive: {value:,.2f}; a ratio to it means nothing)")
        elif name == "net_liquidation" and value < MIN_EQUITY:
            result.append(f"{tag} (under one cent: {value:g})")
        elif name in NON_NEGATIVE and value < 0:
            result.append(f"{tag} (negative: {value:g})")
    return result


# -- per-snapshot sums ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Book:
    """Sums over one snapshot's positions: the engine builds them once per evaluation
    (:meth:`of`) and hands them to every rule that reads positions, so the whole catalog stays
    linear in the number of positions.

    Equity positions (secType STK) are summed per upper-cased symbol: ``quantities`` has every
    symbol held, ``values`` the base-currency market value of the priced positions, ``etfs``
    the symbols whose stockType is ETF, ``unpriced`` the symbols with a position lacking a
    value (an ordered set), ``no_rate`` those of them whose local value is known but whose
    currency IB sent no exchange rate for (symbol -> currency). ``long_value`` /
    ``short_value`` sum every priced position of any secType (the short one as a size);
    ``long_options`` / ``short_options`` the options among them (secType OPT, FOP, WAR), which
    are not in EquityWithLoanValue.
    """

    values: dict[str, float] = field(default_factory=dict)
    quantities: dict[str, float] = field(default_factory=dict)
    etfs: set[str] = field(default_factory=set)
    unpriced: dict[str, None] = field(default_factory=dict)
    long_value: float = 0.0
    short_value: float = 0.0
    all_priced: bool = True
    long_options: float = 0.0
    short_options: float = 0.0
    no_rate: dict[str, str] = field(default_factory=dict)
    base_currency: str = ""

    def lacking(self, symbols: Iterable[str]) -> list[str]:
        """What is missing to value ``symbols``, for a "data missing" finding: the exchange
        rate by name when that is all that is missing, else the market value."""
        by_currency: dict[str, list[str]] = {}
        unvalued = []
        for symbol in symbols:
            currency = self.no_rate.get(symbol)
            if currency:
                by_currency.setdefault(currency, []).append(symbol)
            else:
                unvalued.append(symbol)
        found = [
            f"exchange rate {currency} to {self.base_currency or 'base'} (for {names(held)})"
            for currency, held in by_currency.items()
        ]
        return found + ([f"market value of {names(unvalued)}"] if unvalued else [])

    @classmethod
    def of(cls, snapshot: AccountSnapshot) -> Book:
        """The sums of ``snapshot``'s positions, in one pass."""
        values: dict[str, float] = {}
        quantities: dict[str, float] = {}
        etfs: set[str] = set()
        unpriced: dict[str, None] = {}  # an ordered set
        no_rate: dict[str, str] = {}
        value_of, quantity_of = values.get, quantities.get
        long_value = short_value = long_options = short_options = 0.0
        all_priced = True
        equity_types = EQUITY_TYPES
        for position in snapshot.positions:
            value = position.market_value_base
            if value is None or value - value != 0:  # missing or not finite: try to convert
                value = base_value(position, snapshot)
            if value is None:
                all_priced = False
            elif value > 0:
                long_value += value
            else:
                short_value -= value
            if position.sec_type not in equity_types:
                if value is not None and position.sec_type in OPTION_TYPES:
                    if value > 0:
                        long_options += value
                    else:
                        short_options -= value
                continue
            symbol = position.symbol.upper()
            quantities[symbol] = quantity_of(symbol, 0.0) + position.quantity * (
                position.multiplier or 1.0
            )
            if value is None:
                unpriced[symbol] = None
                local = position.market_value
                if local is not None and local - local == 0:  # valued, but in what base?
                    no_rate[symbol] = position.currency
            else:
                values[symbol] = value_of(symbol, 0.0) + value
            if position.stock_type in ETF_STOCK_TYPES:
                etfs.add(symbol)
        return cls(
            values,
            quantities,
            etfs,
            unpriced,
            long_value,
            short_value,
            all_priced,
            long_options,
            short_options,
            no_rate,
            snapshot.base_currency,
        )


@dataclass(frozen=True, slots=True)
class Exposure:
    """An account's long and short exposure, in base currency (the short one as a size).

    ``long`` and ``short`` are every position's value (options included); ``long_options`` and
    ``short_options`` the options among them. ``assumed`` is set when IB sent no positions
    (yet): GrossPositionValue is then taken as all long.
    """

    long: float
    short: float
    long_options: float = 0.0
    short_options: float = 0.0
    assumed: bool = False

    @property
    def net(self) -> float:
        """Long minus short exposure: what a uniform move moves NLV by, per unit move."""
        return self.long - self.short

    @property
    def long_marginable(self) -> float:
        """Longs whose value is in EquityWithLoanValue (stocks and funds)."""
        return self.long - self.long_options

    @property
    def short_marginable(self) -> float:
        """Shorts whose value is in EquityWithLoanValue (stocks and funds)."""
        return self.short - self.short_options


def reducing_kind(exposure: Exposure) -> ActionKind:
    """How gross exposure is cut: ``sell`` longs, ``buy_back`` shorts, or either (``reduce``)."""
    if exposure.short <= 0:
        return "sell"
    if exposure.long <= 0:
        return "buy_back"
    return "reduce"


#: How each kind of trade reads in an action's text.
TRADE_WORDS: Mapping[str, str] = {
    "sell": "sell",
    "buy_back": "buy back",
    "reduce": "sell or buy back",
    "buy": "buy",
}


def missing_exposure(rule: str, snapshot: AccountSnapshot, book: Book) -> Finding:
    """The ``unknown`` finding of a rule that needs the exposure and cannot know it: naming
    the positions without a value, or the missing GrossPositionValue."""
    what = (
        [f"market value of {', '.join(book.unpriced)}"]
        if book.unpriced
        else absent(snapshot, "gross_position_value")
    )
    return missing(rule, snapshot, what or ["market value of a position"])


def exposure_of(snapshot: AccountSnapshot, book: Book) -> Exposure | None:
    """The long and short exposure of ``snapshot`` (whose sums are ``book``).

    No positions but a positive GrossPositionValue: all of it is taken as long (``assumed``).
    ``None`` when a position has no value (its side of the book is unknown) or when there
    are neither positions nor a GPV.
    """
    if snapshot.positions:
        if not book.all_priced:
            return None
        return Exposure(book.long_value, book.short_value, book.long_options, book.short_options)
    gross = snapshot.gross_position_value
    if not is_number(gross) or gross < 0:
        return None
    return Exposure(gross, 0.0, assumed=gross > 0)


def base_value(position: Position, snapshot: AccountSnapshot) -> float | None:
    """The position's market value in base currency (converted when only the local one is known)."""
    value = position.market_value_base
    if value is not None and value - value == 0:  # finite (NaN and infinities fail)
        return value
    local = position.market_value
    if local is not None and local - local == 0:
        rate = snapshot.rate_to_base(position.currency)
        if rate is not None:
            return local * rate
    return None
