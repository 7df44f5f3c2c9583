"""Scenarios and the consistent account state behind the simulated gateway.

A :class:`Scenario` is the parsed, validated form of a scenario TOML file (the schema is
documented in :mod:`monitor.simulator`). :class:`SimState` holds what changes while it plays:
prices, cash, quantities, FX rates, value overrides and the SMA. Every figure IB reports is
recomputed from those in the account's base currency, so a price move changes market values,
NLV, GPV, requirements, ExcessLiquidity and Cushion together, exactly as the formulas of
margin-rules.md sections 1 and 2 say:

    NLV = ELV = cash + sum(signed market value)        (stocks only: ELV equals NLV)
    GPV = sum |market value|
    MaintMarginReq = sum |MV| x maint rate, InitMarginReq = sum |MV| x init rate
    ExcessLiquidity = ELV - Maint, AvailableFunds = ELV - Init, Cushion = EL / NLV

Overrides (tag -> value string) win over computed values until cleared.
"""

from __future__ import annotations

import math
import time
import tomllib
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.sim_protocol import UNSET_TEXT, fmt_money, fmt_ratio

SCENARIO_DIR = Path(__file__).with_name("scenarios")

DEFAULT_MAINT_RATE = 0.25
DEFAULT_INIT_RATE = 0.25
DEFAULT_REGT_RATE = 0.50

ACTIONS = (
    "prices",
    "moves",
    "set_values",
    "clear_values",
    "set_quantity",
    "set_cash",
    "set_fx",
    "error",
    "disconnect",
    "restart",
)
"""Step actions; each ``[[steps]]`` entry carries exactly one."""

# account value tags sent in the base currency, each also with the "-S" (securities) suffix
SEGMENT_TAGS = (
    "AccruedCash",
    "AvailableFunds",
    "EquityWithLoanValue",
    "ExcessLiquidity",
    "FullAvailableFunds",
    "FullExcessLiquidity",
    "FullInitMarginReq",
    "FullMaintMarginReq",
    "InitMarginReq",
    "LookAheadAvailableFunds",
    "LookAheadExcessLiquidity",
    "LookAheadInitMarginReq",
    "LookAheadMaintMarginReq",
    "MaintMarginReq",
    "NetLiquidation",
    "PreviousDayEquityWithLoanValue",
    "RegTEquity",
    "RegTMargin",
    "SMA",
    "TotalCashValue",
)
LEDGER_TAGS = (
    "CashBalance",
    "Currency",
    "ExchangeRate",
    "NetLiquidationByCurrency",
    "RealizedPnL",
    "StockMarketValue",
    "TotalCashBalance",
    "UnrealizedPnL",
)
SUMMARY_TAGS = (
    "AccountType",
    "NetLiquidation",
    "TotalCashValue",
    "SettledCash",
    "AccruedCash",
    "BuyingPower",
    "EquityWithLoanValue",
    "PreviousDayEquityWithLoanValue",
    "GrossPositionValue",
    "RegTEquity",
    "RegTMargin",
    "SMA",
    "InitMarginReq",
    "MaintMarginReq",
    "AvailableFunds",
    "ExcessLiquidity",
    "Cushion",
    "FullInitMarginReq",
    "FullMaintMarginReq",
    "FullAvailableFunds",
    "FullExcessLiquidity",
    "LookAheadNextChange",
    "LookAheadInitMarginReq",
    "LookAheadMaintMarginReq",
    "LookAheadAvailableFunds",
    "LookAheadExcessLiquidity",
    "HighestSeverity",
    "DayTradesRemaining",
    "DayTradesRemainingT+1",
    "DayTradesRemainingT+2",
    "DayTradesRemainingT+3",
    "DayTradesRemainingT+4",
    "Leverage",
)
"""reqAccountSummary tags ("All" means these plus ``$LEDGER:ALL``)."""
_SUMMARY_UNITLESS = {
    "AccountType",
    "Cushion",
    "LookAheadNextChange",
    "HighestSeverity",
    "Leverage",
} | {tag for tag in SUMMARY_TAGS if tag.startswith("DayTradesRemaining")}


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the key and the problem."""


# -- scenario schema --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable contract: identity, price, margin rates and reference data."""

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


@dataclass(frozen=True, slots=True)
class PositionSpec:
    """An account's holding at the start; rates left ``None`` come from the instrument."""

    symbol: str
    quantity: float
    average_cost: float | None = None
    maint_rate: float | None = None
    init_rate: float | None = None
    look_ahead_maint_rate: float | None = None
    look_ahead_init_rate: float | None = None


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """An account at the start of the scenario."""

    id: str
    base_currency: str = "USD"
    account_type: str = "INDIVIDUAL"
    cash: Mapping[str, float] = field(default_factory=dict)
    fx: Mapping[str, float] = field(default_factory=dict)
    sma: float | None = None
    accrued_cash: float = 0.0
    look_ahead_next_change: int | None = None
    look_ahead_next_change_in: float | None = None
    values: Mapping[str, str] = field(default_factory=dict)
    positions: tuple[PositionSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    """One timeline entry: at ``at`` scenario seconds, do ``action`` with ``value``."""

    at: float
    action: str
    value: Any
    account: str | None = None
    note: str = ""
    message: str | None = None
    req_id: int = -1
    adjust_cash: bool = True


@dataclass(frozen=True, slots=True)
class Scenario:
    """A parsed, validated scenario."""

    name: str
    accounts: tuple[AccountSpec, ...]
    instruments: Mapping[str, Instrument]
    steps: tuple[Step, ...] = ()
    description: str = ""
    speed: float = 1.0
    loop: bool = False
    end_at: float | None = None
    account_push_interval: float = 0.0
    pnl_interval: float = 1.0
    fundamentals_entitled: bool = False
    server_version: int = 176
    next_order_id: int = 1
    farm_notices: bool = True
    source: str | None = None

    @property
    def account_ids(self) -> list[str]:
        """Managed accounts in scenario order."""
        return [account.id for account in self.accounts]

    @property
    def duration(self) -> float:
        """Scenario seconds from the start to the end of the timeline."""
        last = max((step.at for step in self.steps), default=0.0)
        return max(last, self.end_at or 0.0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> Scenario:
        """Validate a scenario given as parsed TOML (or an equivalent dict)."""
        return _parse_scenario(data, source)


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``monitor/scenarios``."""
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.toml"))


def load_scenario(path_or_name: str | Path | Scenario | Mapping[str, Any]) -> Scenario:
    """A scenario from a TOML path, a built-in name ("selloff"), a dict, or a Scenario."""
    if isinstance(path_or_name, Scenario):
        return path_or_name
    if isinstance(path_or_name, Mapping):
        return Scenario.from_dict(path_or_name)
    text = str(path_or_name)
    path = Path(text)
    if not path.is_file():
        builtin = SCENARIO_DIR / f"{text}.toml"
        if builtin.is_file():
            path = builtin
        else:
            raise ScenarioError(
                f"scenario {text!r} is neither a file nor a built-in scenario "
                f"({', '.join(builtin_scenarios())})"
            )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"scenario {path}: invalid TOML: {error}") from None
    data.setdefault("name", path.stem)
    return Scenario.from_dict(data, source=str(path))


# -- parsing helpers --------------------------------------------------------------------------

_INSTRUMENT_KEYS = {
    "con_id",
    "price",
    "sec_type",
    "currency",
    "exchange",
    "stock_type",
    "close",
    "multiplier",
    "maint_rate",
    "init_rate",
    "look_ahead_maint_rate",
    "look_ahead_init_rate",
    "regt_rate",
    "shares_outstanding",
    "long_name",
    "industry",
    "category",
}
_POSITION_OWN_KEYS = {"symbol", "quantity", "average_cost"}
_POSITION_RATE_KEYS = {
    "maint_rate",
    "init_rate",
    "look_ahead_maint_rate",
    "look_ahead_init_rate",
}
_ACCOUNT_KEYS = {
    "id",
    "base_currency",
    "account_type",
    "cash",
    "fx",
    "sma",
    "accrued_cash",
    "look_ahead_next_change",
    "look_ahead_next_change_in",
    "values",
    "positions",
}
_TOP_KEYS = {
    "name",
    "description",
    "speed",
    "loop",
    "end_at",
    "gateway",
    "instruments",
    "accounts",
    "steps",
}
_GATEWAY_KEYS = {
    "account_push_interval",
    "pnl_interval",
    "fundamentals_entitled",
    "server_version",
    "next_order_id",
    "farm_notices",
}
_STEP_KEYS = {"at", "note", "account", "message", "req_id", "adjust_cash", *ACTIONS}


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{where}: expected a table, got {type(value).__name__}")
    return value


def _number(
    value: Any, where: str, *, minimum: float | None = None, above: float | None = None
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{where}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ScenarioError(f"{where}: expected a finite number, got {value!r}")
    if minimum is not None and number < minimum:
        raise ScenarioError(f"{where}: must be >= {minimum}, got {value!r}")
    if above is not None and number <= above:
        raise ScenarioError(f"{where}: must be > {above}, got {value!r}")
    return number


def _optional_number(
    table: Mapping[str, Any], key: str, where: str, **limits: float
) -> float | None:
    if key not in table:
        return None
    return _number(table[key], f"{where}.{key}", **limits)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ScenarioError(f"{where}: expected a string, got {value!r}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ScenarioError(f"{where}: expected true or false, got {value!r}")
    return value


def _currency(value: Any, where: str) -> str:
    text = _text(value, where).strip().upper()
    if len(text) != 3 or not text.isalpha():
        raise ScenarioError(f"{where}: expected a 3-letter currency code, got {value!r}")
    return text


def _value_text(value: Any, where: str) -> str:
    """An override value: strings as given, numbers formatted like IB money."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise ScenarioError(f"{where}: expected a string or number, got {value!r}")
    if isinstance(value, int | float):
        return str(value)
    raise ScenarioError(f"{where}: expected a string or number, got {value!r}")


def default_con_id(symbol: str) -> int:
    """A stable contract id for a symbol the scenario gives none for."""
    return 10_000_000 + zlib.crc32(symbol.encode()) % 89_000_000


def _instrument_fields(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key in ("con_id",):
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ScenarioError(f"{where}.{key}: expected a positive integer, got {value!r}")
            fields[key] = value
    for key in ("price", "close", "multiplier", "shares_outstanding"):
        if key in table:
            fields[key] = _number(table[key], f"{where}.{key}", above=0)
    for key in (
        "maint_rate",
        "init_rate",
        "look_ahead_maint_rate",
        "look_ahead_init_rate",
        "regt_rate",
    ):
        if key in table:
            rate = _number(table[key], f"{where}.{key}", minimum=0)
            if rate > 1:
                raise ScenarioError(f"{where}.{key}: a rate is a fraction (0.25 = 25%), got {rate}")
            fields[key] = rate
    for key in ("sec_type", "exchange", "stock_type", "long_name", "industry", "category"):
        if key in table:
            fields[key] = _text(table[key], f"{where}.{key}")
    if "stock_type" in fields:
        fields["stock_type"] = fields["stock_type"].upper()
    if "currency" in table:
        fields["currency"] = _currency(table["currency"], f"{where}.currency")
    return fields


def _make_instrument(symbol: str, fields: Mapping[str, Any], where: str) -> Instrument:
    if "price" not in fields:
        raise ScenarioError(f"{where}: instrument {symbol!r} needs a price")
    values = dict(fields)
    values.setdefault("con_id", default_con_id(symbol))
    stock_type = values.get("stock_type", "COMMON")
    values.setdefault("exchange", "ARCA" if stock_type == "ETF" else "NYSE")
    values.setdefault("long_name", symbol)
    return Instrument(symbol=symbol, **values)


def _parse_instruments(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Instrument fields from ``[instruments.X]`` and inline in positions (merged by symbol)."""
    found: dict[str, dict[str, Any]] = {}
    origin: dict[str, dict[str, str]] = {}

    def merge(symbol: str, fields: Mapping[str, Any], where: str) -> None:
        known = found.setdefault(symbol, {})
        places = origin.setdefault(symbol, {})
        for key, value in fields.items():
            if key in known and known[key] != value:
                raise ScenarioError(
                    f"{where}.{key}: {symbol} {key} = {value!r} conflicts with "
                    f"{known[key]!r} given at {places[key]}"
                )
            known[key] = value
            places[key] = where

    instruments = _table(data.get("instruments", {}), "instruments")
    for symbol, table in instruments.items():
        where = f"instruments.{symbol}"
        table = _table(table, where)
        _check_keys(table, _INSTRUMENT_KEYS, where)
        merge(symbol, _instrument_fields(table, where), where)
    for index, account in enumerate(data.get("accounts", []) or []):
        if not isinstance(account, Mapping):
            continue
        for number, position in enumerate(account.get("positions", []) or []):
            where = f"accounts[{index}].positions[{number}]"
            position = _table(position, where)
            symbol = _text(position.get("symbol", ""), f"{where}.symbol").strip()
            if not symbol:
                raise ScenarioError(f"{where}.symbol: missing")
            inline = {
                key: value
                for key, value in position.items()
                if key in _INSTRUMENT_KEYS and key not in _POSITION_RATE_KEYS
            }
            merge(symbol, _instrument_fields(inline, where), where)
    return found


def _parse_position(table: Mapping[str, Any], where: str) -> PositionSpec:
    _check_keys(table, _POSITION_OWN_KEYS | _INSTRUMENT_KEYS, where)
    symbol = _text(table["symbol"], f"{where}.symbol").strip()
    if "quantity" not in table:
        raise ScenarioError(f"{where}: position {symbol} needs a quantity")
    rates = {}
    for key in _POSITION_RATE_KEYS:
        rate = _optional_number(table, key, where, minimum=0)
        if rate is not None and rate > 1:
            raise ScenarioError(f"{where}.{key}: a rate is a fraction (0.25 = 25%), got {rate}")
        rates[key] = rate
    return PositionSpec(
        symbol=symbol,
        quantity=_number(table["quantity"], f"{where}.quantity"),
        average_cost=_optional_number(table, "average_cost", where, above=0),
        **rates,
    )


def _parse_account(
    table: Mapping[str, Any], where: str, instruments: Mapping[str, Instrument]
) -> AccountSpec:
    _check_keys(table, _ACCOUNT_KEYS, where)
    if "id" not in table:
        raise ScenarioError(f'{where}: missing id (the account code, e.g. "DU1234567")')
    account_id = _text(table["id"], f"{where}.id").strip()
    if not account_id or "," in account_id:
        raise ScenarioError(f"{where}.id: invalid account code {account_id!r}")
    base = _currency(table.get("base_currency", "USD"), f"{where}.base_currency")
    cash = {
        _currency(ccy, f"{where}.cash"): _number(amount, f"{where}.cash.{ccy}")
        for ccy, amount in _table(table.get("cash", {}), f"{where}.cash").items()
    }
    fx = {
        _currency(ccy, f"{where}.fx"): _number(rate, f"{where}.fx.{ccy}", above=0)
        for ccy, rate in _table(table.get("fx", {}), f"{where}.fx").items()
    }
    fx.pop(base, None)
    positions = []
    seen: set[str] = set()
    for number, position in enumerate(table.get("positions", []) or []):
        spec = _parse_position(
            _table(position, f"{where}.positions[{number}]"), f"{where}.positions[{number}]"
        )
        if spec.symbol in seen:
            raise ScenarioError(f"{where}.positions[{number}]: {spec.symbol} is listed twice")
        seen.add(spec.symbol)
        positions.append(spec)
    currencies = set(cash) | {instruments[p.symbol].currency for p in positions}
    missing = sorted(ccy for ccy in currencies if ccy != base and ccy not in fx)
    if missing:
        raise ScenarioError(
            f"{where}.fx: no exchange rate to {base} for {missing[0]} "
            f"(add fx = {{ {missing[0]} = <{base} per {missing[0]}> }})"
        )
    values = {
        _text(tag, f"{where}.values"): _value_text(value, f"{where}.values.{tag}")
        for tag, value in _table(table.get("values", {}), f"{where}.values").items()
    }
    next_change = table.get("look_ahead_next_change")
    if next_change is not None and (
        isinstance(next_change, bool) or not isinstance(next_change, int)
    ):
        raise ScenarioError(f"{where}.look_ahead_next_change: expected unix seconds (integer)")
    return AccountSpec(
        id=account_id,
        base_currency=base,
        account_type=_text(table.get("account_type", "INDIVIDUAL"), f"{where}.account_type"),
        cash=cash,
        fx=fx,
        sma=_optional_number(table, "sma", where),
        accrued_cash=_optional_number(table, "accrued_cash", where) or 0.0,
        look_ahead_next_change=next_change,
        look_ahead_next_change_in=_optional_number(
            table, "look_ahead_next_change_in", where, minimum=0
        ),
        values=values,
        positions=tuple(positions),
    )


def _parse_step(
    table: Mapping[str, Any],
    where: str,
    accounts: Mapping[str, AccountSpec],
    instruments: Mapping[str, Instrument],
) -> Step:
    _check_keys(table, _STEP_KEYS, where)
    actions = [key for key in ACTIONS if key in table]
    if len(actions) != 1:
        raise ScenarioError(
            f"{where}: a step needs exactly one action of {', '.join(ACTIONS)}; got "
            f"{', '.join(actions) or 'none'}"
        )
    action = actions[0]
    if "at" not in table:
        raise ScenarioError(f"{where}: missing at (scenario seconds from the start)")
    at = _number(table["at"], f"{where}.at", minimum=0)
    raw = table[action]
    account = None
    if "account" in table:
        account = _text(table["account"], f"{where}.account")
        if account not in accounts:
            raise ScenarioError(f"{where}.account: unknown account {account!r}")
        if action not in ("set_values", "clear_values", "set_quantity", "set_cash", "set_fx"):
            raise ScenarioError(f"{where}.account: not used by {action}")
    elif action in ("set_quantity", "set_cash"):
        if len(accounts) != 1:
            raise ScenarioError(f'{where}: {action} needs account = "..." (several accounts)')
        account = next(iter(accounts))
    value: Any
    where_action = f"{where}.{action}"
    if action == "prices":
        value = {
            _known_symbol(symbol, where_action, instruments): _number(
                price, f"{where_action}.{symbol}", above=0
            )
            for symbol, price in _table(raw, where_action).items()
        }
    elif action == "moves":
        value = {}
        for symbol, move in _table(raw, where_action).items():
            key = (
                "all"
                if symbol.lower() == "all"
                else _known_symbol(symbol, where_action, instruments)
            )
            value[key] = _number(move, f"{where_action}.{symbol}", above=-1)
    elif action == "set_values":
        value = {
            _text(tag, where_action): _value_text(text, f"{where_action}.{tag}")
            for tag, text in _table(raw, where_action).items()
        }
    elif action == "clear_values":
        if raw is True:
            value = None
        elif isinstance(raw, list) and all(isinstance(tag, str) for tag in raw):
            value = list(raw)
        else:
            raise ScenarioError(f"{where_action}: expected true (all) or a list of tags")
    elif action == "set_quantity":
        value = {
            _known_symbol(symbol, where_action, instruments): _number(
                qty, f"{where_action}.{symbol}"
            )
            for symbol, qty in _table(raw, where_action).items()
        }
    elif action == "set_cash":
        value = {
            _currency(ccy, where_action): _number(amount, f"{where_action}.{ccy}")
            for ccy, amount in _table(raw, where_action).items()
        }
    elif action == "set_fx":
        value = {
            _currency(ccy, where_action): _number(rate, f"{where_action}.{ccy}", above=0)
            for ccy, rate in _table(raw, where_action).items()
        }
    elif action == "error":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ScenarioError(f"{where_action}: expected an IB error code such as 1100")
        value = raw
    elif action == "disconnect":
        if raw is not True:
            raise ScenarioError(f"{where_action}: expected true")
        value = True
    else:  # restart
        value = _number(raw, where_action, minimum=0)
    req_id = table.get("req_id", -1)
    if isinstance(req_id, bool) or not isinstance(req_id, int):
        raise ScenarioError(f"{where}.req_id: expected an integer")
    message = table.get("message")
    if message is not None:
        message = _text(message, f"{where}.message")
    return Step(
        at=at,
        action=action,
        value=value,
        account=account,
        note=_text(table.get("note", ""), f"{where}.note"),
        message=message,
        req_id=req_id,
        adjust_cash=_bool(table.get("adjust_cash", True), f"{where}.adjust_cash"),
    )


def _known_symbol(symbol: str, where: str, instruments: Mapping[str, Instrument]) -> str:
    if symbol not in instruments:
        raise ScenarioError(f"{where}.{symbol}: unknown symbol (not an instrument of the scenario)")
    return symbol


def _parse_scenario(data: Mapping[str, Any], source: str | None) -> Scenario:
    where = source or "scenario"
    data = _table(data, where)
    _check_keys(data, _TOP_KEYS, where)
    gateway = _table(data.get("gateway", {}), "gateway")
    _check_keys(gateway, _GATEWAY_KEYS, "gateway")
    instruments = {
        symbol: _make_instrument(symbol, fields, f"instrument {symbol}")
        for symbol, fields in _parse_instruments(data).items()
    }
    con_ids: dict[int, str] = {}
    for symbol, instrument in instruments.items():
        if instrument.con_id in con_ids:
            raise ScenarioError(
                f"instruments.{symbol}.con_id: {instrument.con_id} is also "
                f"{con_ids[instrument.con_id]}"
            )
        con_ids[instrument.con_id] = symbol
    raw_accounts = data.get("accounts", [])
    if not isinstance(raw_accounts, list) or not raw_accounts:
        raise ScenarioError(f"{where}: needs at least one [[accounts]] entry")
    accounts: dict[str, AccountSpec] = {}
    for index, table in enumerate(raw_accounts):
        spec = _parse_account(
            _table(table, f"accounts[{index}]"), f"accounts[{index}]", instruments
        )
        if spec.id in accounts:
            raise ScenarioError(f"accounts[{index}].id: {spec.id} is listed twice")
        accounts[spec.id] = spec
    raw_steps = data.get("steps", [])
    if not isinstance(raw_steps, list):
        raise ScenarioError(f"{where}: steps must be an array of tables ([[steps]])")
    steps = [
        _parse_step(_table(step, f"steps[{index}]"), f"steps[{index}]", accounts, instruments)
        for index, step in enumerate(raw_steps)
    ]
    steps.sort(key=lambda step: step.at)  # stable: same-time steps keep file order
    server_version = gateway.get("server_version", 176)
    if (
        isinstance(server_version, bool)
        or not isinstance(server_version, int)
        or not 157 <= server_version <= 176
    ):
        raise ScenarioError("gateway.server_version: expected an integer from 157 to 176")
    next_order_id = gateway.get("next_order_id", 1)
    if isinstance(next_order_id, bool) or not isinstance(next_order_id, int) or next_order_id < 0:
        raise ScenarioError("gateway.next_order_id: expected a non-negative integer")
    return Scenario(
        name=_text(data.get("name", Path(source).stem if source else "scenario"), "name"),
        description=_text(data.get("description", ""), "description"),
        accounts=tuple(accounts.values()),
        instruments=instruments,
        steps=tuple(steps),
        speed=_number(data.get("speed", 1.0), "speed", above=0),
        loop=_bool(data.get("loop", False), "loop"),
        end_at=_optional_number(data, "end_at", where, minimum=0),
        account_push_interval=_number(
            gateway.get("account_push_interval", 0.0), "gateway.account_push_interval", minimum=0
        ),
        pnl_interval=_number(gateway.get("pnl_interval", 1.0), "gateway.pnl_interval", minimum=0),
        fundamentals_entitled=_bool(
            gateway.get("fundamentals_entitled", False), "gateway.fundamentals_entitled"
        ),
        server_version=server_version,
        next_order_id=next_order_id,
        farm_notices=_bool(gateway.get("farm_notices", True), "gateway.farm_notices"),
        source=source,
    )


# -- live state -------------------------------------------------------------------------------


@dataclass(slots=True)
class Holding:
    """A position while the scenario plays (quantity and cost can change)."""

    instrument: Instrument
    quantity: float
    average_cost: float
    maint_rate: float
    init_rate: float
    look_ahead_maint_rate: float
    look_ahead_init_rate: float

    @property
    def symbol(self) -> str:
        """The instrument's symbol."""
        return self.instrument.symbol

    @property
    def con_id(self) -> int:
        """The instrument's contract id."""
        return self.instrument.con_id


@dataclass(frozen=True, slots=True)
class HoldingValues:
    """A holding valued at the current price, in the position's own currency."""

    price: float
    market_value: float
    unrealized_pnl: float
    daily_pnl: float


@dataclass(frozen=True, slots=True)
class CurrencyLedger:
    """One currency's ledger lines, in that currency."""

    cash: float
    stock_value: float
    unrealized_pnl: float
    rate: float


@dataclass(frozen=True, slots=True)
class Figures:
    """Everything computed for one account, in its base currency (before overrides)."""

    net_liquidation: float
    equity_with_loan: float
    gross_position_value: float
    init_margin_req: float
    maint_margin_req: float
    excess_liquidity: float
    available_funds: float
    cushion: float
    leverage: float
    buying_power: float
    sma: float
    regt_margin: float
    look_ahead_init_margin_req: float
    look_ahead_maint_margin_req: float
    look_ahead_excess_liquidity: float
    look_ahead_available_funds: float
    look_ahead_next_change: int
    cash: float
    stock_value: float
    unrealized_pnl: float
    daily_pnl: float
    previous_day_equity_with_loan: float
    accrued_cash: float
    ledgers: Mapping[str, CurrencyLedger]


class AccountState:
    """One account's mutable state."""

    def __init__(
        self, spec: AccountSpec, instruments: Mapping[str, Instrument], now: float
    ) -> None:
        self.spec = spec
        self.id = spec.id
        self.base_currency = spec.base_currency
        self.account_type = spec.account_type
        self.cash: dict[str, float] = {spec.base_currency: 0.0, **spec.cash}
        self.fx: dict[str, float] = dict(spec.fx)
        self.accrued_cash = spec.accrued_cash
        self.overrides: dict[str, str] = dict(spec.values)
        self.holdings: dict[str, Holding] = {}
        for position in spec.positions:
            instrument = instruments[position.symbol]
            self.holdings[position.symbol] = _holding(instrument, position)
        self.by_con_id: dict[int, Holding] = {h.con_id: h for h in self.holdings.values()}
        if spec.look_ahead_next_change is not None:
            self.look_ahead_next_change = spec.look_ahead_next_change
        elif spec.look_ahead_next_change_in is not None:
            self.look_ahead_next_change = int(now + spec.look_ahead_next_change_in)
        else:
            self.look_ahead_next_change = 0
        self.sma_fixed = spec.sma is not None
        self.sma = spec.sma if spec.sma is not None else 0.0
        self.previous_day_elv = 0.0

    def rate(self, currency: str) -> float:
        """Units of base currency per unit of ``currency``."""
        if currency == self.base_currency:
            return 1.0
        return self.fx[currency]

    def currencies(self) -> list[str]:
        """Base first, then every other currency with cash, positions or a rate."""
        others = (
            set(self.cash) | set(self.fx) | {h.instrument.currency for h in self.holdings.values()}
        )
        others.discard(self.base_currency)
        return [self.base_currency, *sorted(others)]

    def override(self, tag: str, currency: str) -> str | None:
        """A row's override: ``TAG:CCY``, then ``TAG``; ``X-S`` follows ``X``."""
        overrides = self.overrides
        if not overrides:
            return None
        names = [tag]
        if tag.endswith("-S"):
            names.append(tag[:-2])
        for name in names:
            for key in (f"{name}:{currency}", name):
                if key in overrides:
                    return overrides[key]
        return None


def _holding(instrument: Instrument, position: PositionSpec) -> Holding:
    maint = position.maint_rate if position.maint_rate is not None else instrument.maint_rate
    init = position.init_rate if position.init_rate is not None else instrument.init_rate
    la_maint = position.look_ahead_maint_rate
    if la_maint is None:
        la_maint = (
            instrument.look_ahead_maint_rate
            if instrument.look_ahead_maint_rate is not None
            else maint
        )
    la_init = position.look_ahead_init_rate
    if la_init is None:
        la_init = (
            instrument.look_ahead_init_rate if instrument.look_ahead_init_rate is not None else init
        )
    return Holding(
        instrument=instrument,
        quantity=position.quantity,
        average_cost=position.average_cost
        if position.average_cost is not None
        else instrument.price,
        maint_rate=maint,
        init_rate=init,
        look_ahead_maint_rate=la_maint,
        look_ahead_init_rate=la_init,
    )


class SimState:
    """Prices and accounts of a scenario, with every IB figure recomputed on demand."""

    def __init__(self, scenario: Scenario, clock: Callable[[], float] = time.time) -> None:
        self.scenario = scenario
        self.clock = clock
        self.instruments: dict[str, Instrument] = dict(scenario.instruments)
        self.by_con_id: dict[int, Instrument] = {i.con_id: i for i in self.instruments.values()}
        self.prices: dict[str, float] = {}
        self.accounts: dict[str, AccountState] = {}
        self.reset()

    def reset(self) -> None:
        """Back to the scenario's starting state (used when a timeline loops)."""
        now = self.clock()
        self.prices = {symbol: i.price for symbol, i in self.instruments.items()}
        self.accounts = {
            spec.id: AccountState(spec, self.instruments, now) for spec in self.scenario.accounts
        }
        for account in self.accounts.values():
            figures = self.compute(account.id)
            account.previous_day_elv = figures.equity_with_loan
            if not account.sma_fixed:
                # Reg T excess equity, floored at 10% of equity so a default account is healthy
                account.sma = max(
                    figures.equity_with_loan - figures.regt_margin,
                    0.10 * max(figures.equity_with_loan, 0.0),
                )

    # -- queries -------------------------------------------------------------------------

    def account(self, account_id: str) -> AccountState:
        """The account, or ``KeyError`` naming the managed accounts."""
        try:
            return self.accounts[account_id]
        except KeyError:
            raise KeyError(
                f"unknown account {account_id!r} (managed: {', '.join(self.accounts)})"
            ) from None

    def close_price(self, instrument: Instrument) -> float:
        """The previous close: the daily PnL reference."""
        return instrument.close if instrument.close is not None else instrument.price

    def value(self, holding: Holding) -> HoldingValues:
        """A holding at the current price, in its own currency."""
        instrument = holding.instrument
        price = self.prices[instrument.symbol]
        units = holding.quantity * instrument.multiplier
        market_value = price * units
        return HoldingValues(
            price=price,
            market_value=market_value,
            unrealized_pnl=market_value - holding.average_cost * units,
            daily_pnl=(price - self.close_price(instrument)) * units,
        )

    def holdings(self, account_id: str, *, include_flat: bool = False) -> list[Holding]:
        """The account's holdings (flat ones only when asked)."""
        return [
            holding
            for holding in self.account(account_id).holdings.values()
            if include_flat or holding.quantity != 0
        ]

    def compute(self, account_id: str) -> Figures:
        """Recompute every figure of the account from prices, cash and positions."""
        account = self.account(account_id)
        cash_by_ccy: dict[str, float] = dict.fromkeys(account.currencies(), 0.0)
        stock_by_ccy = dict(cash_by_ccy)
        unreal_by_ccy = dict(cash_by_ccy)
        for ccy, amount in account.cash.items():
            cash_by_ccy[ccy] = cash_by_ccy.get(ccy, 0.0) + amount
        gross = maint = init = la_maint = la_init = regt = daily = 0.0
        for holding in account.holdings.values():
            if holding.quantity == 0:
                continue
            values = self.value(holding)
            ccy = holding.instrument.currency
            rate = account.rate(ccy)
            stock_by_ccy[ccy] = stock_by_ccy.get(ccy, 0.0) + values.market_value
            unreal_by_ccy[ccy] = unreal_by_ccy.get(ccy, 0.0) + values.unrealized_pnl
            absolute = abs(values.market_value) * rate
            gross += absolute
            maint += absolute * holding.maint_rate
            init += absolute * holding.init_rate
            la_maint += absolute * holding.look_ahead_maint_rate
            la_init += absolute * holding.look_ahead_init_rate
            regt += absolute * max(holding.instrument.regt_rate, holding.init_rate)
            daily += values.daily_pnl * rate
        ledgers = {
            ccy: CurrencyLedger(
                cash=cash_by_ccy.get(ccy, 0.0),
                stock_value=stock_by_ccy.get(ccy, 0.0),
                unrealized_pnl=unreal_by_ccy.get(ccy, 0.0),
                rate=account.rate(ccy),
            )
            for ccy in account.currencies()
        }
        cash = sum(ledger.cash * ledger.rate for ledger in ledgers.values())
        stock = sum(ledger.stock_value * ledger.rate for ledger in ledgers.values())
        unrealized = sum(ledger.unrealized_pnl * ledger.rate for ledger in ledgers.values())
        nlv = cash + stock
        elv = nlv
        excess = elv - maint
        available = elv - init
        return Figures(
            net_liquidation=nlv,
            equity_with_loan=elv,
            gross_position_value=gross,
            init_margin_req=init,
            maint_margin_req=maint,
            excess_liquidity=excess,
            available_funds=available,
            cushion=excess / nlv if nlv > 0 else 0.0,
            leverage=gross / nlv if nlv > 0 else 0.0,
            buying_power=max(available, 0.0) * 4,
            sma=account.sma,
            regt_margin=regt,
            look_ahead_init_margin_req=la_init,
            look_ahead_maint_margin_req=la_maint,
            look_ahead_excess_liquidity=elv - la_maint,
            look_ahead_available_funds=elv - la_init,
            look_ahead_next_change=account.look_ahead_next_change,
            cash=cash,
            stock_value=stock,
            unrealized_pnl=unrealized,
            daily_pnl=daily,
            previous_day_equity_with_loan=account.previous_day_elv,
            accrued_cash=account.accrued_cash,
            ledgers=ledgers,
        )

    def account_rows(self, account_id: str) -> list[tuple[str, str, str]]:
        """Every account value row ``(tag, value, currency)`` IB would send now (with overrides)."""
        account = self.account(account_id)
        f = self.compute(account_id)
        base = account.base_currency
        segment_values = {
            "AccruedCash": f.accrued_cash,
            "AvailableFunds": f.available_funds,
            "EquityWithLoanValue": f.equity_with_loan,
            "ExcessLiquidity": f.excess_liquidity,
            "FullAvailableFunds": f.available_funds,
            "FullExcessLiquidity": f.excess_liquidity,
            "FullInitMarginReq": f.init_margin_req,
            "FullMaintMarginReq": f.maint_margin_req,
            "InitMarginReq": f.init_margin_req,
            "LookAheadAvailableFunds": f.look_ahead_available_funds,
            "LookAheadExcessLiquidity": f.look_ahead_excess_liquidity,
            "LookAheadInitMarginReq": f.look_ahead_init_margin_req,
            "LookAheadMaintMarginReq": f.look_ahead_maint_margin_req,
            "MaintMarginReq": f.maint_margin_req,
            "NetLiquidation": f.net_liquidation,
            "PreviousDayEquityWithLoanValue": f.previous_day_equity_with_loan,
            "RegTEquity": f.equity_with_loan,
            "RegTMargin": f.regt_margin,
            "SMA": f.sma,
            "TotalCashValue": f.cash,
        }
        rows: list[tuple[str, str, str]] = [
            ("AccountCode", account.id, ""),
            ("AccountReady", "true", ""),
            ("AccountType", account.account_type, ""),
            ("BuyingPower", fmt_money(f.buying_power), base),
            ("Cushion", fmt_ratio(f.cushion), ""),
            ("DayTradesRemaining", "-1", ""),
            ("GrossPositionValue", fmt_money(f.gross_position_value), base),
            ("Leverage-S", f"{f.leverage:.2f}", ""),
            ("LookAheadNextChange", str(f.look_ahead_next_change), ""),
            ("NLVAndMarginInReview", "false", ""),
        ]
        for tag in SEGMENT_TAGS:
            text = fmt_money(segment_values[tag])
            rows.append((tag, text, base))
            rows.append((f"{tag}-S", text, base))
        rows.extend(self._ledger_rows(account, f, "BASE"))
        for ccy in account.currencies():
            rows.extend(self._ledger_rows(account, f, ccy))
        return [(tag, self._apply(account, tag, value, ccy), ccy) for tag, value, ccy in rows]

    def _ledger_rows(
        self, account: AccountState, f: Figures, ccy: str
    ) -> list[tuple[str, str, str]]:
        if ccy == "BASE":
            cash, stock, unrealized, rate, label = (
                f.cash,
                f.stock_value,
                f.unrealized_pnl,
                1.0,
                "BASE",
            )
        else:
            ledger = f.ledgers[ccy]
            cash, stock, unrealized, rate, label = (
                ledger.cash,
                ledger.stock_value,
                ledger.unrealized_pnl,
                ledger.rate,
                ccy,
            )
        return [
            ("CashBalance", fmt_money(cash), ccy),
            ("Currency", label, ccy),
            ("ExchangeRate", "1.00" if rate == 1.0 else f"{rate:.7f}", ccy),
            ("NetLiquidationByCurrency", fmt_money(cash + stock), ccy),
            ("RealizedPnL", "0.00", ccy),
            ("StockMarketValue", fmt_money(stock), ccy),
            ("TotalCashBalance", fmt_money(cash), ccy),
            ("UnrealizedPnL", fmt_money(unrealized), ccy),
        ]

    @staticmethod
    def _apply(account: AccountState, tag: str, value: str, currency: str) -> str:
        override = account.override(tag, currency)
        return value if override is None else override

    def summary_rows(self, account_id: str, tags: Iterable[str]) -> list[tuple[str, str, str]]:
        """reqAccountSummary rows ``(tag, value, currency)`` for the requested tags."""
        account = self.account(account_id)
        base = account.base_currency
        rows = self.account_rows(account_id)
        by_key = {(tag, ccy): value for tag, value, ccy in rows}
        result: list[tuple[str, str, str]] = []
        for tag in tags:
            if tag.startswith("$LEDGER"):
                wanted = tag.partition(":")[2].upper()
                if wanted in ("", "BASE"):
                    currencies = ["BASE"]
                elif wanted == "ALL":
                    currencies = ["BASE", *account.currencies()]
                else:
                    currencies = [wanted] if wanted in account.currencies() else []
                for ccy in currencies:
                    result.extend((t, v, c) for t, v, c in rows if c == ccy and t in LEDGER_TAGS)
                continue
            if tag not in SUMMARY_TAGS:
                continue
            currency = "" if tag in _SUMMARY_UNITLESS else base
            if tag == "Leverage":
                value = by_key.get(("Leverage-S", ""), "0")
            elif tag == "SettledCash":
                value = by_key.get(("TotalCashValue", base), "0.00")
            elif tag == "HighestSeverity":
                value = "0"
            elif tag.startswith("DayTradesRemaining"):
                value = "-1"
            else:
                value = by_key.get((tag, currency), "")
            result.append((tag, self._apply(account, tag, value, currency), currency))
        return result

    def figures(self, account_id: str) -> dict[str, float]:
        """The account's current figures by IB tag, in base currency, overrides applied.

        A tag whose override is not a number (empty string, IB's 1.7976931348623157E308
        "unset") is left out, the way a consumer parsing IB's values ends up with no number.
        """
        account = self.account(account_id)
        f = self.compute(account_id)
        base = account.base_currency
        computed = {
            "NetLiquidation": (f.net_liquidation, base),
            "EquityWithLoanValue": (f.equity_with_loan, base),
            "GrossPositionValue": (f.gross_position_value, base),
            "InitMarginReq": (f.init_margin_req, base),
            "MaintMarginReq": (f.maint_margin_req, base),
            "ExcessLiquidity": (f.excess_liquidity, base),
            "AvailableFunds": (f.available_funds, base),
            "Cushion": (f.cushion, ""),
            "BuyingPower": (f.buying_power, base),
            "Leverage-S": (f.leverage, ""),
            "SMA": (f.sma, base),
            "RegTEquity": (f.equity_with_loan, base),
            "RegTMargin": (f.regt_margin, base),
            "LookAheadInitMarginReq": (f.look_ahead_init_margin_req, base),
            "LookAheadMaintMarginReq": (f.look_ahead_maint_margin_req, base),
            "LookAheadExcessLiquidity": (f.look_ahead_excess_liquidity, base),
            "LookAheadAvailableFunds": (f.look_ahead_available_funds, base),
            "LookAheadNextChange": (float(f.look_ahead_next_change), ""),
            "FullInitMarginReq": (f.init_margin_req, base),
            "FullMaintMarginReq": (f.maint_margin_req, base),
            "FullExcessLiquidity": (f.excess_liquidity, base),
            "FullAvailableFunds": (f.available_funds, base),
            "TotalCashValue": (f.cash, base),
            "TotalCashBalance": (f.cash, "BASE"),
            "CashBalance": (f.cash, "BASE"),
            "StockMarketValue": (f.stock_value, "BASE"),
            "UnrealizedPnL": (f.unrealized_pnl, "BASE"),
            "DailyPnL": (f.daily_pnl, ""),
            "PreviousDayEquityWithLoanValue": (f.previous_day_equity_with_loan, base),
            "AccruedCash": (f.accrued_cash, base),
        }
        result: dict[str, float] = {}
        for tag, (number, currency) in computed.items():
            override = account.override(tag, currency)
            if override is None:
                result[tag] = number
                continue
            parsed = _parse_override(override)
            if parsed is not None:
                result[tag] = parsed
        return result

    # -- changes -------------------------------------------------------------------------

    def set_prices(self, prices: Mapping[str, float]) -> list[str]:
        """Set absolute prices; returns the symbols whose price changed."""
        changed = []
        for symbol, price in prices.items():
            if symbol not in self.prices:
                raise KeyError(f"unknown symbol {symbol!r}")
            if not (isinstance(price, int | float) and math.isfinite(price) and price > 0):
                raise ValueError(f"{symbol}: a price must be a positive number, got {price!r}")
            price = round(float(price), 6)
            if price != self.prices[symbol]:
                self.prices[symbol] = price
                changed.append(symbol)
        self.settle(self.holders(changed))
        return changed

    def holders(self, symbols: Iterable[str]) -> list[str]:
        """Accounts holding any of ``symbols`` (flat holdings included)."""
        wanted = set(symbols)
        return [
            account.id
            for account in self.accounts.values()
            if wanted and not wanted.isdisjoint(account.holdings)
        ]

    def move_prices(self, moves: Mapping[str, float]) -> list[str]:
        """Relative moves (-0.05 = -5%); "all" moves every symbol not named separately."""
        targets: dict[str, float] = {}
        everything = next((move for key, move in moves.items() if key.lower() == "all"), None)
        if everything is not None:
            targets = dict.fromkeys(self.prices, everything)
        for symbol, move in moves.items():
            if symbol.lower() == "all":
                continue
            if symbol not in self.prices:
                raise KeyError(f"unknown symbol {symbol!r}")
            targets[symbol] = move
        for symbol, move in targets.items():
            if not move > -1:
                raise ValueError(f"{symbol}: a move must be above -100%, got {move!r}")
        return self.set_prices(
            {
                symbol: round(self.prices[symbol] * (1.0 + move), 4)
                for symbol, move in targets.items()
            }
        )

    def set_values(self, account_id: str, values: Mapping[str, str]) -> None:
        """Override account values (tag -> text) until cleared."""
        self.account(account_id).overrides.update(
            {tag: str(value) for tag, value in values.items()}
        )

    def clear_values(self, account_id: str, tags: Iterable[str] | None = None) -> None:
        """Drop overrides: the named tags, or all of them."""
        account = self.account(account_id)
        if tags is None:
            account.overrides.clear()
        else:
            for tag in tags:
                account.overrides.pop(tag, None)

    def set_quantity(
        self, account_id: str, symbol: str, quantity: float, *, adjust_cash: bool = True
    ) -> Holding:
        """Change a position's quantity, as a trade at the current price when ``adjust_cash``."""
        account = self.account(account_id)
        if symbol not in self.instruments:
            raise KeyError(f"unknown symbol {symbol!r}")
        instrument = self.instruments[symbol]
        if instrument.currency != account.base_currency and instrument.currency not in account.fx:
            raise ValueError(f"{account_id} has no exchange rate for {instrument.currency}")
        price = self.prices[symbol]
        holding = account.holdings.get(symbol)
        if holding is None:
            holding = _holding(
                instrument, PositionSpec(symbol=symbol, quantity=0.0, average_cost=price)
            )
            account.holdings[symbol] = holding
            account.by_con_id[holding.con_id] = holding
        delta = float(quantity) - holding.quantity
        if adjust_cash and delta:
            units = delta * instrument.multiplier
            account.cash[instrument.currency] = (
                account.cash.get(instrument.currency, 0.0) - units * price
            )
        if quantity and (holding.quantity == 0 or (holding.quantity > 0) != (quantity > 0)):
            holding.average_cost = price
        elif abs(quantity) > abs(holding.quantity):
            holding.average_cost = (
                holding.average_cost * abs(holding.quantity) + price * abs(delta)
            ) / abs(quantity)
        holding.quantity = float(quantity)
        self.settle([account_id])
        return holding

    def set_cash(self, account_id: str, cash: Mapping[str, float]) -> None:
        """Set cash balances per currency (a deposit, a withdrawal, interest)."""
        account = self.account(account_id)
        for ccy, amount in cash.items():
            if ccy != account.base_currency and ccy not in account.fx:
                raise ValueError(f"{account_id} has no exchange rate for {ccy}")
            account.cash[ccy] = float(amount)
        self.settle([account_id])

    def set_fx(self, account_id: str, rates: Mapping[str, float]) -> None:
        """Set exchange rates (units of the account's base per unit of each currency)."""
        account = self.account(account_id)
        for ccy, rate in rates.items():
            if ccy == account.base_currency:
                continue
            if not rate > 0:
                raise ValueError(f"{ccy}: an exchange rate must be positive")
            account.fx[ccy] = float(rate)
        self.settle([account_id])

    def settle(self, account_ids: Iterable[str] | None = None) -> None:
        """After a change: a default SMA rises with Reg T excess equity, never falls by a move."""
        for account_id in self.accounts if account_ids is None else account_ids:
            account = self.accounts[account_id]
            if account.sma_fixed:
                continue
            figures = self.compute(account.id)
            account.sma = max(account.sma, figures.equity_with_loan - figures.regt_margin)


def _parse_override(text: str) -> float | None:
    cleaned = text.strip()
    if not cleaned or cleaned.upper() == UNSET_TEXT.upper():
        return None
    try:
        number = float(cleaned)
    except ValueError:
        return None
    if not math.isfinite(number) or abs(number) >= 1.7976931348623157e308 * 0.999:
        return None
    return number
