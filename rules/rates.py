"""What the engine knows about maintenance rates: the table of leveraged-ETF factors, each
holding's rate where it is known, and the lowest rate a holding of an account can have.

An action that says "sell X of positions" must clear the alert whichever holding is sold, so it
is sized at the lowest maintenance rate a holding of the account can have (a sale of S raises
ExcessLiquidity by m x S, less for a lower m): IB's 25% for Reg T long stock and 30% for a Reg T
short (margin-rules.md section 2); for a portfolio-margin account the floor of its stress test,
15% (seed 003: "For stock, equity options, narrow based indices and single stock futures, the
stress parameter is plus or minus 15%"); and a leveraged ETF's own rate, Max(base, Min(base x
|factor|, 100%)), where the factor table knows the fund. Long options have no loan value:
selling one raises ExcessLiquidity by its whole value (a rate of 100%), so they never lower the
floor. Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from rules import figures
from rules.common import Book
from rules.model import AccountSnapshot

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


#: The lowest maintenance rate of a portfolio-margin holding: the +-15% stock stress (seed 003).
PORTFOLIO_MARGIN_FLOOR = 0.15


class FactorSettings(Protocol):
    """Settings that add to or override the factor table (``[rules.leveraged_etf]``)."""

    @property
    def factors(self) -> Mapping[str, float]: ...


class PortfolioMarginSettings(Protocol):
    """Which accounts are portfolio-margin ones and their floor (``[rules.pm_equity_floor]``)."""

    @property
    def portfolio_margin_accounts(self) -> Iterable[str]: ...
    @property
    def maintenance_floor(self) -> float: ...


def merged_factors(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """The built-in factor table with ``overrides`` merged over it (a factor of 0 removes)."""
    table = dict(BUILTIN_LEVERAGE_FACTORS)
    table.update(overrides or {})
    return {symbol: factor for symbol, factor in table.items() if factor != 0}


def is_leveraged(factor: float | None) -> bool:
    """A fund is leveraged when its factor exceeds 1 in size: a -1x fund is inverse, not
    leveraged (seed 003 speaks of leveraged ETFs)."""
    return factor is not None and abs(factor) > 1


@dataclass(frozen=True, slots=True)
class SaleRates:
    """The lowest maintenance rate a long and a short holding of one account can have
    (``None``: no such holding), and what they rest on."""

    long: float | None
    short: float | None
    basis: str

    @property
    def any(self) -> float | None:
        """The lowest rate of any holding: what a "sell or buy back" is sized at."""
        rates = [rate for rate in (self.long, self.short) if rate is not None]
        return min(rates) if rates else None


def floors(portfolio_margin: bool, pm_floor: float = PORTFOLIO_MARGIN_FLOOR) -> tuple[float, float]:
    """The long and short floor rates: Reg T 25% / 30%, or the portfolio-margin floor."""
    if portfolio_margin:
        return pm_floor, pm_floor
    return figures.MAINTENANCE_LONG_BASE, figures.MAINTENANCE_SHORT_BASE


def is_portfolio_margin(account: str, settings: PortfolioMarginSettings | None) -> bool:
    """True when ``account`` is listed as a portfolio-margin account."""
    if settings is None:
        return False
    return account.upper() in {name.upper() for name in settings.portfolio_margin_accounts}


def lowest_rates(
    snapshot: AccountSnapshot,
    book: Book,
    *,
    leveraged: FactorSettings | None = None,
    portfolio_margin: PortfolioMarginSettings | None = None,
) -> SaleRates:
    """The lowest maintenance rate a long and a short holding of ``snapshot`` can have.

    A fund of the factor table has its own rate, any other stock or fund holding the floor of
    its side; a holding of unknown value counts on both sides; written options count at the
    short floor. Without positions, GrossPositionValue is taken as all long (the long floor).
    """
    pm = is_portfolio_margin(snapshot.account, portfolio_margin)
    pm_floor = portfolio_margin.maintenance_floor if pm and portfolio_margin else 0.0
    base_long, base_short = floors(pm, pm_floor)
    basis = "portfolio margin" if pm else "Reg T"
    if not snapshot.positions:
        return SaleRates(base_long, None, basis)
    factors = merged_factors(leveraged.factors if leveraged is not None else None)
    longs: list[float] = []
    shorts: list[float] = []
    for symbol, value in book.values.items():
        factor = factors.get(symbol)
        base = base_long if value >= 0 else base_short
        rate = base
        if factor is not None and is_leveraged(factor):
            rate = figures.leveraged_requirement(factor, base)
        (longs if value >= 0 else shorts).append(rate)
    if book.unpriced:
        longs.append(base_long)
        shorts.append(base_short)
    if book.short_options > 0:
        shorts.append(base_short)
    return SaleRates(min(longs, default=None), min(shorts, default=None), basis)
