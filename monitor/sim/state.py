"""The live account state behind the simulated gateway: prices, positions and every IB figure.

:class:`SimState` holds what changes while a scenario (:mod:`monitor.sim.scenarios`) plays:
prices, cash, quantities, FX rates, margin rates, value overrides and the SMA. Every figure IB
reports is recomputed from those in the account's base currency, so a price move changes
market values, NLV, GPV, requirements, ExcessLiquidity and Cushion together, exactly as the
formulas of margin-rules.md sections 1, 2 and 6 say:

    NLV = cash + stocks + options; ELV = cash + stocks     (options have no loan value)
    GPV = sum |market value| (stocks and options; market value = qty x price x multiplier)
    Maint = sum of each holding's requirement, Init likewise:
        stock: rate x |MV|; a short without a rate: IB's schedule (30% above 16.67,
               5/share from 5 to 16.67, 100% under 5, 2.50/share at or under 2.50)
        long option: 0; short option: |MV| + rate x underlying value (default rate 20%)
    ExcessLiquidity = ELV - Maint, AvailableFunds = ELV - Init, Cushion = EL / NLV

Overrides (tag -> value string) win over computed values until cleared; rate overrides
(:meth:`SimState.set_rates`) win over the scenario's rates.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from monitor.sim.protocol import UNSET_TEXT, Bar, fmt_money, fmt_ratio
from monitor.sim.scenarios import Account, Instrument, Position, RateKeys, Scenario

RATE_NAMES = tuple(RateKeys.model_fields)
"""maint_rate, init_rate, look_ahead_maint_rate, look_ahead_init_rate."""
DEFAULT_SHORT_OPTION_RATE = 0.20
"""A short option's requirement beyond its value, as a fraction of the underlying's value."""

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
    "AccruedCash",
    "CashBalance",
    "Currency",
    "ExchangeRate",
    "NetLiquidationByCurrency",
    "OptionMarketValue",
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
    given: frozenset[str] = frozenset()
    """The rate names the scenario set for this holding (position or instrument)."""

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
    option_value: float = 0.0
    accrued_cash: float = 0.0


@dataclass(frozen=True, slots=True)
class Requirement:
    """One holding's margin requirements, in its own currency."""

    maint: float
    init: float
    look_ahead_maint: float
    look_ahead_init: float
    regt: float


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
    option_value: float = 0.0


class AccountState:
    """One account's mutable state."""

    def __init__(self, spec: Account, instruments: Mapping[str, Instrument], now: float) -> None:
        self.spec = spec
        self.id = spec.id
        self.base_currency = spec.base_currency
        self.account_type = spec.account_type
        self.cash: dict[str, float] = {spec.base_currency: 0.0, **spec.cash}
        self.fx: dict[str, float] = dict(spec.fx)
        accrued = spec.accrued_cash
        self.accrued_cash = 0.0 if isinstance(accrued, dict) else accrued
        self.accrued_by_currency: dict[str, float] | None = (
            dict(accrued) if isinstance(accrued, dict) else None
        )
        self.rate_overrides: dict[str, dict[str, float]] = {}
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

    @property
    def has_options(self) -> bool:
        """True once the account holds (or held) an option: its ledgers gain OptionMarketValue."""
        return any(holding.instrument.is_option for holding in self.holdings.values())

    def currencies(self) -> list[str]:
        """Base first, then every other currency with cash, positions, accruals or a rate."""
        others = (
            set(self.cash) | set(self.fx) | {h.instrument.currency for h in self.holdings.values()}
        )
        if self.accrued_by_currency:
            others |= set(self.accrued_by_currency)
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
    given = instrument.rates_given | {
        name for name in RATE_NAMES if getattr(position, name) is not None
    }
    return Holding(
        instrument=instrument,
        given=frozenset(given),
        quantity=position.quantity,
        average_cost=position.average_cost
        if position.average_cost is not None
        else instrument.price,
        maint_rate=maint,
        init_rate=init,
        look_ahead_maint_rate=la_maint,
        look_ahead_init_rate=la_init,
    )


def previous_weekday(day: date) -> date:
    """The weekday before ``day`` (trading sessions without a holiday calendar)."""
    day -= timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def is_ledger_row(tag: str, currency: str, base_currency: str) -> bool:
    """A per-currency ledger row (not the AccruedCash segment row in the base currency)."""
    return tag in LEDGER_TAGS and not (tag == "AccruedCash" and currency == base_currency)


def short_requirement_per_share(price: float) -> float:
    """IB's default requirement per share of a short stock (margin-rules.md section 2)."""
    if price > 16.67:
        return 0.30 * price
    if price >= 5.0:
        return 5.0
    if price > 2.5:
        return price
    return 2.5


def _chosen_rates(account: AccountState, holding: Holding) -> list[float | None]:
    """Each rate by precedence: the account's override for the symbol, for "all", the
    scenario's; None = the default rule (look-ahead rates default to the current ones)."""
    by_symbol = account.rate_overrides.get(holding.symbol, {})
    for_all = account.rate_overrides.get("all", {})
    # the scenario's rates (0.25 by default) hold for long stock and for a short given a
    # maintenance rate; otherwise an unset rate means the default rule
    scenario_rates = not holding.instrument.is_option and (
        holding.quantity > 0 or "maint_rate" in holding.given
    )

    def pick(name: str) -> float | None:
        for overrides in (by_symbol, for_all):
            if name in overrides:
                return overrides[name]
        if name in holding.given or scenario_rates:
            return float(getattr(holding, name))
        return None

    maint, init = pick("maint_rate"), pick("init_rate")
    la_maint, la_init = pick("look_ahead_maint_rate"), pick("look_ahead_init_rate")
    if "look_ahead_maint_rate" not in holding.given and not _overridden(
        "look_ahead_maint_rate", by_symbol, for_all
    ):
        la_maint = maint
    if "look_ahead_init_rate" not in holding.given and not _overridden(
        "look_ahead_init_rate", by_symbol, for_all
    ):
        la_init = init
    return [maint, init, la_maint, la_init]


def _overridden(name: str, *overrides: Mapping[str, float]) -> bool:
    return any(name in table for table in overrides)


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

    def daily_bars(self, symbol: str, session: date) -> list[Bar]:
        """The instrument's daily bars: its history's closes on the weekdays before
        ``session`` (the current session, a weekday), then the current session's bar closing
        at the current price. Empty when the scenario gives no history."""
        instrument = self.instruments[symbol]
        if instrument.history is None:
            return []
        closes = [*instrument.history, self.prices[symbol]]
        dates = [session]
        while len(dates) < len(closes):
            dates.append(previous_weekday(dates[-1]))
        dates.reverse()
        volume = instrument.history_volume
        bars = []
        previous = closes[0]
        for day, close in zip(dates, closes, strict=True):
            high, low = max(previous, close), min(previous, close)
            bars.append(
                Bar(
                    date=day.strftime("%Y%m%d"),
                    open=previous,
                    high=high,
                    low=low,
                    close=close,
                    volume=volume,
                    average=(high + low + close) / 3,
                    bar_count=int(volume // 100),
                )
            )
            previous = close
        return bars

    def holdings(self, account_id: str, *, include_flat: bool = False) -> list[Holding]:
        """The account's holdings (flat ones only when asked)."""
        return [
            holding
            for holding in self.account(account_id).holdings.values()
            if include_flat or holding.quantity != 0
        ]

    def compute(self, account_id: str) -> Figures:
        """Recompute every figure of the account from prices, cash, positions and rates."""
        account = self.account(account_id)
        cash_by_ccy: dict[str, float] = dict.fromkeys(account.currencies(), 0.0)
        stock_by_ccy = dict(cash_by_ccy)
        option_by_ccy = dict(cash_by_ccy)
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
            values_by_ccy = option_by_ccy if holding.instrument.is_option else stock_by_ccy
            values_by_ccy[ccy] = values_by_ccy.get(ccy, 0.0) + values.market_value
            unreal_by_ccy[ccy] = unreal_by_ccy.get(ccy, 0.0) + values.unrealized_pnl
            absolute = abs(values.market_value) * rate
            gross += absolute
            rates = self.rates(account, holding)
            if rates is not None and not holding.instrument.is_option:
                maint += absolute * rates[0]
                init += absolute * rates[1]
                la_maint += absolute * rates[2]
                la_init += absolute * rates[3]
                regt += absolute * max(holding.instrument.regt_rate, rates[1])
            else:
                need = self.requirement(account, holding, values)
                maint += need.maint * rate
                init += need.init * rate
                la_maint += need.look_ahead_maint * rate
                la_init += need.look_ahead_init * rate
                regt += need.regt * rate
            daily += values.daily_pnl * rate
        accrued = account.accrued_by_currency or {}
        ledgers = {
            ccy: CurrencyLedger(
                cash=cash_by_ccy.get(ccy, 0.0),
                stock_value=stock_by_ccy.get(ccy, 0.0),
                unrealized_pnl=unreal_by_ccy.get(ccy, 0.0),
                rate=account.rate(ccy),
                option_value=option_by_ccy.get(ccy, 0.0),
                accrued_cash=accrued.get(ccy, 0.0),
            )
            for ccy in account.currencies()
        }
        cash = sum(ledger.cash * ledger.rate for ledger in ledgers.values())
        stock = sum(ledger.stock_value * ledger.rate for ledger in ledgers.values())
        options = sum(ledger.option_value * ledger.rate for ledger in ledgers.values())
        unrealized = sum(ledger.unrealized_pnl * ledger.rate for ledger in ledgers.values())
        accrued_cash = account.accrued_cash
        if account.accrued_by_currency is not None:
            accrued_cash = sum(ledger.accrued_cash * ledger.rate for ledger in ledgers.values())
        elv = cash + stock
        nlv = elv + options
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
            accrued_cash=accrued_cash,
            ledgers=ledgers,
            option_value=options,
        )

    @staticmethod
    def rates(account: AccountState, holding: Holding) -> tuple[float, float, float, float] | None:
        """The holding's (maint, init, look-ahead maint, look-ahead init) rates now, or None
        when a default rule applies instead (a short without a rate, an option)."""
        overrides = account.rate_overrides
        if not overrides and (holding.quantity > 0 or "maint_rate" in holding.given):
            return (
                holding.maint_rate,
                holding.init_rate,
                holding.look_ahead_maint_rate,
                holding.look_ahead_init_rate,
            )
        maint, init, la_maint, la_init = _chosen_rates(account, holding)
        if maint is None or init is None or la_maint is None or la_init is None:
            return None
        return (maint, init, la_maint, la_init)

    def requirement(
        self, account: AccountState, holding: Holding, values: HoldingValues
    ) -> Requirement:
        """The holding's requirements in its own currency, default rules included."""
        instrument = holding.instrument
        chosen = _chosen_rates(account, holding)
        absolute = abs(values.market_value)
        if instrument.is_option:
            if holding.quantity >= 0:
                return Requirement(0.0, 0.0, 0.0, 0.0, 0.0)
            underlying = self.prices[instrument.underlying or instrument.symbol]
            base = abs(holding.quantity) * instrument.multiplier * underlying
            needs = [
                absolute + base * (DEFAULT_SHORT_OPTION_RATE if rate is None else rate)
                for rate in chosen
            ]
            return Requirement(needs[0], needs[1], needs[2], needs[3], needs[1])
        per_share = short_requirement_per_share(values.price)
        units = abs(holding.quantity) * instrument.multiplier
        needs = [absolute * rate if rate is not None else per_share * units for rate in chosen]
        return Requirement(
            needs[0], needs[1], needs[2], needs[3], max(absolute * instrument.regt_rate, needs[1])
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
        """One currency's ledger rows (``BASE``: every currency converted and summed)."""
        if ccy == "BASE":
            cash, stock, options, unrealized, accrued, rate = (
                f.cash,
                f.stock_value,
                f.option_value,
                f.unrealized_pnl,
                f.accrued_cash,
                1.0,
            )
        else:
            ledger = f.ledgers[ccy]
            cash, stock, options, unrealized, accrued, rate = (
                ledger.cash,
                ledger.stock_value,
                ledger.option_value,
                ledger.unrealized_pnl,
                ledger.accrued_cash,
                ledger.rate,
            )
        rows = [
            ("CashBalance", fmt_money(cash), ccy),
            ("Currency", ccy, ccy),
            ("ExchangeRate", "1.00" if rate == 1.0 else f"{rate:.7f}", ccy),
            ("NetLiquidationByCurrency", fmt_money(cash + stock + options), ccy),
            ("RealizedPnL", "0.00", ccy),
            ("StockMarketValue", fmt_money(stock), ccy),
            ("TotalCashBalance", fmt_money(cash), ccy),
            ("UnrealizedPnL", fmt_money(unrealized), ccy),
        ]
        if account.has_options:
            rows.insert(4, ("OptionMarketValue", fmt_money(options), ccy))
        if account.accrued_by_currency is not None and ccy != account.base_currency:
            # the base currency's own accrual shares its key with the AccruedCash segment row
            rows.insert(0, ("AccruedCash", fmt_money(accrued), ccy))
        return rows

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
                    result.extend(
                        (t, v, c)
                        for t, v, c in rows
                        if c == ccy and is_ledger_row(t, c, account.base_currency)
                    )
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
        if account.has_options:
            computed["OptionMarketValue"] = (f.option_value, "BASE")
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

    def set_rates(self, account_id: str, rates: Mapping[str, Mapping[str, float]]) -> None:
        """Override margin rates (symbol or "all" -> rate name -> fraction), prices unchanged."""
        account = self.account(account_id)
        for key, named in rates.items():
            if key != "all" and key not in self.instruments:
                raise KeyError(f"unknown symbol {key!r}")
            for name, rate in named.items():
                if name not in RATE_NAMES:
                    raise ValueError(f"unknown rate {name!r} (rates: {', '.join(RATE_NAMES)})")
                if not 0 <= rate <= 1:
                    raise ValueError(f"{key} {name}: a rate is a fraction in [0, 1], got {rate!r}")
            account.rate_overrides.setdefault(key, {}).update(
                {name: float(rate) for name, rate in named.items()}
            )

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
