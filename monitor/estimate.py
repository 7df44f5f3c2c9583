"""Estimated cushion between IB's 3-minute account updates.

IB pushes ExcessLiquidity, requirements and Cushion only every 3 minutes (or on a position
change), while each position's value streams about once a second (reqPnLSingle). The estimator
keeps the last authoritative snapshot as a baseline, and between updates moves its figures by
the change of each position's value:

- NLV and ELV move by the change of the signed value,
- GPV by the change of the absolute value,
- the maintenance (and initial) requirement by that change times the position's rate.

A position's rate comes from configuration, else the leveraged-ETF rule (Min(25% x factor,
100%) long, Min(30% x factor, 100%) short), else the baseline's average rate over the rest of
the book, so the estimate agrees with IB's own figure at the baseline. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from rules.figures import leveraged_maintenance
from rules.model import AccountSnapshot, Position, is_number

RateLookup = Callable[[Position], float | None]


def rate_lookup(overrides: Mapping[str, float], factors: Mapping[str, float]) -> RateLookup:
    """A lookup of known maintenance rates: configured ones, then leveraged-ETF factors."""

    def lookup(position: Position) -> float | None:
        if position.symbol in overrides:
            return overrides[position.symbol]
        factor = factors.get(position.symbol)
        if factor:
            return leveraged_maintenance(factor, long=position.is_long)
        return None

    return lookup


@dataclass(frozen=True, slots=True)
class Baseline:
    """The last authoritative snapshot and each position's rates derived from it."""

    snapshot: AccountSnapshot
    values: dict[int, float]
    maintenance_rates: dict[int, float]
    initial_rates: dict[int, float]


def make_baseline(snapshot: AccountSnapshot, known_rate: RateLookup) -> Baseline:
    """Split the authoritative requirements over the positions (known rates first)."""
    values = {
        p.con_id: p.market_value_base for p in snapshot.positions if p.market_value_base is not None
    }
    gross = sum(abs(value) for value in values.values())
    maintenance: dict[int, float] = {}
    initial: dict[int, float] = {}
    known_gross = known_maint = 0.0
    for position in snapshot.positions:
        if position.con_id not in values:
            continue
        rate = known_rate(position)
        if rate is not None:
            maintenance[position.con_id] = rate
            known_gross += abs(values[position.con_id])
            known_maint += rate * abs(values[position.con_id])
    rest_gross = gross - known_gross
    maint_total = snapshot.maint_margin_req if is_number(snapshot.maint_margin_req) else None
    init_total = snapshot.init_margin_req if is_number(snapshot.init_margin_req) else None
    rest_rate = (
        _clamp((maint_total - known_maint) / rest_gross)
        if maint_total is not None and rest_gross > 0
        else 0.25
    )
    init_ratio = _clamp(init_total / maint_total) if init_total and maint_total else 1.0
    for con_id in values:
        maintenance.setdefault(con_id, rest_rate)
        initial[con_id] = min(1.0, maintenance[con_id] * max(init_ratio, 1.0))
    return Baseline(snapshot, values, maintenance, initial)


def estimate(baseline: Baseline, current: AccountSnapshot) -> AccountSnapshot:
    """The current positions applied to the baseline's figures, marked as estimated.

    ``current`` carries the latest position values; its account figures are the same
    authoritative ones as the baseline's (IB has not pushed new ones yet).
    """
    base = baseline.snapshot
    d_signed = d_gross = d_maint = d_init = 0.0
    for position in current.positions:
        value = position.market_value_base
        before = baseline.values.get(position.con_id)
        if value is None or before is None:
            continue
        change_abs = abs(value) - abs(before)
        d_signed += value - before
        d_gross += change_abs
        d_maint += baseline.maintenance_rates[position.con_id] * change_abs
        d_init += baseline.initial_rates[position.con_id] * change_abs

    def moved(figure: float | None, delta: float) -> float | None:
        return figure + delta if is_number(figure) else None

    nlv = moved(base.net_liquidation, d_signed)
    elv = moved(base.equity_with_loan, d_signed)
    maint = moved(base.maint_margin_req, d_maint)
    init = moved(base.init_margin_req, d_init)
    excess = (
        elv - maint
        if elv is not None and maint is not None
        else moved(base.excess_liquidity, d_signed - d_maint)
    )
    available = (
        elv - init
        if elv is not None and init is not None
        else moved(base.available_funds, d_signed - d_init)
    )
    cushion = excess / nlv if excess is not None and nlv and nlv > 0 else None
    return replace(
        current,
        as_of=current.as_of,
        net_liquidation=nlv,
        equity_with_loan=elv,
        gross_position_value=moved(base.gross_position_value, d_gross),
        maint_margin_req=maint,
        init_margin_req=init,
        excess_liquidity=excess,
        available_funds=available,
        cushion=cushion,
        estimated=True,
        authoritative_as_of=base.as_of,
    )


def moved_since(baseline: Baseline, current: AccountSnapshot) -> bool:
    """True when any position's value differs from the baseline (an estimate is worth making)."""
    for position in current.positions:
        before = baseline.values.get(position.con_id)
        value = position.market_value_base
        if (
            value is not None
            and before is not None
            and abs(value - before) > 1e-9 * max(1.0, abs(before))
        ):
            return True
    return False


def _clamp(rate: float) -> float:
    return min(1.0, max(0.0, rate))
