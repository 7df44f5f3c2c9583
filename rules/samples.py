"""Sample snapshots for tests and benchmarks (no I/O, standard library only).

:func:`sample_snapshot` builds a consistent Reg T-style account from a few figures;
:func:`synthetic_snapshot` builds a large book (e.g. 5,000 positions) for throughput checks.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from rules.checks.financing_cost import FinancingCostConfig, InterestTier
from rules.model import AccountSnapshot, Position

#: A fixed, timezone-aware moment (Monday 2026-05-11 12:00 America/New_York).
SAMPLE_TIME = datetime(2026, 5, 11, 16, 0, tzinfo=UTC)

#: The 001 seed's financing terms: 3.0% up to $150,000, 4.0% above (margin-rules.md section 5).
SEED_FINANCING = FinancingCostConfig(
    tiers=(InterestTier(up_to=150_000, rate=0.03), InterestTier(rate=0.04))
)


def stock(
    symbol: str,
    value: float | None,
    *,
    quantity: float | None = None,
    stock_type: str | None = "COMMON",
    currency: str = "USD",
    con_id: int | None = None,
    sec_type: str = "STK",
) -> Position:
    """A position worth ``value`` in base currency (``None``: no value known)."""
    qty = quantity if quantity is not None else (value / 100.0 if value else 1.0)
    price = abs(value / qty) if value is not None and qty else None
    return Position(
        symbol=symbol,
        con_id=con_id if con_id is not None else zlib.crc32(symbol.encode()),
        sec_type=sec_type,
        quantity=qty,
        currency=currency,
        market_price=price,
        market_value=value,
        market_value_base=value,
        stock_type=stock_type,
    )


def sample_snapshot(
    positions: Iterable[Position] = (), *, account: str = "DU111", **values: Any
) -> AccountSnapshot:
    """An account with NLV 100,000, GPV 150,000, maintenance 37,500 (m = 25%), EL 62,500.

    Any :class:`AccountSnapshot` field can be overridden by keyword.
    """
    base = AccountSnapshot(
        account=account,
        base_currency="USD",
        as_of=SAMPLE_TIME,
        net_liquidation=100_000.0,
        equity_with_loan=100_000.0,
        gross_position_value=150_000.0,
        init_margin_req=37_500.0,
        maint_margin_req=37_500.0,
        excess_liquidity=62_500.0,
        available_funds=62_500.0,
        sma=20_000.0,
        look_ahead_init_margin_req=37_500.0,
        look_ahead_maint_margin_req=37_500.0,
        look_ahead_available_funds=62_500.0,
        look_ahead_excess_liquidity=62_500.0,
        cash_balance=-50_000.0,
        positions=tuple(positions),
    )
    return replace(base, **values)


def synthetic_snapshot(count: int = 5_000, *, leverage: float = 1.4) -> AccountSnapshot:
    """A book of ``count`` stock and ETF positions (a few leveraged ETFs and a three-fund core)."""
    special = ["TQQQ", "SOXL", "SQQQ", "SCHD", "VOO", "BND"]
    symbols = special + [f"S{index:05d}" for index in range(max(0, count - len(special)))]
    positions = tuple(
        stock(
            symbol,
            1_000.0 + index,
            quantity=10.0 + index,
            stock_type="ETF" if symbol in special or index % 7 == 0 else "COMMON",
            con_id=index + 1,
        )
        for index, symbol in enumerate(symbols[:count])
    )
    gross = sum(position.market_value_base or 0.0 for position in positions)
    nlv = gross / leverage
    maintenance = 0.25 * gross
    return sample_snapshot(
        positions,
        net_liquidation=nlv,
        equity_with_loan=nlv,
        gross_position_value=gross,
        init_margin_req=maintenance,
        maint_margin_req=maintenance,
        excess_liquidity=nlv - maintenance,
        available_funds=nlv - maintenance,
        look_ahead_maint_margin_req=maintenance,
        look_ahead_excess_liquidity=nlv - maintenance,
        cash_balance=nlv - gross,
    )
