"""Scenario files of the simulated gateway: pydantic models, the loader and the JSON Schema.

A scenario is a TOML file. Every table and key below is typed; an unknown key, a wrong type or
a broken reference stops loading with one line naming the key, for example
``scenario selloff.toml: steps[3].moves.SPY: Input should be a valid number``.
``margin-monitor simulate-gateway --schema`` prints the JSON Schema (:func:`scenario_json_schema`)
so an editor can check a file while it is written.

Built-in scenarios live in ``monitor/sim/scenarios/`` and load by bare name (``"selloff"``)::

    name = "selloff"            # default: the file name
    description = "..."
    speed = 1.0                 # scenario seconds per wall-clock second (default 1)
    loop = false                # serve(): replay the timeline (from the initial state) at its end
    end_at = 30                 # scenario second the timeline ends (default: the last step)

    [gateway]                   # all optional
    account_push_interval = 0   # seconds; 0 = push account values at once; IB's real cadence: 180
    pnl_interval = 1.0          # seconds between PnL/tick re-sends (0 = only on changes)
    fundamentals_entitled = false
    server_version = 176        # highest version offered (157..176)
    next_order_id = 1
    farm_notices = true
    price_updates_per_second = 0  # a random-walk price process (0 = off), e.g. 5000
    price_step = 0.001          # each update moves one price by up to 0.1% either way
    price_seed = 0

    [instruments.SPY]           # optional: instruments may also be defined inline in positions
    con_id = 756733             # default: a stable id derived from the symbol
    price = 450.0               # required (here or inline)
    close = 452.0               # previous close, base of daily PnL (default: price)
    sec_type = "STK"
    currency = "USD"
    exchange = "ARCA"           # primary exchange (default ARCA for ETFs, NYSE otherwise)
    stock_type = "ETF"          # contract details stockType: "ETF" or "COMMON" (default)
    multiplier = 1
    maint_rate = 0.25           # maintenance requirement as a fraction of |value| (default 0.25)
    init_rate = 0.25            # initial requirement (default 0.25)
    look_ahead_maint_rate = 0.5 # the rates after the next margin change (default: current)
    look_ahead_init_rate = 0.5
    regt_rate = 0.5             # Reg T end-of-day initial, for RegTMargin and the default SMA
    shares_outstanding = 9.2e8  # served as <SharesOut> by reqFundamentalData when entitled
    long_name = "SPDR S&P 500 ETF TRUST"

    [instruments.SPY.history]   # daily bars for reqHistoricalData (held or not: a benchmark)
    closes = [480.0, 492.5]     # completed sessions, oldest first; or a generated path:
    # peak = 600.0, peak_days_ago = 30, days = 260, start = 480.0, volume = 1e6

    [instruments.SPY_P450]      # an option: IB sends symbol SPY, localSymbol SPY   261218P00450000
    sec_type = "OPT"
    underlying = "SPY"          # a scenario instrument; its price sets a short's requirement
    right = "P"                 # "C" or "P"
    strike = 450.0
    last_trade_date = "20261218"
    price = 6.0                 # per share; multiplier 100 by default
    # long options: in NLV and GPV, not in ELV, no requirement; short options: their value +
    # maint_rate (default 0.20) x underlying value. Short stock without a maint_rate: IB's
    # schedule (30% above 16.67, 5/share from 5 to 16.67, 100% under 5, 2.50/share at <= 2.50)

    [[accounts]]
    id = "DU1000001"            # required; managed accounts are listed in file order
    base_currency = "USD"
    account_type = "INDIVIDUAL"
    cash = { USD = -60000.0 }   # per currency; negative = margin loan
    fx = { EUR = 1.08 }         # base units per unit of each other currency (required for each)
    sma = -2500.0               # fixed SMA; default: Reg T excess equity (floored at 10% of
                                #   equity), rising with the market and never falling by a move
    accrued_cash = -120.0       # or per currency: { CHF = -45.0, EUR = 3.0 } (ledger rows)
    managed = true              # false: joins managedAccounts with a managed_accounts step
    look_ahead_next_change_in = 5400   # seconds after start (or look_ahead_next_change = unix s)
    values = { LookAheadNextChange = "0" }   # initial overrides, see set_values

    [[accounts.positions]]
    symbol = "SPY"
    quantity = 500              # negative = short
    average_cost = 410.0        # default: the starting price
    maint_rate = 0.30           # per-position rates override the instrument's
    # any instrument key (price, currency, stock_type, ...) may be given here instead

    [[steps]]                   # the timeline; each step has `at` and exactly one action
    at = 5                      # scenario seconds from the start
    note = "free text, logged"
    moves = { all = -0.04, BND = 0.0 }   # relative moves; "all" = every symbol not named
    # prices = { SPY = 400.0 }           # absolute prices
    # set_values = { SMA = "-1500.00", Cushion = "" }  # overrides (tag or "TAG:CCY" -> text;
    #                     "" and "1.7976931348623157E308" allowed; "X" also covers "X-S");
    #                     they stick until cleared and win over computed values
    # clear_values = true | ["SMA"]      # drop all or the named overrides
    # set_quantity = { SPY = 300 }       # a trade at the current price (cash moves) unless
    #                                    #   adjust_cash = false; pushed at once
    # set_cash = { USD = -5000.0 }       # deposit / withdrawal
    # set_fx = { USD = 0.95 }            # exchange-rate move
    # error = 1100                       # sent with reqId -1 (req_id = N, message = "..." optional)
    # disconnect = true                  # drop every client socket
    # restart = 10                       # close listener and clients, listen again after 10 s
    # set_rates = { all = { maint_rate = 0.35 }, QQQ = { maint_rate = 0.5 } }  # margin terms
    #                                    #   change, prices unchanged (a symbol wins over "all")
    # managed_accounts = ["DU1", "DU2"]  # accounts join or leave (announce = true: tell clients)
    # garbage = "stalled_frame"          # or any send_garbage kind, e.g. "oversized_prefix"
    account = "DU1000001"       # for set_values/clear_values/set_fx/set_rates: default every
                                #   account; set_quantity/set_cash need it when there are several

    [generate]                  # an advisor book made up at load time (name: generated:AxHxC)
    accounts = 100              # DU8000001...
    holdings = 200              # per account: the funds, then stocks drawn at random
    contracts = 300             # FND001... (funds every account holds), STK0001...
    funds = 60
    loan = 0.25                 # each account borrows 25% of its GPV
    seed = 0

Each action is its own model (:class:`MovesStep`, :class:`ErrorStep`, ...) that applies itself
to the gateway (:meth:`Step.apply`), so the timeline has one dispatch: ``await step.apply(gw)``.
"""

from __future__ import annotations

import random
import re
import tomllib
import zlib
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Protocol, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    SerializeAsAny,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

SCENARIO_DIR = Path(__file__).with_name("scenarios")
"""The built-in scenario files (shipped in the wheel as package data)."""

DEFAULT_MAINT_RATE = 0.25
DEFAULT_INIT_RATE = 0.25
DEFAULT_REGT_RATE = 0.50


class ScenarioError(ValueError):
    """A scenario cannot be loaded; the message is one line naming the file, key and problem."""


class TimelineTarget(Protocol):
    """What a timeline step can do to a gateway (:class:`~monitor.sim.server.SimulatedGateway`)."""

    speed: float

    def set_prices(self, prices: Mapping[str, float]) -> None: ...
    def move_prices(self, moves: Mapping[str, float]) -> None: ...
    def set_values(self, account: str | None, values: Mapping[str, str]) -> None: ...
    def clear_values(self, account: str | None, tags: Iterable[str] | None = None) -> None: ...
    def set_quantity(
        self, account: str, symbol: str, quantity: float, *, adjust_cash: bool = True
    ) -> None: ...
    def set_cash(self, account: str, cash: Mapping[str, float]) -> None: ...
    def set_fx(self, account: str | None, rates: Mapping[str, float]) -> None: ...
    def send_error(
        self, code: int, message: str | None = None, req_id: int = -1, *, effects: bool = True
    ) -> None: ...
    async def drop_clients(self) -> None: ...
    def restart_in_background(self, down_seconds: float) -> None: ...
    def set_rates(self, account: str | None, rates: Mapping[str, RateKeys]) -> None: ...
    def set_managed_accounts(
        self, accounts: Iterable[str] | None, *, announce: bool = False
    ) -> None: ...
    async def send_garbage(self, kind: str, client_id: int | None = None) -> int: ...


# -- value types ------------------------------------------------------------------------------


def _fraction(rate: float) -> float:
    if rate > 1:
        raise ValueError(f"a rate is a fraction (0.25 = 25%), got {rate:g}")
    return rate


def _currency(code: str) -> str:
    code = code.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"expected a 3-letter currency code such as USD, got {code!r}")
    return code


def _number_as_text(value: object) -> object:
    """An override may be written as a number; IB sends text, so it is kept as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _all_or_tags(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    """One message for the two accepted forms (rather than one per form)."""
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError(
            "clear_values", "expected true (every override) or a list of tags"
        ) from None


def _at_least_one(accounts: list[Any]) -> list[Any]:
    if not accounts:
        raise ValueError("a scenario needs at least one [[accounts]] entry")
    return accounts


def _account_code(code: str) -> str:
    if "," in code:
        raise ValueError(f"an account code has no comma, got {code!r}")
    return code


Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Rate = Annotated[float, Field(ge=0, json_schema_extra={"maximum": 1}), AfterValidator(_fraction)]
Currency = Annotated[str, AfterValidator(_currency)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
AccountCode = Annotated[Name, AfterValidator(_account_code)]
OverrideText = Annotated[str, BeforeValidator(_number_as_text, json_schema_input_type=str | float)]


class _Table(BaseModel):
    """A TOML table: typed keys, no coercion (TOML has real types), unknown keys rejected."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        frozen=True,
        use_attribute_docstrings=True,
    )

    @model_validator(mode="wrap")
    @classmethod
    def _name_the_allowed_keys(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """An unknown key of this table is reported with the keys the table may have."""
        try:
            return handler(data)
        except ValidationError as error:
            raise _with_allowed_keys(error, list(cls.model_fields)) from None


# -- instruments, accounts, positions ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable contract with every default resolved: identity, price, rates, reference data."""

    symbol: str
    con_id: int
    price: float
    sec_type: str = "STK"
    currency: str = "USD"
    exchange: str = "NYSE"
    stock_type: str = "COMMON"
    close: float | None = None
    multiplier: float = 1.0
    maint_rate: float = DEFAULT_MAINT_RATE
    init_rate: float = DEFAULT_INIT_RATE
    look_ahead_maint_rate: float | None = None
    look_ahead_init_rate: float | None = None
    regt_rate: float = DEFAULT_REGT_RATE
    shares_outstanding: float | None = None
    long_name: str = ""
    industry: str = ""
    category: str = ""
    rates_given: frozenset[str] = frozenset()
    """The rate keys the scenario set (a short without a maintenance rate follows IB's
    default short schedule, a short option the option default)."""
    underlying: str | None = None
    right: str = ""
    strike: float = 0.0
    last_trade_date: str = ""
    history: tuple[float, ...] | None = None
    """Daily closes before the current session, oldest first (reqHistoricalData)."""
    history_volume: float = 0.0

    @property
    def is_option(self) -> bool:
        """An equity option (secType OPT): counted in NLV and GPV, not in ELV."""
        return self.sec_type == "OPT"

    @property
    def wire_symbol(self) -> str:
        """The symbol IB sends: an option's is its underlying's."""
        return self.underlying if self.is_option and self.underlying else self.symbol

    @property
    def local_symbol(self) -> str:
        """IB's localSymbol: the OCC code for an option (``SPY   261218P00400000``)."""
        if not self.is_option:
            return self.symbol
        strike = round(self.strike * 1000)
        return f"{self.wire_symbol:<6}{self.last_trade_date[2:]}{self.right}{strike:08d}"


class InstrumentKeys(_Table):
    """The keys describing an instrument, in ``[instruments.X]`` or inline in a position.

    Every key is optional here so that the two places can be merged (a key given twice must
    agree); the defaults apply once merged.
    """

    con_id: Annotated[int, Field(gt=0)] | None = None
    """IB contract id (default: a stable id derived from the symbol)."""
    price: Positive | None = None
    """The starting price (required, here or inline in a position)."""
    close: Positive | None = None
    """The previous close, base of the daily PnL (default: the price)."""
    sec_type: str | None = None
    """Security type (default "STK")."""
    currency: Currency | None = None
    """Trading currency (default "USD")."""
    exchange: str | None = None
    """Primary exchange (default ARCA for ETFs, NYSE otherwise)."""
    stock_type: Annotated[str, StringConstraints(to_upper=True)] | None = None
    """Contract details stockType: "ETF" or "COMMON" (default)."""
    multiplier: Positive | None = None
    """Contract multiplier (default 1)."""
    regt_rate: Rate | None = None
    """Reg T end-of-day initial rate, for RegTMargin and the default SMA (default 0.5)."""
    shares_outstanding: Positive | None = None
    """Served as <SharesOut> by reqFundamentalData when entitled."""
    long_name: str | None = None
    """Company name (default: the symbol)."""
    industry: str | None = None
    """Contract details industry."""
    category: str | None = None
    """Contract details category."""
    underlying: Name | None = None
    """Options (sec_type "OPT"): the underlying's symbol, an instrument of the scenario. It is
    the symbol IB sends for the option, and its price sets a short option's requirement."""
    right: Literal["C", "P"] | None = None
    """Options: "C" (call) or "P" (put)."""
    strike: Positive | None = None
    """Options: the strike price."""
    last_trade_date: Annotated[str, StringConstraints(pattern=r"^\d{8}$")] | None = None
    """Options: the expiry as YYYYMMDD."""

    def given(self) -> dict[str, Any]:
        """The instrument keys this table sets."""
        return {
            key: getattr(self, key)
            for key in InstrumentKeys.model_fields
            if getattr(self, key) is not None
        }


class RateKeys(_Table):
    """Margin rates: on an instrument, or on a position where they override the instrument's.

    Stocks and funds: a fraction of |market value|. A short stock without a maintenance rate
    follows IB's default short schedule (margin-rules.md section 2: 30% above USD 16.67,
    USD 5/share from 5 to 16.67, 100% under 5, USD 2.50/share at or under 2.50; applied in the
    instrument's currency). Options: a long option has no requirement (no loan value); a short
    option requires its market value plus the rate times the underlying's value
    (|quantity| x multiplier x underlying price; default rate 0.20, IB's base rate).
    """

    maint_rate: Rate | None = None
    """Maintenance requirement as a fraction of |market value| (default 0.25; shorts and
    options: see the table's description)."""
    init_rate: Rate | None = None
    """Initial requirement as a fraction of |market value| (default 0.25; shorts and options:
    as the maintenance rate)."""
    look_ahead_maint_rate: Rate | None = None
    """Maintenance rate after the next margin change (default: the current one)."""
    look_ahead_init_rate: Rate | None = None
    """Initial rate after the next margin change (default: the current one)."""


class History(_Table):
    """Daily bars served by reqHistoricalData: given closes, or a generated path.

    Either ``closes`` (every completed session before the current one, oldest first) or
    ``peak`` (a generated path: ``days`` sessions rising geometrically from ``start`` to
    ``peak`` reached ``peak_days_ago`` sessions before the current one, then falling
    geometrically towards the current price). The bars are dated on the weekdays before the
    current session (no holiday calendar); the current session's bar opens at the last close
    and closes at the current price, so a drawdown from the prior peak is 1 - price / peak.
    """

    closes: list[Positive] | None = None
    """Closing prices, oldest first, the last one the previous session's."""
    peak: Positive | None = None
    """Generated path: its highest close (at least the start and the current price)."""
    peak_days_ago: Annotated[int, Field(ge=1)] = 20
    """Generated path: sessions between the peak and the current session."""
    days: Annotated[int, Field(ge=1, le=10_000)] = 260
    """Generated path: completed sessions before the current one."""
    start: Positive | None = None
    """Generated path: the first close (default: the peak x 0.8)."""
    volume: NonNegative = 1_000_000.0
    """Each bar's volume."""

    @model_validator(mode="after")
    def _one_source(self) -> History:
        if (self.closes is None) == (self.peak is None):
            raise ValueError("give either closes = [...] or peak = <price> (a generated path)")
        if self.closes is not None and not self.closes:
            raise ValueError("closes needs at least one price")
        if self.peak is not None and self.peak_days_ago > self.days:
            raise ValueError(f"peak_days_ago ({self.peak_days_ago}) exceeds days ({self.days})")
        return self

    def closes_before(self, price: float) -> tuple[float, ...]:
        """The completed sessions' closes, for an instrument whose current price is ``price``."""
        if self.closes is not None:
            return tuple(float(close) for close in self.closes)
        assert self.peak is not None
        peak, days = self.peak, self.days
        start = self.start if self.start is not None else peak * 0.8
        peak_index = days - self.peak_days_ago  # sessions 0..days-1, then the current one
        closes = []
        for index in range(days):
            if index <= peak_index:
                share = index / peak_index if peak_index else 1.0
                close = start * (peak / start) ** share
            else:
                share = (index - peak_index) / (days - peak_index)
                close = peak * (price / peak) ** share
            closes.append(round(close, 4))
        return tuple(closes)


class InstrumentTable(InstrumentKeys, RateKeys):
    """An ``[instruments.SYMBOL]`` table."""

    history: History | None = None
    """Daily bars for reqHistoricalData (e.g. a benchmark such as SPY, held or not)."""

    def resolve(self, symbol: str, keys: Mapping[str, Any]) -> Instrument:
        """The complete instrument from this table's rates and the merged ``keys``."""
        rates = {key: getattr(self, key) for key in RateKeys.model_fields}
        fields = {key: value for key, value in {**keys, **rates}.items() if value is not None}
        fields["rates_given"] = frozenset(key for key in rates if rates[key] is not None)
        stock_type = fields.get("stock_type", "COMMON")
        option = fields.get("sec_type") == "OPT"
        fields.setdefault("con_id", default_con_id(symbol))
        fields.setdefault(
            "exchange", "CBOE" if option else "ARCA" if stock_type == "ETF" else "NYSE"
        )
        fields.setdefault("long_name", fields.get("underlying", symbol) if option else symbol)
        if option:
            fields.setdefault("multiplier", 100.0)
        if self.history is not None:
            fields["history"] = self.history.closes_before(fields["price"])
            fields["history_volume"] = self.history.volume
            fields.setdefault("close", fields["history"][-1])
        return Instrument(symbol=symbol, **fields)


class Position(InstrumentKeys, RateKeys):
    """An ``[[accounts.positions]]`` entry; any instrument key may be given here instead."""

    symbol: Name
    """The instrument's symbol."""
    quantity: float
    """Shares or contracts held; negative = short."""
    average_cost: Positive | None = None
    """Average cost per share (default: the starting price)."""


class Account(_Table):
    """An ``[[accounts]]`` entry: one managed account at the start of the scenario."""

    id: AccountCode
    """The account code, e.g. "DU1234567"; managed accounts are listed in file order."""
    base_currency: Currency = "USD"
    """The currency the account reports in."""
    account_type: str = "INDIVIDUAL"
    """AccountType as IB reports it."""
    cash: dict[Currency, float] = Field(default_factory=dict)
    """Cash per currency; negative = a margin loan."""
    fx: dict[Currency, Positive] = Field(default_factory=dict)
    """Base-currency units per unit of each other currency (one for each currency used)."""
    sma: float | None = None
    """A fixed SMA (default: Reg T excess equity, rising with the market, never falling)."""
    accrued_cash: float | dict[Currency, float] = 0.0
    """AccruedCash (interest accrued this month; negative = owed): one number in the base
    currency, or per currency ({ CHF = -85.0, USD = 12.0 }), which adds an AccruedCash ledger
    row per currency and BASE (their sum converted at the exchange rates)."""
    look_ahead_next_change: int | None = None
    """Unix seconds of the next margin change (LookAheadNextChange)."""
    look_ahead_next_change_in: NonNegative | None = None
    """Seconds after the start until the next margin change."""
    values: dict[str, OverrideText] = Field(default_factory=dict)
    """Initial value overrides (tag or "TAG:CCY" -> text), as the set_values action."""
    positions: list[Position] = Field(default_factory=list)
    """The account's holdings at the start."""
    managed: bool = True
    """false: not in managedAccounts until a managed_accounts step adds it (an account
    joining an advisor login mid-session)."""

    @model_validator(mode="after")
    def _no_rate_to_itself(self) -> Account:
        self.fx.pop(self.base_currency, None)
        return self


class GatewayOptions(_Table):
    """The ``[gateway]`` table: how the simulated gateway behaves."""

    account_push_interval: NonNegative = 0.0
    """Seconds between account value pushes; 0 = at once (IB's real cadence is 180)."""
    pnl_interval: NonNegative = 1.0
    """Seconds between PnL and tick re-sends; 0 = only on changes."""
    fundamentals_entitled: bool = False
    """Whether reqFundamentalData answers (else error 10358)."""
    server_version: Annotated[int, Field(ge=157, le=176)] = 176
    """Highest TWS API server version offered."""
    next_order_id: Annotated[int, Field(ge=0)] = 1
    """The nextValidId sent at connection."""
    farm_notices: bool = True
    """Send the market data farm notices 2104/2106/2158 after startApi."""
    price_updates_per_second: NonNegative = 0.0
    """A random-walk price process: this many single-contract price updates per second,
    spread over every instrument (0 = off). Each update streams ticks and reqPnLSingle to
    the subscriptions on that contract at once; account values follow
    ``account_push_interval`` (when 0: at most once per ``pnl_interval``)."""
    price_step: Annotated[Rate, Field(gt=0)] = 0.001
    """The price process: each update moves one price by up to this fraction, either way."""
    price_seed: int = 0
    """The price process's random seed (the same seed plays the same path)."""


# -- timeline steps ---------------------------------------------------------------------------


class Step(_Table):
    """A ``[[steps]]`` entry: at ``at`` scenario seconds, one action (see the subclasses)."""

    action: ClassVar[str]
    """The action key this kind of step carries."""
    needs_account: ClassVar[bool] = False
    """True when the action concerns one account (set_quantity, set_cash)."""

    at: NonNegative
    """Scenario seconds from the start."""
    note: str = ""
    """Free text, logged when the step is applied."""

    @property
    def value(self) -> object:
        """The action's value, as written in the file."""
        return getattr(self, self.action)

    def symbols(self) -> Iterable[str]:
        """The instrument symbols this step names (checked against the scenario's)."""
        return ()

    @abstractmethod
    async def apply(self, gateway: TimelineTarget) -> None:
        """Do this step's action on ``gateway``."""


class _AccountStep(Step):
    account: str | None = None
    """The account (default: every account; set_quantity and set_cash: the only one)."""

    def target(self) -> str:
        """The account a one-account action applies to."""
        if self.account is None:
            raise ValueError(f'a {self.action} step needs account = "..."')
        return self.account


class PricesStep(Step):
    """Set absolute prices."""

    action: ClassVar[str] = "prices"
    prices: dict[str, Positive]
    """Symbol -> price."""

    def symbols(self) -> Iterable[str]:
        return self.prices

    async def apply(self, gateway: TimelineTarget) -> None:
        gateway.set_prices(self.prices)


class MovesStep(Step):
    """Relative price moves; "all" moves every symbol not named."""

    action: ClassVar[str] = "moves"
    moves: dict[str, Annotated[float, Field(gt=-1)]]
    """Symbol (or "all") -> move: -0.04 = -4%."""

    @field_validator("moves")
    @classmethod
    def _all_in_lower_case(cls, moves: dict[str, float]) -> dict[str, float]:
        return {("all" if key.lower() == "all" else key): move for key, move in moves.items()}

    def symbols(self) -> Iterable[str]:
        return (symbol for symbol in self.moves if symbol != "all")

    async def apply(self, gateway: TimelineTarget) -> None:
        gateway.move_prices(self.moves)


class SetValuesStep(_AccountStep):
    """Override account values until cleared; they win over computed values."""

    action: ClassVar[str] = "set_values"
    set_values: dict[str, OverrideText]
    """Tag or "TAG:CCY" -> text ("" and "1.7976931348623157E308" allowed; "X" covers "X-S")."""

    async def apply(self, gateway: TimelineTarget) -> None:
        gateway.set_values(self.account, self.set_values)


class ClearValuesStep(_AccountStep):
    """Drop value overrides."""

    action: ClassVar[str] = "clear_values"
    clear_values: Annotated[Literal[True] | list[str], WrapValidator(_all_or_tags)]
    """true = every override, or the tags to drop."""

    async def apply(self, gateway: TimelineTarget) -> None:
        tags = None if self.clear_values is True else self.clear_values
        gateway.clear_values(self.account, tags)


class SetQuantityStep(_AccountStep):
    """Change positions: a trade at the current price (cash moves), pushed at once."""

    action: ClassVar[str] = "set_quantity"
    needs_account: ClassVar[bool] = True
    set_quantity: dict[str, float]
    """Symbol -> new quantity."""
    adjust_cash: bool = True
    """false = the quantity changes without a trade (cash unchanged)."""

    def symbols(self) -> Iterable[str]:
        return self.set_quantity

    async def apply(self, gateway: TimelineTarget) -> None:
        for symbol, quantity in self.set_quantity.items():
            gateway.set_quantity(self.target(), symbol, quantity, adjust_cash=self.adjust_cash)


class SetCashStep(_AccountStep):
    """Set cash balances: a deposit, a withdrawal, interest."""

    action: ClassVar[str] = "set_cash"
    needs_account: ClassVar[bool] = True
    set_cash: dict[Currency, float]
    """Currency -> new balance."""

    async def apply(self, gateway: TimelineTarget) -> None:
        gateway.set_cash(self.target(), self.set_cash)


class SetFxStep(_AccountStep):
    """Move exchange rates (every account quoting them, or the named one)."""

    action: ClassVar[str] = "set_fx"
    set_fx: dict[Currency, Positive]
    """Currency -> base-currency units per unit."""

    async def apply(self, gateway: TimelineTarget) -> None:
        gateway.set_fx(self.account, self.set_fx)


class ErrorStep(Step):
    """Send an IB error or notice to every client (1100, 1101, 1102 and 2110 have effects)."""

    action: ClassVar[str] = "error"
    error: int
    """The IB error code, e.g. 1100."""
    message: str | None = None
    """The text (default: the one real gateways send)."""
    req_id: int = -1
    """The request id it refers to (-1: none)."""

    async def apply(self, gateway: TimelineTarget) -> None:
        gateway.send_error(self.error, self.message, self.req_id)


class DisconnectStep(Step):
    """Drop every client socket; the gateway keeps listening."""

    action: ClassVar[str] = "disconnect"
    disconnect: Literal[True]
    """true."""

    async def apply(self, gateway: TimelineTarget) -> None:
        await gateway.drop_clients()


class RestartStep(Step):
    """Close the listener and every client, listen again later (IB Gateway's daily restart)."""

    action: ClassVar[str] = "restart"
    restart: NonNegative
    """Scenario seconds the gateway stays down."""

    async def apply(self, gateway: TimelineTarget) -> None:
        gateway.restart_in_background(self.restart / gateway.speed)


class SetRatesStep(_AccountStep):
    """Change margin rates with prices unchanged (IB tightening or easing its terms)."""

    action: ClassVar[str] = "set_rates"
    set_rates: dict[str, RateKeys]
    """Symbol (or "all": every holding of the account) -> the new rates, e.g.
    { all = { maint_rate = 0.35, init_rate = 0.35 }, TQQQ = { maint_rate = 0.9 } }. A symbol's
    rates win over "all", which wins over the scenario's; a rate not named keeps its value.
    Every account (default) or the named one."""

    @field_validator("set_rates")
    @classmethod
    def _all_in_lower_case(cls, rates: dict[str, RateKeys]) -> dict[str, RateKeys]:
        return {("all" if key.lower() == "all" else key): value for key, value in rates.items()}

    def symbols(self) -> Iterable[str]:
        return (symbol for symbol in self.set_rates if symbol != "all")

    async def apply(self, gateway: TimelineTarget) -> None:
        gateway.set_rates(self.account, self.set_rates)


class ManagedAccountsStep(Step):
    """Change the accounts the login manages (an account joining or leaving an advisor login)."""

    action: ClassVar[str] = "managed_accounts"
    managed_accounts: list[AccountCode]
    """The scenario accounts managed from now on, in order."""
    announce: bool = False
    """Also send managedAccounts (15) to connected clients (a real gateway is not known to
    do so: clients find out with reqManagedAccts or from reqPositions)."""

    async def apply(self, gateway: TimelineTarget) -> None:
        gateway.set_managed_accounts(self.managed_accounts, announce=self.announce)


GarbageKind = Literal[
    "wrong_field_count",
    "non_numeric",
    "truncated",
    "unknown_id",
    "stalled_frame",
    "oversized_prefix",
]


class GarbageStep(Step):
    """Send a malformed frame to every client (fault injection; see ``send_garbage``)."""

    action: ClassVar[str] = "garbage"
    garbage: GarbageKind
    """wrong_field_count, non_numeric, truncated (half a frame, then close), unknown_id,
    stalled_frame (a length prefix promising more than is ever sent; the socket stays open,
    nothing more is written to it) or oversized_prefix (a length of 2**31-1, then silence)."""

    async def apply(self, gateway: TimelineTarget) -> None:
        await gateway.send_garbage(self.garbage)


AnyStep = (
    PricesStep
    | MovesStep
    | SetValuesStep
    | ClearValuesStep
    | SetQuantityStep
    | SetCashStep
    | SetFxStep
    | ErrorStep
    | DisconnectStep
    | RestartStep
    | SetRatesStep
    | ManagedAccountsStep
    | GarbageStep
)
STEP_TYPES: dict[str, type[Step]] = {kind.action: kind for kind in get_args(AnyStep)}
"""Each action key and the model of a step carrying it."""
ACTIONS = tuple(STEP_TYPES)


def _step(data: object) -> Step:
    """The step model chosen by the one action key the table carries."""
    if isinstance(data, Step):
        return data
    if not isinstance(data, Mapping):
        raise PydanticCustomError("step_type", "expected a table ([[steps]])")
    actions = [action for action in STEP_TYPES if action in data]
    if len(actions) != 1:
        raise PydanticCustomError(
            "step_action",
            "a step needs exactly one action of {choices}; got {got}",
            {"choices": ", ".join(ACTIONS), "got": ", ".join(actions) or "none"},
        )
    return STEP_TYPES[actions[0]].model_validate(data)


TimelineStep = Annotated[
    SerializeAsAny[Step], PlainValidator(_step, json_schema_input_type=AnyStep)
]


# -- a generated advisor book ------------------------------------------------------------------


class Generate(_Table):
    """``[generate]``: an advisor book made up at load time (or ``generated:AxHxC`` as the
    scenario name). Deterministic for a seed. Contracts ``FND001``... are ETFs held by every
    account (the shared funds), ``STK0001``... stocks drawn at random for the other holdings;
    accounts are ``DU8000001``...; each account borrows ``loan`` x its GPV. Generated
    instruments and accounts join any the file gives, so steps may name them."""

    accounts: Annotated[int, Field(ge=1, le=10_000)] = 100
    """Number of managed accounts."""
    holdings: Annotated[int, Field(ge=1, le=10_000)] = 200
    """Holdings per account."""
    contracts: Annotated[int, Field(ge=1, le=100_000)] = 300
    """Distinct contracts in the book (at least ``holdings``)."""
    funds: Annotated[int, Field(ge=0)] = 60
    """How many of the contracts are funds that every account holds (at most ``holdings``)."""
    loan: Rate = 0.25
    """Each account's margin loan as a fraction of its GPV."""
    seed: int = 0
    """Random seed of prices, holdings and quantities."""

    @model_validator(mode="after")
    def _fits(self) -> Generate:
        if self.holdings > self.contracts:
            raise ValueError(f"holdings ({self.holdings}) exceed contracts ({self.contracts})")
        if self.funds > self.holdings:
            raise ValueError(f"funds ({self.funds}) exceed holdings ({self.holdings})")
        return self

    def book(self) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
        """The instruments (symbol -> table) and accounts this table generates."""
        rng = random.Random(self.seed)
        instruments: dict[str, dict[str, Any]] = {}
        for index in range(self.contracts):
            fund = index < self.funds
            symbol = f"FND{index + 1:03d}" if fund else f"STK{index + 1 - self.funds:04d}"
            table: dict[str, Any] = {
                "con_id": GENERATED_CON_ID_BASE + index,
                "price": round(rng.uniform(20.0, 400.0), 2),
            }
            if fund:
                table["stock_type"] = "ETF"
            instruments[symbol] = table
        symbols = list(instruments)
        funds, stocks = symbols[: self.funds], symbols[self.funds :]
        accounts = []
        for number in range(1, self.accounts + 1):
            chosen = funds + rng.sample(stocks, self.holdings - self.funds)
            positions = []
            gross = 0.0
            for symbol in chosen:
                price = instruments[symbol]["price"]
                quantity = max(1, round(rng.uniform(2_000.0, 20_000.0) / price))
                gross += quantity * price
                positions.append({"symbol": symbol, "quantity": quantity})
            accounts.append(
                {
                    "id": f"DU{8_000_000 + number}",
                    "cash": {"USD": -round(self.loan * gross, 2)},
                    "positions": positions,
                }
            )
        return instruments, accounts


GENERATED_CON_ID_BASE = 90_000_000
"""Contract ids of generated instruments: this plus the contract's index."""
_GENERATED_NAME = re.compile(r"^generated:(\d+)x(\d+)x(\d+)$")


def _expand_generated(data: Any) -> Any:
    """A scenario with ``[generate]``: its book added to the instruments and accounts given."""
    if not isinstance(data, Mapping) or not isinstance(data.get("generate"), Mapping):
        return data
    try:
        generate = Generate.model_validate(data["generate"])
    except ValidationError:
        return data  # reported at its place by the model's own validation
    instruments, accounts = generate.book()
    given = data.get("instruments")
    given_accounts = data.get("accounts")
    return {
        **data,
        "instruments": {**instruments, **(given if isinstance(given, Mapping) else {})},
        "accounts": [*(given_accounts if isinstance(given_accounts, list) else []), *accounts],
    }


# -- the scenario -----------------------------------------------------------------------------


class Scenario(_Table):
    """A scenario file: accounts, instruments, gateway options and a timeline."""

    name: str = "scenario"
    """Shown in logs (default: the file name)."""
    description: str = ""
    """One line saying what the scenario plays."""
    expect: str = ""
    """What ``margin-monitor demo`` shows with it: the alerts to expect, or why none come."""
    demo_rules: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """``[demo_rules.<id>]``: rule settings the demo uses when the configuration leaves that
    rule at its defaults (three_fund's allocation targets live in the monitor's
    configuration, not in the gateway)."""
    speed: Positive = 1.0
    """Scenario seconds per wall-clock second."""
    loop: bool = False
    """serve(): replay the timeline from the initial state at its end."""
    end_at: NonNegative | None = None
    """Scenario second the timeline ends (default: the last step)."""
    gateway: GatewayOptions = Field(default_factory=GatewayOptions)
    """How the gateway behaves."""
    instruments: dict[str, InstrumentTable] = Field(default_factory=dict)
    """Instruments by symbol (they may also be defined inline in positions)."""
    accounts: Annotated[
        list[Account], Field(json_schema_extra={"minItems": 1}), AfterValidator(_at_least_one)
    ]
    """The managed accounts (at least one)."""
    steps: list[TimelineStep] = Field(default_factory=list)
    """The timeline, played in order of ``at`` (same-time steps in file order)."""
    generate: Generate | None = None
    """A generated advisor book added to the accounts and instruments given."""

    _instruments: dict[str, Instrument] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _generated_book(cls, data: Any) -> Any:
        return _expand_generated(data)

    @model_validator(mode="after")
    def _resolve(self) -> Scenario:
        """Merge and complete the instruments, then check every cross-reference."""
        problems = _Problems()
        self._instruments = _resolve_instruments(self, problems)
        problems.raise_any()
        _check_accounts(self, problems)
        _check_steps(self, problems)
        problems.raise_any()
        self.steps.sort(key=lambda step: step.at)  # stable: same-time steps keep file order
        return self

    @property
    def resolved_instruments(self) -> Mapping[str, Instrument]:
        """Every instrument (inline ones included) with its defaults filled in."""
        return self._instruments

    @property
    def account_ids(self) -> list[str]:
        """Every account of the scenario, in scenario order."""
        return [account.id for account in self.accounts]

    @property
    def managed_at_start(self) -> list[str]:
        """The accounts managedAccounts lists at the start (``managed = false`` ones join later)."""
        return [account.id for account in self.accounts if account.managed]

    @property
    def duration(self) -> float:
        """Scenario seconds from the start to the end of the timeline."""
        last = max((step.at for step in self.steps), default=0.0)
        return max(last, self.end_at or 0.0)


class _Problems:
    """Cross-reference problems found after typing, each at the key it concerns."""

    def __init__(self) -> None:
        self.found: list[InitErrorDetails] = []

    def add(self, loc: tuple[str | int, ...], message: str) -> None:
        error = PydanticCustomError("scenario", "{problem}", {"problem": message})
        self.found.append(InitErrorDetails(type=error, loc=loc, input=None))

    def raise_any(self) -> None:
        if self.found:
            raise ValidationError.from_exception_data("Scenario", self.found)


def default_con_id(symbol: str) -> int:
    """A stable contract id for a symbol the scenario gives none for."""
    return 10_000_000 + zlib.crc32(symbol.encode()) % 89_000_000


def _resolve_instruments(scenario: Scenario, problems: _Problems) -> dict[str, Instrument]:
    """Instruments from ``[instruments.X]`` merged with keys given inline in positions."""
    keys: dict[str, dict[str, Any]] = {}
    origin: dict[tuple[str, str], str] = {}
    first_seen: dict[str, tuple[str | int, ...]] = {}
    places: list[tuple[tuple[str | int, ...], str, InstrumentKeys]] = [
        (("instruments", symbol), symbol, table) for symbol, table in scenario.instruments.items()
    ]
    for index, account in enumerate(scenario.accounts):
        for number, position in enumerate(account.positions):
            places.append((("accounts", index, "positions", number), position.symbol, position))
    for loc, symbol, table in places:
        known = keys.setdefault(symbol, {})
        first_seen.setdefault(symbol, loc)
        where = _location(loc)
        for key, value in table.given().items():
            if key in known and known[key] != value:
                problems.add(
                    (*loc, key),
                    f"{symbol} {key} = {value!r} conflicts with {known[key]!r} "
                    f"given at {origin[(symbol, key)]}",
                )
                continue
            known[key] = value
            origin[(symbol, key)] = where
    resolved: dict[str, Instrument] = {}
    con_ids: dict[int, str] = {}
    for symbol, given in keys.items():
        if "price" not in given:
            problems.add(first_seen[symbol], f"instrument {symbol!r} needs a price")
            continue
        table = scenario.instruments.get(symbol, InstrumentTable())
        instrument = table.resolve(symbol, given)
        if instrument.con_id in con_ids:
            problems.add(
                (*first_seen[symbol], "con_id"),
                f"{instrument.con_id} is also the con_id of {con_ids[instrument.con_id]}",
            )
        con_ids[instrument.con_id] = symbol
        resolved[symbol] = instrument
    for symbol, instrument in resolved.items():
        _check_instrument(
            instrument, resolved, scenario.instruments.get(symbol), problems, first_seen[symbol]
        )
    return resolved


_OPTION_KEYS = ("underlying", "right", "strike", "last_trade_date")


def _check_instrument(
    instrument: Instrument,
    resolved: Mapping[str, Instrument],
    table: InstrumentTable | None,
    problems: _Problems,
    loc: tuple[str | int, ...],
) -> None:
    """An option names its underlying and terms; a generated history's peak is its highest."""
    if instrument.is_option:
        missing = [key for key in _OPTION_KEYS if not getattr(instrument, key)]
        if missing or instrument.underlying is None:
            problems.add(loc, f"option {instrument.symbol!r} needs {', '.join(missing)}")
        elif instrument.underlying not in resolved:
            problems.add(
                (*loc, "underlying"),
                f"{instrument.underlying!r} is not an instrument of the scenario",
            )
        elif resolved[instrument.underlying].is_option:
            problems.add((*loc, "underlying"), "the underlying of an option cannot be an option")
    history = table.history if table is not None else None
    if history is not None and history.peak is not None:
        start = history.start if history.start is not None else history.peak * 0.8
        if history.peak < max(start, instrument.price):
            problems.add(
                (*loc, "history", "peak"),
                f"the peak ({history.peak:g}) must be at least the start ({start:g}) and the "
                f"price ({instrument.price:g})",
            )


def _check_accounts(scenario: Scenario, problems: _Problems) -> None:
    """Account codes and position symbols are unique; every currency used has a rate."""
    seen: set[str] = set()
    for index, account in enumerate(scenario.accounts):
        if account.id in seen:
            problems.add(("accounts", index, "id"), f"{account.id} is listed twice")
        seen.add(account.id)
        symbols: set[str] = set()
        for number, position in enumerate(account.positions):
            if position.symbol in symbols:
                problems.add(
                    ("accounts", index, "positions", number, "symbol"),
                    f"{position.symbol} is listed twice",
                )
            symbols.add(position.symbol)
        currencies = set(account.cash) | {
            scenario.resolved_instruments[symbol].currency
            for symbol in symbols
            if symbol in scenario.resolved_instruments
        }
        base = account.base_currency
        missing = sorted(ccy for ccy in currencies if ccy != base and ccy not in account.fx)
        if missing:
            problems.add(
                ("accounts", index, "fx"),
                f"no exchange rate to {base} for {missing[0]} "
                f"(add fx = {{ {missing[0]} = <{base} per {missing[0]}> }})",
            )


def _check_steps(scenario: Scenario, problems: _Problems) -> None:
    """Steps name known symbols and accounts; one-account actions get the only account."""
    accounts = scenario.account_ids
    for index, step in enumerate(scenario.steps):
        if isinstance(step, ManagedAccountsStep):
            unknown = [code for code in step.managed_accounts if code not in accounts]
            if unknown:
                problems.add(
                    ("steps", index, step.action),
                    f"unknown account {unknown[0]!r} (accounts: {', '.join(accounts)})",
                )
        for symbol in step.symbols():
            if symbol not in scenario.resolved_instruments:
                problems.add(
                    ("steps", index, step.action, symbol),
                    "unknown symbol (not an instrument of the scenario)",
                )
        if not isinstance(step, _AccountStep):
            continue
        if step.account is not None and step.account not in accounts:
            problems.add(
                ("steps", index, "account"),
                f"unknown account {step.account!r} (accounts: {', '.join(accounts)})",
            )
        elif step.account is None and step.needs_account:
            if len(accounts) == 1:
                scenario.steps[index] = step.model_copy(update={"account": accounts[0]})
            else:
                problems.add(
                    ("steps", index, "account"),
                    f'{step.action} needs account = "..." (the scenario has several accounts)',
                )


# -- loading ----------------------------------------------------------------------------------


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``monitor/sim/scenarios``."""
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.toml"))


def load_scenario(source: Scenario | str | Path | Mapping[str, Any]) -> Scenario:
    """A scenario from a TOML path, a built-in name ("selloff"), a dict, or a Scenario.

    Raises :class:`ScenarioError` (one line) for anything that is not a valid scenario.
    """
    if isinstance(source, Scenario):
        return source
    if isinstance(source, Mapping):
        return parse_scenario(source)
    if str(source).startswith("generated:"):
        return parse_scenario(_generated_source(str(source)), str(source))
    path, label = _locate(str(source))
    data = _read_toml(path, label)
    data.setdefault("name", path.stem)
    return parse_scenario(data, label)


def _generated_source(name: str) -> dict[str, Any]:
    """``generated:100x200x300`` -> a scenario with that ``[generate]`` table."""
    match = _GENERATED_NAME.match(name)
    if not match:
        raise ScenarioError(
            f"scenario {name}: expected generated:ACCOUNTSxHOLDINGSxCONTRACTS, "
            "e.g. generated:100x200x300"
        )
    accounts, holdings, contracts = (int(group) for group in match.groups())
    return {
        "name": name,
        "description": (
            f"generated advisor book: {accounts} accounts x {holdings} holdings "
            f"of {contracts} contracts"
        ),
        "generate": {
            "accounts": accounts,
            "holdings": holdings,
            "contracts": contracts,
            "funds": min(holdings, max(contracts // 5, 0)),
        },
    }


def parse_scenario(data: Mapping[str, Any], label: str = "") -> Scenario:
    """Validate parsed TOML (or an equivalent dict); ``label`` names it in errors."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        raise ScenarioError(describe(error, label)) from None
    except RecursionError:
        raise ScenarioError(f"{_prefix(label)}: nested too deeply") from None


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file, for editors that validate TOML against one."""
    schema = Scenario.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "margin-monitor simulated gateway scenario",
    }


def describe(error: ValidationError, label: str = "") -> str:
    """One line: the first problem's key and message, and how many more there are."""
    problems = error.errors(include_url=False, include_context=False, include_input=False)
    first = problems[0]
    message = first["msg"].removeprefix("Value error, ")
    text = f"{_prefix(label)}: {_location(first['loc'])}: {message}"
    if len(problems) > 1:
        more = len(problems) - 1
        text += f" (and {more} more problem{'s' if more > 1 else ''})"
    return text


def _prefix(label: str) -> str:
    return f"scenario {label}" if label else "scenario"


def _location(loc: Iterable[str | int]) -> str:
    """``("steps", 3, "moves", "SPY")`` -> ``steps[3].moves.SPY`` (a bad key is named as such:
    pydantic's ``[key]`` marker after it is dropped)."""
    text = ""
    for part in loc:
        if part == "[key]":
            continue
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(top level)"


def _locate(text: str) -> tuple[Path, str]:
    """The file a scenario argument names, and the label its errors carry."""
    path = Path(text)
    if path.is_file():
        return path, text
    if path.is_dir():
        raise ScenarioError(f"scenario {text}: is a directory, not a TOML file")
    builtin = SCENARIO_DIR / f"{text}.toml"
    if path.name == text and builtin.is_file():
        return builtin, builtin.name
    if path.suffix or path.name != text:
        raise ScenarioError(f"scenario file {text} does not exist")
    raise ScenarioError(
        f"unknown scenario {text!r}: not a file and not a built-in one "
        f"({', '.join(builtin_scenarios())})"
    )


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    """Parsed TOML, or a one-line ScenarioError (unreadable, not UTF-8, invalid, empty)."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ScenarioError(f"scenario {label}: cannot read it ({error.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ScenarioError(
            f"scenario {label}: not UTF-8 text (byte 0x{raw[error.start]:02x} at offset "
            f"{error.start})"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"scenario {label}: invalid TOML: {error}") from None
    except RecursionError:
        raise ScenarioError(f"scenario {label}: nested too deeply") from None
    if not data:
        raise ScenarioError(
            f"scenario {label}: the file is empty (a scenario needs at least one [[accounts]])"
        )
    return data


def _with_allowed_keys(error: ValidationError, allowed: list[str]) -> ValidationError:
    """``error`` with "unknown key (allowed: ...)" for the keys this table does not have."""
    items: list[InitErrorDetails] = []
    for item in error.errors(include_url=False):
        kind, message = item["type"], item["msg"]
        if kind == "extra_forbidden" and len(item["loc"]) == 1:
            kind, message = "unknown_key", f"unknown key (allowed: {', '.join(allowed)})"
        items.append(
            InitErrorDetails(
                type=PydanticCustomError(kind, "{message}", {"message": message}),
                loc=item["loc"],
                input=item.get("input"),
            )
        )
    return ValidationError.from_exception_data(error.title, items)
