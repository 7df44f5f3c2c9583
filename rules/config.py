"""Configuration of every rule: one frozen dataclass per rule, plus :class:`RulesConfig`.

Standard library only. The settings layer (pydantic-settings) uses these dataclasses directly as
field types, so each one carries ``__pydantic_config__ = {"extra": "forbid"}`` (a plain dict:
pydantic reads it, nothing here imports pydantic) and only uses types pydantic can validate from
TOML. Every ``__post_init__`` checks its values and raises :class:`ValueError` with a message that
names the field and says what to fix; pydantic reports it under the section's key.

Conventions, for every rule:

- shares, rates and thresholds are **fractions**: ``0.20`` means 20 %, ``0.005`` is half a point;
- money thresholds are in **USD** where the name says so (``pm_equity_floor``, ``min_equity``),
  otherwise in the account's base currency;
- ``clear_margin`` is the hysteresis: an alert clears only once the value is that far beyond its
  trigger on the safe side (same unit as the thresholds);
- symbols (dictionary keys, tuples of symbols) are upper-cased.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_FORBID: dict[str, Any] = {"extra": "forbid"}
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

#: Leverage factors of common US leveraged and inverse ETFs (negative = inverse). The API does
#: not report them; ``[rules.leveraged_etf] factors`` adds to or overrides this table.
BUILTIN_LEVERAGE_FACTORS: Mapping[str, float] = {
    # Nasdaq-100
    "TQQQ": 3.0,
    "SQQQ": -3.0,
    "QLD": 2.0,
    "QID": -2.0,
    "PSQ": -1.0,
    # S&P 500
    "UPRO": 3.0,
    "SPXU": -3.0,
    "SPXL": 3.0,
    "SPXS": -3.0,
    "SSO": 2.0,
    "SDS": -2.0,
    "SH": -1.0,
    # Dow
    "UDOW": 3.0,
    "SDOW": -3.0,
    "DDM": 2.0,
    "DXD": -2.0,
    "DOG": -1.0,
    # Russell 2000
    "TNA": 3.0,
    "TZA": -3.0,
    "URTY": 3.0,
    "SRTY": -3.0,
    "UWM": 2.0,
    "TWM": -2.0,
    "RWM": -1.0,
    # Sectors
    "SOXL": 3.0,
    "SOXS": -3.0,
    "TECL": 3.0,
    "TECS": -3.0,
    "FAS": 3.0,
    "FAZ": -3.0,
    "LABU": 3.0,
    "LABD": -3.0,
    "CURE": 3.0,
    "DPST": 3.0,
    "ROM": 2.0,
    "UYG": 2.0,
    "ERX": 2.0,
    "ERY": -2.0,
    "GUSH": 2.0,
    "DRIP": -2.0,
    "NUGT": 2.0,
    "DUST": -2.0,
    "JNUG": 2.0,
    "JDST": -2.0,
    # Treasuries
    "TMF": 3.0,
    "TMV": -3.0,
    "TYD": 3.0,
    "TYO": -3.0,
    "UBT": 2.0,
    "TBT": -2.0,
    # Emerging markets, China
    "EDC": 3.0,
    "EDZ": -3.0,
    "YINN": 3.0,
    "YANG": -3.0,
    # Commodities
    "UCO": 2.0,
    "SCO": -2.0,
    "BOIL": 2.0,
    "KOLD": -2.0,
    # Volatility
    "UVXY": 1.5,
    "UVIX": 2.0,
    "SVXY": -0.5,
}


# -- validation helpers ---------------------------------------------------------------------


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _fraction(name: str, value: Any, *, upper: float = 1.0, allow_zero: bool = True) -> float:
    number = _finite(name, value)
    low_ok = number >= 0 if allow_zero else number > 0
    if not low_ok or number > upper:
        lower = "0" if allow_zero else "above 0"
        raise ValueError(
            f"{name} must be a fraction from {lower} to {upper:g} (0.20 means 20%), got {value!r}"
        )
    return number


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    number = _finite(name, value)
    if number < 0 or (number == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "above 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return number


def _ordered_below(warning: float | None, critical: float | None) -> None:
    """For values that are bad when low: the warning trigger sits above the critical one."""
    if warning is not None and critical is not None and warning <= critical:
        raise ValueError(
            f"warning ({warning:g}) must be above critical ({critical:g}): "
            "a value falls through the warning level before the critical one"
        )


def _ordered_above(warning: float | None, critical: float | None) -> None:
    """For values that are bad when high: the warning trigger sits below the critical one."""
    if warning is not None and critical is not None and warning >= critical:
        raise ValueError(
            f"warning ({warning:g}) must be below critical ({critical:g}): "
            "a value rises through the warning level before the critical one"
        )


def _hhmm(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _HHMM.match(value.strip()):
        raise ValueError(f"{name} must be a time 'HH:MM' on a 24-hour clock, got {value!r}")
    return value.strip()


def _timezone(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be an IANA timezone name such as 'America/New_York'")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name}: unknown timezone {value!r} (use an IANA name such as 'America/New_York')"
        ) from None
    return value


def _symbols(name: str, values: Any) -> tuple[str, ...]:
    if isinstance(values, str):
        raise ValueError(f'{name} must be a list of symbols, e.g. ["BIL", "SGOV"]')
    result = []
    for item in values:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{name} must hold non-empty strings, got {item!r}")
        result.append(item.strip().upper())
    return tuple(result)


def _symbol_map(name: str, values: Any, check: Any) -> dict[str, float]:
    if not isinstance(values, Mapping):
        raise ValueError(f"{name} must be a table of SYMBOL = number")
    result: dict[str, float] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"{name} has an empty symbol")
        symbol = key.strip().upper()
        result[symbol] = check(f"{name}.{symbol}", value)
    return result


def _set(instance: Any, name: str, value: Any) -> None:
    object.__setattr__(instance, name, value)


# -- one dataclass per rule -----------------------------------------------------------------


@dataclass(frozen=True)
class CushionConfig:
    """``cushion``: EL / NLV against two levels, IBKR's own warning line, and EL < 0.

    ``ib_warning_line`` is IBKR's line as a fraction of MaintMarginReq (EL <= 10% of maintenance
    is critical). The action restores the ``warning`` level.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    enabled: bool = True
    warning: float = 0.20
    critical: float = 0.10
    ib_warning_line: float = 0.10
    clear_margin: float = 0.02

    def __post_init__(self) -> None:
        _fraction("warning", self.warning)
        _fraction("critical", self.critical)
        _fraction("ib_warning_line", self.ib_warning_line)
        _fraction("clear_margin", self.clear_margin)
        _ordered_below(self.warning, self.critical)


@dataclass(frozen=True)
class LeverageConfig:
    """``leverage``: gross leverage GPV / NLV (a multiple, 1.6 = 1.6x)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    enabled: bool = True
    warning: float | None = 1.6
    critical: float | None = 2.0
    clear_margin: float = 0.05

    def __post_init__(self) -> None:
        for name in ("warning", "critical"):
            value = getattr(self, name)
            if value is not None:
                _positive(name, value)
        _positive("clear_margin", self.clear_margin, allow_zero=True)
        _ordered_above(self.warning, self.critical)


@dataclass(frozen=True)
class MarginUtilizationConfig:
    """``margin_utilization``: margin loan / NLV against the cap (fractions)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    enabled: bool = True
    warning: float | None = 0.30
    critical: float | None = None
    clear_margin: float = 0.02

    def __post_init__(self) -> None:
        for name in ("warning", "critical"):
            value = getattr(self, name)
            if value is not None:
                _positive(name, value)
        _fraction("clear_margin", self.clear_margin)
        _ordered_above(self.warning, self.critical)


@dataclass(frozen=True)
class CashReserveConfig:
    """``cash_reserve``: the reserve against ``quarters`` quarters of projected financing cost.

    The reserve is ExcessLiquidity when ``reserve_symbols`` is empty, else the market value of
    the listed holdings (e.g. ``["SGOV", "BIL"]``). The cost comes from ``[rules.financing_cost]``.
    ``clear_margin`` is a fraction of the requirement (0.05: clear at 105%).
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    enabled: bool = True
    quarters: float = 2.0
    reserve_symbols: tuple[str, ...] = ()
    clear_margin: float = 0.05

    def __post_init__(self) -> None:
        _positive("quarters", self.quarters)
        _fraction("clear_margin", self.clear_margin)
        _set(self, "reserve_symbols", _symbols("reserve_symbols", self.reserve_symbols))


@dataclass(frozen=True)
class InterestTier:
    """One tier of a tiered margin rate: balances up to ``up_to`` (``None`` = no upper bound).

    Exactly one of ``rate`` (a fixed annual rate) or ``spread`` (added to the benchmark).
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    up_to: float | None = None
    rate: float | None = None
    spread: float | None = None

    def __post_init__(self) -> None:
        if self.up_to is not None:
            _positive("up_to", self.up_to)
        if (self.rate is None) == (self.spread is None):
            raise ValueError(
                "each tier needs exactly one of rate (a fixed annual rate, 0.03 = 3%) "
                "or spread (added to benchmark_rate, 0.015 = 1.5 points)"
            )
        if self.rate is not None:
            _fraction("rate", self.rate)
        if self.spread is not None:
            _finite("spread", self.spread)
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
class FinancingCostConfig:
    """``financing_cost``: the tiered annual cost of the margin loan, and its year-over-year rise.

    Tiers are blended like tax brackets, in ascending ``up_to`` order; the last may be open
    (``up_to`` omitted). ``benchmark_rate`` (e.g. the Fed Funds effective rate, 0.0433) moves,
    so it has no built-in value: with spread tiers and no benchmark the cost is not computed and
    the rule says so. ``day_count`` 360 (USD, actual/360) or 365 (GBP). ``rate_rise`` is the
    what-if rise reported (0.005 = +0.5 point). Warning when the annual cost is more than
    ``increase_warning`` above its level a year earlier; ``loan_cut`` is the cut named then.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    enabled: bool = True
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
        _set(self, "tiers", tiers)
        if self.benchmark_rate is not None:
            _fraction("benchmark_rate", self.benchmark_rate)
        if self.day_count not in (360, 365):
            raise ValueError(f"day_count must be 360 (actual/360) or 365, got {self.day_count!r}")
        _fraction("rate_rise", self.rate_rise)
        _positive("increase_warning", self.increase_warning)
        _fraction("loan_cut", self.loan_cut, allow_zero=False)
        _fraction("clear_margin", self.clear_margin)

    @property
    def needs_benchmark(self) -> bool:
        """True when some tier is a spread over the benchmark."""
        return any(tier.spread is not None for tier in self.tiers)


@dataclass(frozen=True)
class DrawdownConfig:
    """``drawdown``: NLV below its recorded peak (fractions).

    The action names the cut of the margin loan by ``loan_cut`` (20%).
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    enabled: bool = True
    warning: float | None = 0.12
    critical: float | None = None
    loan_cut: float = 0.20
    clear_margin: float = 0.02

    def __post_init__(self) -> None:
        for name in ("warning", "critical"):
            value = getattr(self, name)
            if value is not None:
                _fraction(name, value, allow_zero=False)
        _fraction("loan_cut", self.loan_cut, allow_zero=False)
        _fraction("clear_margin", self.clear_margin)
        _ordered_above(self.warning, self.critical)


@dataclass(frozen=True)
class ConcentrationConfig:
    """``concentration``: each holding's market value (absolute) as a share of NLV.

    Single stocks against ``stock_cap``, ETFs (stockType "ETF", or a known leveraged ETF)
    against ``etf_cap``; ``overrides`` sets a cap per symbol. ``etf_cap`` defaults to 50% so the
    seed's own SCHD 40 / VOO 40 / BND 20 portfolio does not warn unlevered, while one fund
    above half of NLV still does.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    enabled: bool = True
    stock_cap: float = 0.20
    etf_cap: float = 0.50
    overrides: dict[str, float] = field(default_factory=dict)
    clear_margin: float = 0.01

    def __post_init__(self) -> None:
        _positive("stock_cap", self.stock_cap)
        _positive("etf_cap", self.etf_cap)
        _fraction("clear_margin", self.clear_margin)
        _set(self, "overrides", _symbol_map("overrides", self.overrides, _positive))

    def cap_for(self, symbol: str, is_etf: bool) -> float:
        """The cap that applies to ``symbol``."""
        override = self.overrides.get(symbol)
        if override is not None:
            return override
        return self.etf_cap if is_etf else self.stock_cap


def _window_fields(instance: Any) -> None:
    _set(instance, "window_start", _hhmm("window_start", instance.window_start))
    _set(instance, "window_end", _hhmm("window_end", instance.window_end))
    _timezone("timezone", instance.timezone)


@dataclass(frozen=True)
class LeveragedEtfConfig:
    """``leveraged_etf``: leveraged and inverse ETFs.

    The sleeve (their absolute value over NLV) against ``sleeve_cap``; each one's Reg T
    requirement Min(``reg_t_base`` x |factor|, 100%); the cushion that would remain if those
    requirements applied now, graded against the cushion rule's critical level (or
    ``projected_critical``): below it is critical inside the window (weekdays,
    ``window_start``-``window_end`` in ``timezone``), a warning outside it. The action aims at
    the cushion rule's warning level. ``factors`` adds to or overrides the built-in table
    (0 removes a symbol).
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    enabled: bool = True
    sleeve_cap: float = 0.10
    factors: dict[str, float] = field(default_factory=dict)
    reg_t_base: float = 0.50
    projected_critical: float | None = None
    window_start: str = "15:30"
    window_end: str = "16:00"
    timezone: str = "America/New_York"
    clear_margin: float = 0.01

    def __post_init__(self) -> None:
        _fraction("sleeve_cap", self.sleeve_cap)
        _fraction("reg_t_base", self.reg_t_base, allow_zero=False)
        _fraction("clear_margin", self.clear_margin)
        if self.projected_critical is not None:
            _fraction("projected_critical", self.projected_critical)
        _window_fields(self)

        def factor(name: str, value: Any) -> float:
            number = _finite(name, value)
            if abs(number) > 10:
                raise ValueError(f"{name} must be a leverage factor such as 3 or -2, got {value!r}")
            return number

        _set(self, "factors", _symbol_map("factors", self.factors, factor))


def leveraged_factors(config: LeveragedEtfConfig | None = None) -> dict[str, float]:
    """The built-in factor table with the configured ``factors`` merged over it (0 removes)."""
    table = dict(BUILTIN_LEVERAGE_FACTORS)
    if config is not None:
        table.update(config.factors)
    return {symbol: factor for symbol, factor in table.items() if factor != 0}


@dataclass(frozen=True)
class SharesOutstandingConfig:
    """``shares_outstanding``: a holding as a share of the company's shares outstanding.

    IBKR raises the margin above 1% and requires 100% at 5% or more (``critical`` is inclusive).
    ``shares_outstanding`` supplies counts by symbol; they win over IB fundamental data.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    enabled: bool = True
    warning: float = 0.01
    critical: float = 0.05
    shares_outstanding: dict[str, float] = field(default_factory=dict)
    clear_margin: float = 0.001

    def __post_init__(self) -> None:
        _fraction("warning", self.warning, allow_zero=False)
        _fraction("critical", self.critical, allow_zero=False)
        _fraction("clear_margin", self.clear_margin)
        _ordered_above(self.warning, self.critical)
        _set(
            self,
            "shares_outstanding",
            _symbol_map("shares_outstanding", self.shares_outstanding, _positive),
        )


@dataclass(frozen=True)
class AllocationDriftConfig:
    """``allocation_drift``: weights against ``targets`` (fractions summing to 1).

    A weight is a symbol's market value over the combined value of the target symbols held
    (other holdings are ignored), so the trades that restore the targets are self-funding.
    Warning when a weight is more than ``band`` off its target; ``critical_band`` optional.
    No targets: the rule is not applicable.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    enabled: bool = True
    targets: dict[str, float] = field(default_factory=dict)
    band: float = 0.05
    critical_band: float | None = None
    clear_margin: float = 0.01

    def __post_init__(self) -> None:
        numbers = _symbol_map("targets", self.targets, _finite)
        total = sum(numbers.values())
        if numbers and math.isclose(total, 100.0, abs_tol=0.5):
            raise ValueError(
                f"targets sum to {total:g}: they look like percent; write fractions that sum "
                "to 1, e.g. SCHD = 0.40, VOO = 0.40, BND = 0.20"
            )
        targets = _symbol_map("targets", numbers, _fraction)
        if targets and not math.isclose(total, 1.0, abs_tol=0.005):
            raise ValueError(
                "targets must be fractions that sum to 1 (e.g. SCHD = 0.40, VOO = 0.40, "
                f"BND = 0.20), but they sum to {total:g}"
            )
        _set(self, "targets", targets)
        _fraction("band", self.band, allow_zero=False)
        if self.critical_band is not None:
            _fraction("critical_band", self.critical_band, allow_zero=False)
        _ordered_above(self.band, self.critical_band)
        _fraction("clear_margin", self.clear_margin)


@dataclass(frozen=True)
class LookAheadConfig:
    """``look_ahead``: LookAheadExcessLiquidity < 0 is critical; a look-ahead cushion below
    ``warning`` (default: the cushion rule's warning level) is a warning. ``timezone`` is used
    to name when the look-ahead margin takes effect.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    enabled: bool = True
    warning: float | None = None
    timezone: str = "America/New_York"
    clear_margin: float = 0.02

    def __post_init__(self) -> None:
        if self.warning is not None:
            _fraction("warning", self.warning)
        _fraction("clear_margin", self.clear_margin)
        _timezone("timezone", self.timezone)


@dataclass(frozen=True)
class SmaConfig:
    """``sma``: SMA < 0 is a warning, critical inside the Reg T end-of-day window (weekdays).

    ``reg_t_rate`` is the share of a sale credited to SMA (50%), used to size the sale.
    ``clear_margin`` is in base currency.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    enabled: bool = True
    window_start: str = "15:50"
    window_end: str = "17:20"
    timezone: str = "America/New_York"
    reg_t_rate: float = 0.50
    clear_margin: float = 0.0

    def __post_init__(self) -> None:
        _window_fields(self)
        _fraction("reg_t_rate", self.reg_t_rate, allow_zero=False)
        _positive("clear_margin", self.clear_margin, allow_zero=True)


@dataclass(frozen=True)
class PmEquityFloorConfig:
    """``pm_equity_floor``: NLV in USD for the listed portfolio-margin accounts (USD amounts)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    enabled: bool = True
    portfolio_margin_accounts: tuple[str, ...] = ()
    warning: float = 110_000.0
    critical: float = 100_000.0
    clear_margin: float = 1_000.0

    def __post_init__(self) -> None:
        _positive("warning", self.warning)
        _positive("critical", self.critical)
        _positive("clear_margin", self.clear_margin, allow_zero=True)
        _ordered_below(self.warning, self.critical)
        accounts = _symbols("portfolio_margin_accounts", self.portfolio_margin_accounts)
        _set(self, "portfolio_margin_accounts", accounts)


@dataclass(frozen=True)
class DistanceToLiquidationConfig:
    """``distance_to_liquidation``: d* = EL / ((1 - m) x GPV), the uniform fall that empties EL.

    ``falls`` are the what-if falls whose resulting cushion is reported.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    enabled: bool = True
    warning: float = 0.15
    critical: float = 0.08
    falls: tuple[float, ...] = (0.10, 0.12, 0.20)
    clear_margin: float = 0.02

    def __post_init__(self) -> None:
        _fraction("warning", self.warning)
        _fraction("critical", self.critical)
        _fraction("clear_margin", self.clear_margin)
        _ordered_below(self.warning, self.critical)
        falls = tuple(_fraction("falls", fall, allow_zero=False) for fall in self.falls)
        _set(self, "falls", falls)


@dataclass(frozen=True)
class MinEquityConfig:
    """``min_equity``: NLV converted to USD below the USD 2,000 a margin account needs."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    enabled: bool = True
    warning: float = 2_000.0
    critical: float | None = None
    clear_margin: float = 100.0

    def __post_init__(self) -> None:
        _positive("warning", self.warning)
        if self.critical is not None:
            _positive("critical", self.critical)
        _positive("clear_margin", self.clear_margin, allow_zero=True)
        _ordered_below(self.warning, self.critical)


@dataclass(frozen=True)
class StaleDataConfig:
    """``stale_data``: values older than ``stale_minutes`` while connected is a warning;
    disconnected for ``blind_minutes`` is critical ("monitor blind"), except inside the daily
    restart window (until the disconnect outlasts it).
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    enabled: bool = True
    stale_minutes: float = 10.0
    blind_minutes: float = 5.0

    def __post_init__(self) -> None:
        _positive("stale_minutes", self.stale_minutes)
        _positive("blind_minutes", self.blind_minutes)


@dataclass(frozen=True)
class RulesConfig:
    """Every rule's section, one attribute per rule id (``[rules.<id>]`` in the TOML file)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID

    cushion: CushionConfig = field(default_factory=CushionConfig)
    leverage: LeverageConfig = field(default_factory=LeverageConfig)
    margin_utilization: MarginUtilizationConfig = field(default_factory=MarginUtilizationConfig)
    cash_reserve: CashReserveConfig = field(default_factory=CashReserveConfig)
    financing_cost: FinancingCostConfig = field(default_factory=FinancingCostConfig)
    drawdown: DrawdownConfig = field(default_factory=DrawdownConfig)
    concentration: ConcentrationConfig = field(default_factory=ConcentrationConfig)
    leveraged_etf: LeveragedEtfConfig = field(default_factory=LeveragedEtfConfig)
    shares_outstanding: SharesOutstandingConfig = field(default_factory=SharesOutstandingConfig)
    allocation_drift: AllocationDriftConfig = field(default_factory=AllocationDriftConfig)
    look_ahead: LookAheadConfig = field(default_factory=LookAheadConfig)
    sma: SmaConfig = field(default_factory=SmaConfig)
    pm_equity_floor: PmEquityFloorConfig = field(default_factory=PmEquityFloorConfig)
    distance_to_liquidation: DistanceToLiquidationConfig = field(
        default_factory=DistanceToLiquidationConfig
    )
    min_equity: MinEquityConfig = field(default_factory=MinEquityConfig)
    stale_data: StaleDataConfig = field(default_factory=StaleDataConfig)
