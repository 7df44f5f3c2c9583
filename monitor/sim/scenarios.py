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

    [[accounts]]
    id = "DU1000001"            # required; managed accounts are listed in file order
    base_currency = "USD"
    account_type = "INDIVIDUAL"
    cash = { USD = -60000.0 }   # per currency; negative = margin loan
    fx = { EUR = 1.08 }         # base units per unit of each other currency (required for each)
    sma = -2500.0               # fixed SMA; default: Reg T excess equity (floored at 10% of
                                #   equity), rising with the market and never falling by a move
    accrued_cash = -120.0
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
    account = "DU1000001"       # for set_values/clear_values/set_fx: default every account;
                                #   set_quantity/set_cash need it when there are several

Each action is its own model (:class:`MovesStep`, :class:`ErrorStep`, ...) that applies itself
to the gateway (:meth:`Step.apply`), so the timeline has one dispatch: ``await step.apply(gw)``.
"""

from __future__ import annotations

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

    def given(self) -> dict[str, Any]:
        """The instrument keys this table sets."""
        return {
            key: getattr(self, key)
            for key in InstrumentKeys.model_fields
            if getattr(self, key) is not None
        }


class RateKeys(_Table):
    """Margin rates: on an instrument, or on a position where they override the instrument's."""

    maint_rate: Rate | None = None
    """Maintenance requirement as a fraction of |market value| (default 0.25)."""
    init_rate: Rate | None = None
    """Initial requirement as a fraction of |market value| (default 0.25)."""
    look_ahead_maint_rate: Rate | None = None
    """Maintenance rate after the next margin change (default: the current one)."""
    look_ahead_init_rate: Rate | None = None
    """Initial rate after the next margin change (default: the current one)."""


class InstrumentTable(InstrumentKeys, RateKeys):
    """An ``[instruments.SYMBOL]`` table."""

    def resolve(self, symbol: str, keys: Mapping[str, Any]) -> Instrument:
        """The complete instrument from this table's rates and the merged ``keys``."""
        rates = {key: getattr(self, key) for key in RateKeys.model_fields}
        fields = {key: value for key, value in {**keys, **rates}.items() if value is not None}
        stock_type = fields.get("stock_type", "COMMON")
        fields.setdefault("con_id", default_con_id(symbol))
        fields.setdefault("exchange", "ARCA" if stock_type == "ETF" else "NYSE")
        fields.setdefault("long_name", symbol)
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
    accrued_cash: float = 0.0
    """AccruedCash (interest accrued this month; negative = owed)."""
    look_ahead_next_change: int | None = None
    """Unix seconds of the next margin change (LookAheadNextChange)."""
    look_ahead_next_change_in: NonNegative | None = None
    """Seconds after the start until the next margin change."""
    values: dict[str, OverrideText] = Field(default_factory=dict)
    """Initial value overrides (tag or "TAG:CCY" -> text), as the set_values action."""
    positions: list[Position] = Field(default_factory=list)
    """The account's holdings at the start."""

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


# -- the scenario -----------------------------------------------------------------------------


class Scenario(_Table):
    """A scenario file: accounts, instruments, gateway options and a timeline."""

    name: str = "scenario"
    """Shown in logs (default: the file name)."""
    description: str = ""
    """One line saying what the scenario plays."""
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

    _instruments: dict[str, Instrument] = PrivateAttr(default_factory=dict)

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
        """Managed accounts in scenario order."""
        return [account.id for account in self.accounts]

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
    return resolved


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
    path, label = _locate(str(source))
    data = _read_toml(path, label)
    data.setdefault("name", path.stem)
    return parse_scenario(data, label)


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
