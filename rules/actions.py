"""Structured actions: how rules build them, and what executing one does to a snapshot.

A finding's ``remedies`` are alternatives; each is a tuple of :class:`~rules.model.Action` done
together. Amounts are money in the account's base currency, rounded **up** to the cent, so an
action sized to a level is never half a cent short of it.

:func:`apply_action` is the arithmetic of margin-rules.md section 6, on a whole snapshot (the
property test of every rule's remedies runs on it):

- a sale of S of a long holding at maintenance rate m: cash + S, GPV - S, requirements - m x S,
  ExcessLiquidity and AvailableFunds + m x S, SMA + 50% x S (Reg T); NLV and ELV unchanged;
- a buy-back of B of a short at rate m: cash - B, GPV - B, requirements - m x B, EL + m x B,
  SMA + 50% x B; NLV and ELV unchanged;
- a purchase of P at rate m: cash - P, GPV + P, requirements + m x P, EL - m x P;
- a deposit of D: cash, NLV, ELV, EL, AvailableFunds, SMA and the look-ahead excess + D.

A trade that names no holding (or several) is taken from the eligible holdings lowest rate
first: the worst case for what it frees. Standard library only.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import replace

from rules import figures
from rules.common import EQUITY_TYPES, base_value
from rules.model import (
    EXCESS_OF,
    REQUIREMENT_FIELDS,
    AccountSnapshot,
    Action,
    ActionKind,
    Position,
    Remedy,
    is_number,
)

#: The share of a sale's (or buy-back's) value credited to SMA under Reg T.
SMA_CREDIT = figures.REG_T_BASE

#: The excess figures (ExcessLiquidity and the like): a trade moves them against its
#: requirement, a deposit with its cash.
_EXCESSES = tuple(figure for figure, _ in EXCESS_OF)


def up_to_cent(amount: float) -> float:
    """``amount`` rounded up to the cent; 0 when there is nothing to do.

    Float noise below a cent boundary (48,000.0000000001) does not add a cent.
    """
    if not amount > 0:
        return 0.0
    cents = amount * 100
    if not cents < 2**52:  # no cent left to round at this size (or not a number at all)
        return amount
    return max(1, math.ceil(round(cents, 6))) / 100  # something to do is at least a cent


def trade(
    kind: ActionKind,
    amount: float,
    currency: str,
    *,
    symbols: Iterable[str] = (),
    rate: float | None = None,
    quantity: float | None = None,
    held: float | None = None,
) -> Action:
    """An action of ``amount`` (rounded up to the cent) in ``currency``. Given what is
    ``held``, a trade that fits is never rounded beyond it (the rounding sells the rest)."""
    rounded = up_to_cent(amount)
    if held is not None and amount <= held < rounded:
        rounded = held
    return Action(kind, rounded, currency, tuple(symbols), rate, quantity)


def deposit(amount: float, currency: str) -> Action:
    """A deposit of ``amount`` (rounded up to the cent)."""
    return trade("deposit", amount, currency)


def remedy(*actions: Action) -> Remedy:
    """One remedy: the actions done together (those of no amount and no quantity dropped)."""
    return Remedy(tuple(a for a in actions if a.amount > 0 or (a.quantity or 0) > 0))


# -- executing an action -------------------------------------------------------------------------


def apply_remedy(
    snapshot: AccountSnapshot, chosen: Remedy, rates: Mapping[str, float]
) -> AccountSnapshot:
    """The snapshot after every action of ``chosen``, in order (see :func:`apply_action`)."""
    for action in chosen.actions:
        snapshot = apply_action(snapshot, action, rates)
    return snapshot


def apply_action(
    snapshot: AccountSnapshot, action: Action, rates: Mapping[str, float]
) -> AccountSnapshot:
    """The snapshot after ``action`` is executed at today's prices.

    ``rates`` maps a symbol to its maintenance rate (missing: IB's Reg T floor of its side,
    25% long or 30% short). Raises ValueError when the holdings cannot supply the trade: an
    action must never ask for more than is held.
    """
    if action.kind == "deposit":
        return _deposit(snapshot, action.amount)
    if action.kind == "buy":
        return _buy(snapshot, action, rates)
    return _reduce(snapshot, action, rates)


def _shift(snapshot: AccountSnapshot, **deltas: float) -> AccountSnapshot:
    """``snapshot`` with each named figure moved by its delta (unknown figures stay unknown)."""
    changes = {
        name: getattr(snapshot, name) + delta
        for name, delta in deltas.items()
        if is_number(getattr(snapshot, name))
    }
    moved = replace(snapshot, **changes)
    return replace(moved, cushion=_cushion(moved))


def _cushion(snapshot: AccountSnapshot) -> float | None:
    """IB's Cushion for the moved figures: EL / NLV, none without a positive NLV."""
    nlv, excess = snapshot.net_liquidation, snapshot.excess_liquidity
    if is_number(nlv) and nlv > 0 and is_number(excess):
        return excess / nlv
    return None


def _deposit(snapshot: AccountSnapshot, amount: float) -> AccountSnapshot:
    deltas = dict.fromkeys(
        ("cash_balance", "net_liquidation", "equity_with_loan", "sma", *_EXCESSES), amount
    )
    return _shift(snapshot, **deltas)


def _trade_deltas(amount: float, requirement: float, cash: float) -> dict[str, float]:
    """Figures a trade of ``amount`` moves: GPV, the requirements by ``requirement``, the
    excesses the other way, and cash by ``cash``."""
    deltas = {name: requirement for name in REQUIREMENT_FIELDS}
    deltas.update({name: -requirement for name in _EXCESSES})
    deltas["gross_position_value"] = amount
    deltas["cash_balance"] = cash
    return deltas


def _reduce(
    snapshot: AccountSnapshot, action: Action, rates: Mapping[str, float]
) -> AccountSnapshot:
    """Sell longs and/or buy back shorts for ``action.amount``, lowest rate first."""
    wanted = {symbol.upper() for symbol in action.symbols}
    eligible: list[tuple[float, int, Position, float]] = []
    for index, position in enumerate(snapshot.positions):
        value = base_value(position, snapshot)
        if value is None or value == 0 or position.sec_type not in EQUITY_TYPES:
            continue
        if wanted and position.symbol.upper() not in wanted:
            continue
        if (action.kind == "sell" and value < 0) or (action.kind == "buy_back" and value > 0):
            continue
        eligible.append((_rate(position, value, rates), index, position, value))
    eligible.sort(key=lambda item: (item[0], item[1]))
    remaining = action.amount
    positions = list(snapshot.positions)
    deltas: dict[str, float] = {}
    for rate, index, position, value in eligible:
        if remaining <= 0:
            break
        taken = min(remaining, abs(value))
        remaining -= taken
        positions[index] = _resized(position, value, abs(value) - taken)
        cash = taken if value > 0 else -taken
        for name, delta in _trade_deltas(-taken, -rate * taken, cash).items():
            deltas[name] = deltas.get(name, 0.0) + delta
        deltas["sma"] = deltas.get("sma", 0.0) + SMA_CREDIT * taken
    if remaining > 1e-9 * max(1.0, action.amount):
        raise ValueError(
            f"{action.kind} {action.amount:,.2f} asks for more than the eligible holdings "
            f"({action.amount - remaining:,.2f})"
        )
    kept = tuple(position for position in positions if position.quantity != 0)
    return _shift(replace(snapshot, positions=kept), **deltas)


def _buy(snapshot: AccountSnapshot, action: Action, rates: Mapping[str, float]) -> AccountSnapshot:
    """Buy ``action.amount`` of its one symbol (a new position when not held)."""
    (symbol,) = action.symbols
    positions = list(snapshot.positions)
    for index, position in enumerate(positions):
        value = base_value(position, snapshot)
        if position.symbol.upper() == symbol.upper() and value is not None and value > 0:
            positions[index] = _resized(position, value, value + action.amount)
            rate = _rate(position, value, rates)
            break
    else:
        positions.append(
            Position(
                symbol=symbol,
                con_id=zlib.crc32(symbol.encode()),
                sec_type="STK",
                quantity=action.amount / 100.0,
                currency=snapshot.base_currency,
                market_price=100.0,
                market_value=action.amount,
                market_value_base=action.amount,
            )
        )
        rate = rates.get(symbol.upper(), figures.MAINTENANCE_LONG_BASE)
    deltas = _trade_deltas(action.amount, rate * action.amount, -action.amount)
    return _shift(replace(snapshot, positions=tuple(positions)), **deltas)


def _rate(position: Position, value: float, rates: Mapping[str, float]) -> float:
    floor = figures.MAINTENANCE_LONG_BASE if value > 0 else figures.MAINTENANCE_SHORT_BASE
    return rates.get(position.symbol.upper(), floor)


def _resized(position: Position, value: float, size: float) -> Position:
    """``position`` scaled to an absolute base value of ``size`` (its side kept)."""
    if size <= 1e-9:
        return replace(position, quantity=0.0, market_value=0.0, market_value_base=0.0)
    scale = size / abs(value)
    local = position.market_value
    return replace(
        position,
        quantity=position.quantity * scale,
        market_value=local * scale if local is not None else None,
        market_value_base=math.copysign(size, value),
    )
