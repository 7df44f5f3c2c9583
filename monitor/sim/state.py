"""The live account state behind the simulated gateway: prices, positions and every IB figure.

:class:`SimState` holds what changes while a scenario (:mod:`monitor.sim.scenarios`) plays:
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from monitor.sim.protocol import UNSET_TEXT, fmt_money, fmt_ratio
from monitor.sim.scenarios import Account, Instrument, Position, Scenario

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

    def __init__(self, spec: Account, instruments: Mapping[str, Instrument], now: float) -> None:
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


def _holding(instrument: Instrument, position: Position) -> Holding:
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
        self.instruments: dict[str, Instrument] = dict(scenario.resolved_instruments)
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
                instrument, Position(symbol=symbol, quantity=0.0, average_cost=price)
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
