"""Plain values that flow through the rules engine.

Everything here is immutable and uses the standard library only. Money is a ``float`` in the
account's base currency unless a field says otherwise; a value IB did not send (or sent empty,
or as its "unset" sentinel) is ``None``, never ``0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # typing.TypeIs from Python 3.13; never imported at run time
    from typing_extensions import TypeIs

    class Finite(float):
        """A float :func:`is_number` has checked: finite, never NaN or an infinity.

        A name for the type checker only (no value is ever of this class): narrowing to a
        subclass of float, rather than to float, keeps ``float | None`` as it is after
        ``not is_number(x)``, since a NaN is a float that is no number to compute with.
        """


#: Snapshot field -> the IB account tag it is read from (in base currency; the connector falls
#: back to the "-S" securities segment). Cushion and the BASE cash rows are read separately.
IB_MARGIN_TAGS = {
    "net_liquidation": "NetLiquidation",
    "equity_with_loan": "EquityWithLoanValue",
    "gross_position_value": "GrossPositionValue",
    "init_margin_req": "InitMarginReq",
    "maint_margin_req": "MaintMarginReq",
    "excess_liquidity": "ExcessLiquidity",
    "available_funds": "AvailableFunds",
    "sma": "SMA",
    "look_ahead_init_margin_req": "LookAheadInitMarginReq",
    "look_ahead_maint_margin_req": "LookAheadMaintMarginReq",
    "look_ahead_available_funds": "LookAheadAvailableFunds",
    "look_ahead_excess_liquidity": "LookAheadExcessLiquidity",
    "full_init_margin_req": "FullInitMarginReq",
    "full_maint_margin_req": "FullMaintMarginReq",
    "full_excess_liquidity": "FullExcessLiquidity",
}


#: The requirement figures of a snapshot, maintenance first: a position's value moves them all.
REQUIREMENT_FIELDS = (
    "maint_margin_req",
    "init_margin_req",
    "look_ahead_maint_margin_req",
    "look_ahead_init_margin_req",
    "full_maint_margin_req",
    "full_init_margin_req",
)

#: Each excess figure with the requirement it is ELV minus: (figure, requirement).
EXCESS_OF = (
    ("excess_liquidity", "maint_margin_req"),
    ("available_funds", "init_margin_req"),
    ("look_ahead_excess_liquidity", "look_ahead_maint_margin_req"),
    ("look_ahead_available_funds", "look_ahead_init_margin_req"),
    ("full_excess_liquidity", "full_maint_margin_req"),
)


class Severity(StrEnum):
    """How bad a finding is. ``unknown`` means the inputs were missing: nothing was computed."""

    OK = "ok"
    UNKNOWN = "unknown"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Order used to pick the worst finding: ok < unknown < warning < critical."""
        return _RANK[self]


_RANK = {Severity.OK: 0, Severity.UNKNOWN: 1, Severity.WARNING: 2, Severity.CRITICAL: 3}


def worst(severities: Iterable[Severity]) -> Severity:
    """Return the worst of an iterable of severities (``ok`` when empty)."""
    result = Severity.OK
    for severity in severities:
        if severity.rank > result.rank:
            result = severity
    return result


def is_number(value: object) -> TypeIs[Finite]:
    """True for a finite int or float: what a rule may compute with (a type guard)."""
    return value is not None and isinstance(value, int | float) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Position:
    """One holding of one account.

    ``market_value`` is in the position's own ``currency``; ``market_value_base`` is the same
    amount converted to the account's base currency (``None`` when no price or rate is known).
    ``stock_type`` comes from contract details ("ETF", "COMMON", ...), ``None`` when unknown.
    """

    symbol: str
    con_id: int
    sec_type: str
    quantity: float
    currency: str
    market_price: float | None = None
    market_value: float | None = None
    market_value_base: float | None = None
    average_cost: float | None = None
    stock_type: str | None = None
    multiplier: float = 1.0
    exchange: str = ""

    @property
    def is_long(self) -> bool:
        """True when the account owns the instrument."""
        return self.quantity > 0


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """One account at one instant, in its base currency.

    ``as_of`` is when these values were received (timezone-aware UTC). For an estimate made
    from streaming prices between IB's account updates, ``estimated`` is true and
    ``authoritative_as_of`` is when IB last sent account values. ``cash_balances`` holds the
    cash of each currency in that currency (TotalCashBalance per currency, CashBalance as
    fallback; negative = a debit financed in that currency), ``cash_balance`` their sum in
    base currency.
    """

    account: str
    base_currency: str
    as_of: datetime
    net_liquidation: float | None = None
    equity_with_loan: float | None = None
    gross_position_value: float | None = None
    init_margin_req: float | None = None
    maint_margin_req: float | None = None
    excess_liquidity: float | None = None
    cushion: float | None = None
    available_funds: float | None = None
    sma: float | None = None
    look_ahead_init_margin_req: float | None = None
    look_ahead_maint_margin_req: float | None = None
    look_ahead_available_funds: float | None = None
    look_ahead_excess_liquidity: float | None = None
    look_ahead_next_change: datetime | None = None
    full_init_margin_req: float | None = None
    full_maint_margin_req: float | None = None
    full_excess_liquidity: float | None = None
    cash_balance: float | None = None
    accrued_cash: float | None = None
    account_type: str | None = None
    exchange_rates: Mapping[str, float] = field(default_factory=dict)
    positions: tuple[Position, ...] = ()
    estimated: bool = False
    authoritative_as_of: datetime | None = None
    cash_balances: Mapping[str, float] = field(default_factory=dict)

    @property
    def margin_loan(self) -> float | None:
        """The margin loan: the negative part of the base-currency cash balance (0 when none)."""
        if not is_number(self.cash_balance):
            return None
        return max(0.0, -self.cash_balance)

    @property
    def measured_cushion(self) -> float | None:
        """The cushion EL / NLV while NLV is positive (IB's Cushion tag, else computed).

        ``None`` when NLV is missing, zero or negative: EL / NLV of two negatives is no cushion.
        """
        nlv = self.net_liquidation
        if not is_number(nlv) or nlv <= 0:
            return None
        if is_number(self.cushion):
            return self.cushion
        if is_number(self.excess_liquidity):
            return self.excess_liquidity / nlv
        return None

    @property
    def leverage(self) -> float | None:
        """Gross leverage GPV / NLV, ``None`` when either is missing or NLV is not positive."""
        if not (is_number(self.gross_position_value) and is_number(self.net_liquidation)):
            return None
        if self.net_liquidation <= 0:
            return None
        return self.gross_position_value / self.net_liquidation

    @property
    def maintenance_rate(self) -> float | None:
        """The portfolio's average maintenance rate m = MaintMarginReq / GPV."""
        if not (is_number(self.maint_margin_req) and is_number(self.gross_position_value)):
            return None
        if self.gross_position_value <= 0:
            return None
        return self.maint_margin_req / self.gross_position_value

    def rate_to_base(self, currency: str) -> float | None:
        """How many units of base currency one unit of ``currency`` is worth."""
        if currency in ("", "BASE", self.base_currency):
            return 1.0
        rate = self.exchange_rates.get(currency)
        return rate if is_number(rate) and rate > 0 else None


@dataclass(frozen=True, slots=True)
class TradingDay:
    """The exchange's session on one date, on the exchange's clock (e.g. the NYSE's).

    ``open``/``close`` are aware datetimes, both ``None`` when the exchange has no session
    that day (a holiday or a weekend). ``early_close`` marks a shortened session (e.g. the day
    after Thanksgiving closes at 13:00); ``regular_close`` is when a normal session would
    close that day, so a window defined against the normal close can move with the day's.
    """

    day: date
    open: datetime | None = None
    close: datetime | None = None
    early_close: bool = False
    regular_close: datetime | None = None

    @property
    def is_session(self) -> bool:
        """True when the exchange trades that day."""
        return self.open is not None and self.close is not None

    @property
    def close_shift(self) -> timedelta:
        """How much earlier (negative) than a regular session this one closes."""
        if self.close is None or self.regular_close is None:
            return timedelta(0)
        return self.close - self.regular_close


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    """What a rule may know besides the snapshot: the clock and stored history.

    Rules never read a clock or a database: the service passes both in here.
    ``now`` is timezone-aware. ``connected`` and ``disconnected_since`` describe the gateway
    link; ``last_update`` is when the account's values last arrived from IB.

    The market benchmark (``[rules.drawdown] benchmark``): ``benchmark_price`` now,
    ``benchmark_peak`` its highest daily close (or streamed price) and ``benchmark_peak_on``
    the day of it; ``benchmark_note`` says why a figure is missing. ``previous_snapshot`` is
    the account's authoritative snapshot from IB's update before the current one (``None``
    until there are two). ``trading_day`` is today's exchange session; ``None`` means the
    calendar is not known, and windows then fall on weekdays only.
    """

    now: datetime
    peak_net_liquidation: float | None = None
    financing_cost_year_ago: float | None = None
    shares_outstanding: Mapping[str, float] = field(default_factory=dict)
    connected: bool = True
    disconnected_since: datetime | None = None
    last_update: datetime | None = None
    in_restart_window: bool = False
    benchmark_symbol: str | None = None
    benchmark_price: float | None = None
    benchmark_peak: float | None = None
    benchmark_peak_on: date | None = None
    benchmark_note: str | None = None
    previous_snapshot: AccountSnapshot | None = None
    trading_day: TradingDay | None = None


#: What an action does: ``sell`` long holdings, ``buy_back`` short ones, ``reduce`` either (sell
#: longs or buy back shorts), ``buy`` holdings, ``deposit`` cash.
ActionKind = Literal["sell", "buy_back", "reduce", "buy", "deposit"]


@dataclass(frozen=True, slots=True)
class Action:
    """One step of a remedy, structured so a program reads amounts rather than prose.

    ``amount`` is money in ``currency`` (the account's base currency), rounded up to the cent.
    ``symbols`` are the holdings the trade draws on (empty: any holding of its kind).
    ``rate`` is the maintenance rate per unit traded that the amount was sized at (the lowest
    such a holding can have), ``None`` when the amount does not depend on it. ``quantity`` is
    the number of shares when the rule sizes the trade in shares.
    """

    kind: ActionKind
    amount: float
    currency: str
    symbols: tuple[str, ...] = ()
    rate: float | None = None
    quantity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape inside ``check --json``'s ``remedies``."""
        return {
            "kind": self.kind,
            "amount": self.amount,
            "currency": self.currency,
            "symbols": list(self.symbols),
            "rate": self.rate,
            "quantity": self.quantity,
        }


@dataclass(frozen=True, slots=True)
class Remedy:
    """One way to clear an alert: every action in it, done together. A finding's remedies are
    alternatives: any one of them, once executed, brings the rule to its clear level."""

    actions: tuple[Action, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape inside ``check --json``."""
        return {"actions": [action.to_dict() for action in self.actions]}


@dataclass(frozen=True, slots=True)
class Finding:
    """The result of one rule on one account.

    ``value`` is what the rule measured and ``threshold`` the level it compared against.
    ``clear_severity`` is the severity the same value would have against the clear levels
    (the triggers moved toward safety by the rule's hysteresis margin): the alert lifecycle
    keeps an alert firing until ``clear_severity`` drops below it. ``data_missing`` marks a
    finding whose inputs were absent: it never resolves an alert. A finding made on an
    estimate has ``estimated`` set and ``authoritative_age``: the age in seconds of the IB
    account values the estimate started from. ``details`` holds extra figures for the summary
    and JSON output. ``remedies`` are the structured form of ``action``: alternatives, each
    sized to bring the rule to its clear level once executed.
    """

    rule: str
    account: str
    severity: Severity
    value: float | None
    threshold: float | None
    message: str
    action: str | None = None
    clear_severity: Severity | None = None
    data_missing: bool = False
    estimated: bool = False
    authoritative_age: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    remedies: tuple[Remedy, ...] = ()

    @property
    def held_severity(self) -> Severity:
        """Severity against the clear levels (defaults to ``severity`` when no hysteresis)."""
        return self.clear_severity if self.clear_severity is not None else self.severity

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by ``check --json``."""
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
            "action": self.action,
            "data_missing": self.data_missing,
            "estimated": self.estimated,
            "authoritative_age_seconds": self.authoritative_age,
            "details": dict(self.details),
            "remedies": [remedy.to_dict() for remedy in self.remedies],
        }


def grade_below(
    value: float, warning: float | None, critical: float | None, clear_margin: float = 0.0
) -> tuple[Severity, Severity]:
    """Grade a value that is bad when low (e.g. a cushion).

    Returns ``(severity, clear_severity)``: the severity against the triggers, and against the
    triggers raised by ``clear_margin`` (the level an alert must pass to clear).
    """
    return _grade(value, warning, critical, clear_margin, below=True)


def grade_above(
    value: float, warning: float | None, critical: float | None, clear_margin: float = 0.0
) -> tuple[Severity, Severity]:
    """Grade a value that is bad when high (e.g. leverage); see :func:`grade_below`."""
    return _grade(value, warning, critical, clear_margin, below=False)


#: Relative rounding tolerance of a comparison with a level: a value within it of the level
#: counts as at the level (so an amount sized to a level, rounded up to the cent, reaches it
#: even when the float arithmetic lands a hair short).
LEVEL_TOLERANCE = 1e-9


def exceeds(value: float, level: float) -> bool:
    """``value > level`` beyond float rounding (:data:`LEVEL_TOLERANCE`)."""
    return value > level + LEVEL_TOLERANCE * max(1.0, abs(level))


def falls_short(value: float, level: float) -> bool:
    """``value < level`` beyond float rounding (:data:`LEVEL_TOLERANCE`)."""
    return value < level - LEVEL_TOLERANCE * max(1.0, abs(level))


def _grade(
    value: float, warning: float | None, critical: float | None, margin: float, *, below: bool
) -> tuple[Severity, Severity]:
    def level(shift: float) -> Severity:
        def breached(trigger: float | None) -> bool:
            if trigger is None:
                return False
            if below:
                return falls_short(value, trigger + shift)
            return exceeds(value, trigger - shift)

        if breached(critical):
            return Severity.CRITICAL
        if breached(warning):
            return Severity.WARNING
        return Severity.OK

    return level(0.0), level(margin)
