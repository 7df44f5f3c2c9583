"""Estimated cushion between IB's 3-minute account updates.

IB pushes ExcessLiquidity, requirements and Cushion only every 3 minutes (or on a position
change), while each position's value streams about once a second (reqPnLSingle). The estimator
keeps the last authoritative snapshot as a baseline and, between updates, moves every figure
from its authoritative value by the change of the position values since then:

- NLV moves by the change of the signed values; ELV by that of the positions other than
  options (IB's EquityWithLoanValue excludes options: a long call losing value lowers NLV,
  not ELV or ExcessLiquidity),
- GPV by the change of the absolute values (options included),
- each requirement (maintenance, initial, look-ahead, full) by the change of each position's
  absolute value times that position's rate,
- ExcessLiquidity and AvailableFunds (and their look-ahead and full versions) by the change of
  ELV minus the change of their requirement; the cushion is the estimated EL / NLV.

Every figure moves from its own authoritative value, so at the baseline the estimate equals
IB's figures exactly, and a figure IB reports in a way these formulas would not reproduce (a
commodities segment, a house adjustment) keeps IB's offset instead of jumping.

A position's maintenance rate comes from configuration, else the leveraged-ETF rule
(Min(25% x factor, 100%) long, Min(30% x factor, 100%) short), else 0 for a long option (paid
in full, it carries no requirement), else the baseline's average
rate over the rest of the book (what is left of IB's requirement after the known rates,
divided by the rest of the gross value). The other requirements use the maintenance rate
scaled by their ratio to maintenance at the baseline. A uniform move of the whole book is
therefore exact even with unknown, differing rates; only moves that differ between positions
of different unknown rates leave an error (configure ``[monitor] maintenance_rates`` to
remove it). A short option's requirement depends on its underlying in ways the estimate does
not model: between IB's updates it moves at the average rate, and findings made on an
estimate of a book with options say so (:func:`options_caveat`).

A change of quantity (a trade) is treated as cash-neutral at the baseline price: only the
price change moves NLV, while the exposure it adds or removes moves GPV and the requirements.
IB pushes account values at once after a trade, so this only bridges a moment.

Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from math import isfinite
from typing import Any

from rules.figures import leveraged_maintenance
from rules.model import EXCESS_OF, REQUIREMENT_FIELDS, AccountSnapshot, Position, is_number

RateLookup = Callable[[Position], float | None]

#: Security types that are options: in NLV and GPV, never in EquityWithLoanValue.
OPTION_TYPES = frozenset({"OPT", "FOP"})

#: What an estimate of a book with options cannot know, said in its findings.
OPTIONS_CAVEAT = (
    "estimate between IB's updates: it moves NLV with the options' values, but cannot know "
    "how their requirements change (IB's next update will)"
)


def is_option(position: Position) -> bool:
    """True for an option (equity or futures option)."""
    return position.sec_type.upper() in OPTION_TYPES

#: The average maintenance rate assumed when the baseline cannot tell (no requirement known).
DEFAULT_RATE = 0.25

#: Requirement figures moved with the positions (maintenance first: the others scale from it).
REQUIREMENTS = REQUIREMENT_FIELDS

#: Figure = ELV minus a requirement: (figure, requirement).
_LIQUIDITY = EXCESS_OF


def rate_lookup(overrides: Mapping[str, float], factors: Mapping[str, float]) -> RateLookup:
    """A lookup of known maintenance rates: configured ones, then leveraged-ETF factors."""

    def lookup(position: Position) -> float | None:
        if is_option(position):
            return 0.0 if position.is_long else None  # a short option's is not known here
        if position.symbol in overrides:
            return _clamp(float(overrides[position.symbol]))
        factor = factors.get(position.symbol)
        if factor:
            return leveraged_maintenance(factor, long=position.is_long)
        return None

    return lookup


@dataclass(frozen=True, slots=True)
class Baseline:
    """The last authoritative snapshot and what the estimate needs from it.

    ``values`` holds each valued position's base-currency value then, ``quantities`` every
    position's quantity then (valued or not); ``unvalued`` the positions IB's figures include
    but whose value was not known yet (streamed values arrive after the account values, e.g.
    just after connecting); ``maintenance_rates`` the rate applied to each valued position;
    ``rest_rate`` the average rate of the positions without a known rate (used for a position
    opened later); ``ratios`` each other requirement's ratio to the maintenance requirement.
    """

    snapshot: AccountSnapshot
    values: dict[int, float]
    quantities: dict[int, float]
    unvalued: frozenset[int]
    maintenance_rates: dict[int, float]
    rest_rate: float
    ratios: dict[str, float]
    known_rate: RateLookup

    def filled(self, current: AccountSnapshot) -> Baseline:
        """This baseline with the first known values of its unvalued positions.

        IB's account figures already include those positions, so their first streamed value
        is taken as their value at the baseline (and the rates are split again): from then
        on only their moves count. Returns ``self`` when nothing new is known.
        """
        if not self.unvalued:
            return self
        found = {
            p.con_id: p
            for p in current.positions
            if p.con_id in self.unvalued
            and is_number(p.market_value_base)
            and p.quantity == self.quantities.get(p.con_id)
        }
        if not found:
            return self
        positions = tuple(found.get(p.con_id, p) for p in self.snapshot.positions)
        return make_baseline(replace(self.snapshot, positions=positions), self.known_rate)


def make_baseline(snapshot: AccountSnapshot, known_rate: RateLookup) -> Baseline:
    """Split IB's requirement over the positions of ``snapshot`` (known rates first)."""
    valued = [p for p in snapshot.positions if is_number(p.market_value_base)]
    values: dict[int, float] = {
        p.con_id: value for p in valued if is_number(value := p.market_value_base)
    }
    quantities = {p.con_id: p.quantity for p in snapshot.positions}
    unvalued = frozenset(p.con_id for p in snapshot.positions if p.con_id not in values)
    maintenance: dict[int, float] = {}
    known_gross = known_maint = rest_gross = 0.0
    for position in valued:
        size = abs(values[position.con_id])
        rate = known_rate(position)
        if rate is None:
            rest_gross += size
            continue
        maintenance[position.con_id] = rate
        known_gross += size
        known_maint += rate * size
    maint_total = snapshot.maint_margin_req if is_number(snapshot.maint_margin_req) else None
    if maint_total is not None and rest_gross > 0:
        rest_rate = _clamp((maint_total - known_maint) / rest_gross)
    elif maint_total is not None and known_gross > 0:
        rest_rate = _clamp(maint_total / known_gross)  # every rate known: the book's average
    else:
        rest_rate = DEFAULT_RATE
    for con_id in values:
        maintenance.setdefault(con_id, rest_rate)
    ratios: dict[str, float] = {}
    for name in REQUIREMENTS[1:]:
        total = getattr(snapshot, name)
        if is_number(total) and maint_total:
            ratios[name] = max(0.0, total / maint_total)
        else:
            ratios[name] = 1.0
    return Baseline(
        snapshot, values, quantities, unvalued, maintenance, rest_rate, ratios, known_rate
    )


@dataclass(slots=True)
class Moves:
    """What moved since the baseline, in base currency: the signed values (NLV), the options'
    share of that (not in ELV), the absolute values (GPV), and the absolute values by
    maintenance rate (the requirements)."""

    signed: float = 0.0
    options: float = 0.0
    gross: float = 0.0
    by_rate: dict[float, float] = field(default_factory=dict)


def measure_moves(baseline: Baseline, current: AccountSnapshot) -> Moves:
    """The moves of ``current``'s positions since ``baseline`` (the whole book: O(holdings))."""
    values, quantities, rates = baseline.values, baseline.quantities, baseline.maintenance_rates
    moves = Moves()
    by_rate = moves.by_rate
    seen: set[int] = set()
    for position in current.positions:
        con_id = position.con_id
        seen.add(con_id)
        value = position.market_value_base
        if value is None or not isfinite(value):
            continue  # no value now: nothing known about its move
        before = values.get(con_id)
        if before is None and con_id in baseline.unvalued:
            continue  # its value at the baseline is unknown, so is its move (see `filled`)
        if before is None:  # opened since the baseline: a cash-neutral trade at today's price
            rate = opened_rate(baseline, position)
            moves.gross += abs(value)
            by_rate[rate] = by_rate.get(rate, 0.0) + abs(value)
            continue
        quantity_before = quantities[con_id]
        if quantity_before and position.quantity != quantity_before:
            # a trade: NLV moves only by the price change of the quantity held now
            change = value - before * (position.quantity / quantity_before)
        else:
            change = value - before
        moves.signed += change
        if is_option(position):
            moves.options += change
        change_abs = abs(value) - abs(before)
        moves.gross += change_abs
        rate = rates[con_id]
        by_rate[rate] = by_rate.get(rate, 0.0) + change_abs
    if not seen.issuperset(values):
        for con_id, before in values.items():
            if con_id not in seen:  # closed since the baseline: its exposure is gone
                moves.gross -= abs(before)
                rate = rates[con_id]
                by_rate[rate] = by_rate.get(rate, 0.0) - abs(before)
    return moves


def opened_rate(baseline: Baseline, position: Position) -> float:
    """The maintenance rate of a position opened since the baseline."""
    known = baseline.known_rate(position)
    return baseline.rest_rate if known is None else known


def estimate(baseline: Baseline, current: AccountSnapshot) -> AccountSnapshot:
    """The baseline's figures moved by the position values of ``current``, marked estimated.

    ``current`` carries the latest position values; its account figures are ignored (IB has
    not pushed new ones yet: they are the baseline's).
    """
    return apply_moves(baseline, current, measure_moves(baseline, current))


def apply_moves(baseline: Baseline, current: AccountSnapshot, moves: Moves) -> AccountSnapshot:
    """``current`` with the baseline's figures moved by ``moves``, marked estimated."""
    base = baseline.snapshot
    by_rate = moves.by_rate
    d_req = [sum(rate * change for rate, change in by_rate.items())]
    for name in REQUIREMENTS[1:]:
        ratio = baseline.ratios.get(name, 1.0)
        d_req.append(sum(min(1.0, rate * ratio) * change for rate, change in by_rate.items()))

    def moved(figure: float | None, delta: float) -> float | None:
        return figure + delta if is_number(figure) else None

    # AccountSnapshot field -> its moved value (float | None); Any because replace() checks
    # each keyword against its own field type, which a dict of figures cannot express.
    d_equity = moves.signed - moves.options  # what moves ELV: everything but the options
    changes: dict[str, Any] = {
        "net_liquidation": moved(base.net_liquidation, moves.signed),
        "equity_with_loan": moved(base.equity_with_loan, d_equity),
        "gross_position_value": moved(base.gross_position_value, moves.gross),
    }
    for name, delta in zip(REQUIREMENTS, d_req, strict=True):
        changes[name] = moved(getattr(base, name), delta)
    requirement_delta = dict(zip(REQUIREMENTS, d_req, strict=True))
    base_excess = base.excess_liquidity
    if not is_number(base_excess) and is_number(base.cushion) and is_number(base.net_liquidation):
        base_excess = base.cushion * base.net_liquidation
    for name, requirement in _LIQUIDITY:
        figure = base_excess if name == "excess_liquidity" else getattr(base, name)
        changes[name] = moved(figure, d_equity - requirement_delta[requirement])
    nlv, excess = changes["net_liquidation"], changes["excess_liquidity"]
    cushion = excess / nlv if excess is not None and nlv is not None and nlv > 0 else None
    return replace(
        current,
        **changes,
        cushion=cushion,
        look_ahead_next_change=base.look_ahead_next_change,
        sma=base.sma,
        cash_balance=base.cash_balance,
        accrued_cash=base.accrued_cash,
        estimated=True,
        authoritative_as_of=base.as_of,
    )


#: A holding's class in its book: (maintenance rate, sign of its value, in NLV since the
#: baseline, option). Holdings of one class move the figures alike, so a price update adds
#: each holding's change of value to its class's running total (one addition per holder).
_Bucket = tuple[float, float, bool, bool]


class _Holding:
    """One position of a :class:`LiveBook`: how a new value of it moves the book's figures.

    ``scale`` turns the contract's value per unit held into this holding's base-currency
    value (quantity x exchange rate); ``sign`` is the sign of that value for a non-negative
    price, so the change of its absolute value is ``sign`` times the change of its value.
    ``cell`` is its class's running total of value changes (see ``_Bucket``); ``moved`` its
    book's one-element flag "a holding moved materially". Neither refers to the book itself:
    a book and its holdings form no reference cycle, so a replaced book is freed at once
    (in a cycle, 100 books of 200 holdings waited for the cyclic collector: ~13 MB of RSS).
    """

    __slots__ = (
        "cell", "evaluated", "index", "limit", "moved", "option", "rate", "scale", "sign",
        "signed", "value",
    )

    def __init__(
        self, book: LiveBook, index: int, value: float, scale: float, rate: float, signed: bool,
        option: bool,
    ) -> None:
        self.moved = book.moved
        self.index, self.value, self.evaluated, self.scale = index, value, value, scale
        self.sign = 1.0 if scale > 0 else -1.0
        self.limit = book.limit
        self.rate, self.signed, self.option = rate, signed, option
        bucket = (rate, self.sign, signed, option)
        self.cell = book.cells.get(bucket) or book.cells.setdefault(bucket, [0.0])


class LiveBook:
    """An account's estimate kept up to date one holding at a time.

    Built from a baseline and a snapshot of the current positions (``measure_moves`` once,
    O(holdings)); then a new streamed value of one holding moves the figures by that holding's
    delta (O(1): :meth:`set_value`, or :class:`LiveBooks` for a contract's every holder), so a
    price update costs O(holders), not O(book). :meth:`snapshot` equals
    ``estimate(baseline, current)`` on the same values (up to float rounding; IB's next push
    re-bases it). A holding it cannot move alone (its value at the baseline unknown, or no
    value yet) is left out: the caller rebuilds from a full snapshot.

    :meth:`material` says whether the account's inputs moved by more than ``min_move`` of its
    NLV since :meth:`mark_evaluated`: a figure (NLV, ELV, GPV, maintenance) or one holding.
    """

    def __init__(
        self, baseline: Baseline, current: AccountSnapshot, min_move: float = 0.0
    ) -> None:
        self.baseline = baseline
        self.current = current
        self.base_moves = measure_moves(baseline, current)  # and one holding's slow moves
        self.cells: dict[_Bucket, list[float]] = {}  # price updates' changes, by class
        self.positions = list(current.positions)
        self.holdings: dict[int, _Holding] = {}
        nlv = baseline.snapshot.net_liquidation
        self.limit = min_move * abs(nlv) if is_number(nlv) else 0.0
        self.moved = [False]  # a holding moved by more than the limit (shared with holdings)
        rates = current.exchange_rates
        values = baseline.values
        for index, position in enumerate(self.positions):
            con_id = position.con_id
            value, own = position.market_value_base, position.market_value
            fx = rates.get(position.currency)
            if not (is_number(value) and is_number(own) and fx and position.quantity):
                continue
            before = values.get(con_id)
            if before is None and con_id in baseline.unvalued:
                continue
            if before is None:
                rate, signed = opened_rate(baseline, position), False
            else:
                rate, signed = baseline.maintenance_rates[con_id], True
            self.base_moves.by_rate.setdefault(rate, 0.0)
            self.holdings[con_id] = _Holding(
                self, index, value, position.quantity * fx, rate, signed, is_option(position)
            )
        self._evaluated_figures = self._figures()

    def move(self, con_id: int, unit_value: float) -> bool:
        """A holding's new value from its contract's value per unit held (own currency);
        False when this book cannot move it alone."""
        holding = self.holdings.get(con_id)
        if holding is None:
            return False
        return self._set(holding, unit_value * holding.scale)

    def set_value(self, con_id: int, value: float) -> bool:
        """A holding's new market value (own currency); False when it cannot be moved alone."""
        holding = self.holdings.get(con_id)
        if holding is None:
            return False
        return self._set(holding, value * holding.scale / self.positions[holding.index].quantity)

    def _set(self, holding: _Holding, value: float) -> bool:
        if not isfinite(value):
            return False
        change = value - holding.value
        change_abs = abs(value) - abs(holding.value)
        moves = self.base_moves
        if holding.signed:
            moves.signed += change
            if holding.option:
                moves.options += change
        moves.gross += change_abs
        moves.by_rate[holding.rate] += change_abs
        holding.value = value
        if abs(value - holding.evaluated) > self.limit:
            self.moved[0] = True
        return True

    def moves(self) -> Moves:
        """What moved since the baseline: the measured and slow moves plus the classes'
        running totals."""
        base = self.base_moves
        moves = Moves(base.signed, base.options, base.gross, dict(base.by_rate))
        by_rate = moves.by_rate
        for (rate, sign, signed, option), (total,) in self.cells.items():
            if signed:
                moves.signed += total
                if option:
                    moves.options += total
            moves.gross += sign * total
            by_rate[rate] = by_rate.get(rate, 0.0) + sign * total
        return moves

    def _figures(self) -> tuple[float, float, float, float]:
        moves = self.moves()
        maintenance = sum(rate * change for rate, change in moves.by_rate.items())
        return (moves.signed, moves.signed - moves.options, moves.gross, maintenance)

    def material(self) -> bool:
        """True when a figure or a holding moved by more than ``min_move`` of NLV since the
        last evaluation (any move at all when ``min_move`` is 0)."""
        if self.moved[0]:
            return True
        now = self._figures()
        limit = self.limit
        return any(abs(a - b) > limit for a, b in zip(now, self._evaluated_figures, strict=True))

    def snapshot(self, as_of: datetime) -> AccountSnapshot:
        """The estimate now (positions carrying their latest values), stamped ``as_of``.

        The moved positions are made anew each time and not kept here (the caller keeps the
        snapshot it needs): a book holds the positions it was built with, not a second copy.
        """
        positions = list(self.positions)
        for holding in self.holdings.values():
            p = positions[holding.index]
            if p.market_value_base == holding.value:
                continue
            fx = holding.scale / p.quantity
            own = holding.value / fx
            units = p.quantity * p.multiplier
            positions[holding.index] = Position(
                p.symbol, p.con_id, p.sec_type, p.quantity, p.currency,
                own / units if units else p.market_price, own, holding.value,
                p.average_cost, p.stock_type, p.multiplier, p.exchange,
            )  # positional: dataclasses.replace costs ten times more, 200 times a look
        current = replace(self.current, positions=tuple(positions), as_of=as_of)
        return apply_moves(self.baseline, current, self.moves())

    def mark_evaluated(self) -> None:
        """The rules have seen the book as it is now."""
        for holding in self.holdings.values():
            holding.evaluated = holding.value
        self.moved[0] = False
        self._evaluated_figures = self._figures()


class LiveBooks:
    """Every account's live book, indexed by contract, so that a contract's new price moves
    each holder's book in one pass (:meth:`move_contract`: O(holders), no per-holding calls)."""

    def __init__(self) -> None:
        self.books: dict[str, LiveBook] = {}
        self._by_contract: dict[int, dict[str, _Holding]] = {}

    def get(self, account: str) -> LiveBook | None:
        """The account's live book, if it has one."""
        return self.books.get(account)

    def put(self, account: str, book: LiveBook) -> None:
        """Make ``book`` the account's live book (replacing its former one)."""
        self.drop(account)
        self.books[account] = book
        for con_id, holding in book.holdings.items():
            self._by_contract.setdefault(con_id, {})[account] = holding

    def drop(self, account: str) -> None:
        """Forget the account's live book."""
        book = self.books.pop(account, None)
        if book is None:
            return
        for con_id in book.holdings:
            holders = self._by_contract.get(con_id)
            if holders is not None:
                holders.pop(account, None)
                if not holders:
                    del self._by_contract[con_id]

    def holder_count(self, con_id: int) -> int:
        """How many live books hold ``con_id`` (movable by its price)."""
        return len(self._by_contract.get(con_id, ()))

    def holders(self, con_id: int) -> set[str]:
        """The accounts whose live books hold ``con_id``."""
        return set(self._by_contract.get(con_id, ()))

    def move_contract(self, con_id: int, unit_value: float, touched: set[str]) -> None:
        """Move every holder's book by its holding's delta at ``unit_value`` (the contract's
        value per unit held, own currency); add the accounts that moved to ``touched``."""
        holdings = self._by_contract.get(con_id)
        if not holdings:
            return
        if not (unit_value >= 0 and isfinite(unit_value)):
            for account in holdings:
                if self.books[account].move(con_id, unit_value):
                    touched.add(account)
            return
        for holding in holdings.values():  # the hot loop: one addition to its class's total
            value = unit_value * holding.scale
            holding.cell[0] += value - holding.value
            holding.value = value
            if abs(value - holding.evaluated) > holding.limit:
                holding.moved[0] = True
        touched.update(holdings)


def options_caveat(snapshot: AccountSnapshot) -> str | None:
    """What an estimate of ``snapshot`` cannot know, when it holds options (else ``None``)."""
    if snapshot.estimated and any(is_option(p) for p in snapshot.positions):
        return OPTIONS_CAVEAT
    return None


def moved_since(baseline: Baseline, current: AccountSnapshot) -> bool:
    """True when a position's value or quantity differs from the baseline (worth estimating)."""
    present = 0
    for position in current.positions:
        before = baseline.values.get(position.con_id)
        value = position.market_value_base
        if before is None:
            if is_number(value) and position.con_id not in baseline.unvalued:
                return True  # opened since the baseline
            continue
        present += 1
        if position.quantity != baseline.quantities.get(position.con_id, position.quantity):
            return True
        if is_number(value) and abs(value - before) > 1e-9 * max(1.0, abs(before)):
            return True
    return present < len(baseline.values)  # a position was closed


@dataclass(frozen=True, slots=True)
class EstimateError:
    """How far the estimate was from IB's new values.

    ``estimated`` is the estimate remade from the previous baseline with the position values
    of IB's new snapshot, so both sides describe the same prices; ``difference`` is its
    (estimated - reported) ExcessLiquidity and ``of_nlv`` that as a fraction of IB's NLV.
    """

    estimated: AccountSnapshot
    difference: float
    of_nlv: float


def estimate_error(baseline: Baseline, truth: AccountSnapshot) -> EstimateError | None:
    """The estimate's error against IB's new values ``truth``; ``None`` when either side
    lacks ExcessLiquidity."""
    guess = estimate(baseline, truth)
    estimated, reported = guess.excess_liquidity, truth.excess_liquidity
    if not (is_number(estimated) and is_number(reported)):
        return None
    nlv = truth.net_liquidation
    scale = abs(nlv) if is_number(nlv) else 0.0
    difference = estimated - reported
    return EstimateError(guess, difference, difference / (scale or 1.0))


def _clamp(rate: float) -> float:
    return min(1.0, max(0.0, rate))
