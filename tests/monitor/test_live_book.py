"""The incremental estimate (:class:`monitor.estimate.LiveBook`) equals the full recompute.

Random books (stocks and options, long and short, multipliers, a foreign currency, configured
and unknown rates, trades and openings since the baseline), random streams of price moves:
after any sequence the live book's estimate equals ``estimate(baseline, current)`` on the same
values, figure by figure; and what counts as a material move.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import examples

from monitor.estimate import LiveBook, LiveBooks, estimate, make_baseline, rate_lookup
from rules.model import REQUIREMENT_FIELDS, AccountSnapshot, Position
from rules.samples import SAMPLE_TIME

FIGURES = (
    "net_liquidation",
    "equity_with_loan",
    "gross_position_value",
    *REQUIREMENT_FIELDS,
    "excess_liquidity",
    "available_funds",
    "look_ahead_excess_liquidity",
    "full_excess_liquidity",
    "cushion",
)
RATES = {"EUR": 1.1, "USD": 1.0}
#: 100 shares of a stock at 50 (a hand-made holding of the unit tests).
STOCK = {
    "con_id": 8,
    "symbol": "X",
    "sec_type": "STK",
    "quantity": 100.0,
    "multiplier": 1.0,
    "currency": "USD",
    "price": 50.0,
}


@st.composite
def holdings(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-12 holdings: (con_id, kind, quantity, multiplier, currency, unit price)."""
    count = draw(st.integers(1, 12))
    result = []
    for index in range(count):
        option = draw(st.booleans())
        result.append(
            {
                "con_id": 100 + index,
                "symbol": f"S{index}",
                "sec_type": "OPT" if option else "STK",
                "quantity": draw(st.sampled_from([-30.0, -2.0, 1.0, 5.0, 120.0, 12.5])),
                "multiplier": 100.0 if option else 1.0,
                "currency": draw(st.sampled_from(["USD", "EUR"])),
                "price": draw(st.floats(0.5, 500.0)),
            }
        )
    return result


def position(holding: dict[str, Any], price: float, quantity: float | None = None) -> Position:
    """A valued position of ``holding`` at ``price`` (its own currency, then base)."""
    held = holding["quantity"] if quantity is None else quantity
    value = held * holding["multiplier"] * price
    return Position(
        symbol=holding["symbol"],
        con_id=holding["con_id"],
        sec_type=holding["sec_type"],
        quantity=held,
        currency=holding["currency"],
        market_price=price,
        market_value=value,
        market_value_base=value * RATES[holding["currency"]],
        multiplier=holding["multiplier"],
    )


def authoritative(positions: tuple[Position, ...], cash: float) -> AccountSnapshot:
    """IB's figures for ``positions``: maintenance 30% of the gross, options out of ELV."""
    values = [p.market_value_base or 0.0 for p in positions]
    nlv = cash + sum(values)
    options = sum(v for p, v in zip(positions, values, strict=True) if p.sec_type == "OPT")
    gross = sum(abs(v) for v in values)
    maint = 0.3 * gross
    elv = nlv - options
    return AccountSnapshot(
        account="DU1",
        base_currency="USD",
        as_of=SAMPLE_TIME,
        positions=positions,
        exchange_rates=dict(RATES),
        net_liquidation=nlv,
        equity_with_loan=elv,
        gross_position_value=gross,
        maint_margin_req=maint,
        init_margin_req=1.2 * maint,
        look_ahead_maint_margin_req=maint,
        look_ahead_init_margin_req=1.2 * maint,
        full_maint_margin_req=maint,
        full_init_margin_req=1.2 * maint,
        excess_liquidity=elv - maint,
        available_funds=elv - 1.2 * maint,
        look_ahead_excess_liquidity=elv - maint,
        full_excess_liquidity=elv - maint,
        cushion=(elv - maint) / nlv if nlv > 0 else None,
    )


def assert_same(live: AccountSnapshot, full: AccountSnapshot) -> None:
    """Figure by figure, and every position's value, equal up to float rounding."""
    for name in FIGURES:
        got, want = getattr(live, name), getattr(full, name)
        if want is None:
            assert got is None, name
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-6), name
    assert [(p.con_id, p.market_value_base) for p in live.positions] == [
        (p.con_id, pytest.approx(p.market_value_base, rel=1e-12)) for p in full.positions
    ]
    assert live.estimated and full.estimated


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    book=holdings(),
    cash=st.floats(-50_000.0, 200_000.0),
    traded=st.booleans(),
    moves=st.lists(st.tuples(st.integers(0, 11), st.floats(0.5, 2.0)), max_size=40),
    configured=st.booleans(),
    shared=st.booleans(),
)
def test_the_live_book_equals_the_full_estimate_after_any_moves(
    book: list[dict[str, Any]],
    cash: float,
    traded: bool,
    moves: list[tuple[int, float]],
    configured: bool,
    shared: bool,
) -> None:
    """Any stream of price moves on a live book gives the full recompute's figures; a trade
    or a position opened since the baseline (built into the book) keeps its own treatment.
    ``shared``: the moves go through :class:`LiveBooks` (a contract's every holder at once,
    the daemon's hot path) instead of one book's :meth:`LiveBook.move`."""
    known = rate_lookup({"S0": 0.5} if configured else {}, {})
    start = tuple(position(h, h["price"]) for h in book)
    baseline = make_baseline(authoritative(start, cash + 100_000.0), known)
    current = start
    if traded:  # the first holding traded, and a new one opened, since IB's push
        first = book[0]
        opened = {**book[-1], "con_id": 999, "symbol": "NEW", "quantity": 7.0}
        book = [*book, opened]
        current = (position(first, first["price"], first["quantity"] * 2), *start[1:])
        current = (*current, position(opened, opened["price"]))
    snapshot = replace(baseline.snapshot, positions=current)
    live = LiveBook(baseline, snapshot)
    books = LiveBooks()
    books.put("DU1", live)
    prices = {h["con_id"]: h["price"] for h in book}
    quantities = {p.con_id: p.quantity for p in current}
    for index, factor in moves:
        holding = book[index % len(book)]
        con_id = holding["con_id"]
        prices[con_id] *= factor
        unit = prices[con_id] * holding["multiplier"]
        if shared:
            touched: set[str] = set()
            books.move_contract(con_id, unit, touched)
            assert touched == {"DU1"}
        else:
            assert live.move(con_id, unit)
    later = SAMPLE_TIME + timedelta(seconds=40)
    expected = tuple(position(h, prices[h["con_id"]], quantities[h["con_id"]]) for h in book)
    full = estimate(baseline, replace(snapshot, positions=expected, as_of=later))
    assert_same(live.snapshot(later), full)


def test_options_move_nlv_not_elv_in_the_live_book() -> None:
    """A long call losing half its value lowers NLV and GPV, not ELV or ExcessLiquidity."""
    call = {
        "con_id": 7,
        "symbol": "C",
        "sec_type": "OPT",
        "quantity": 10.0,
        "multiplier": 100.0,
        "currency": "USD",
        "price": 4.0,
    }
    start = (position(call, 4.0), position(STOCK, 50.0))
    baseline = make_baseline(authoritative(start, 10_000.0), rate_lookup({}, {}))
    live = LiveBook(baseline, baseline.snapshot)
    assert live.move(7, 2.0 * 100)  # value per contract held: price x multiplier
    moved = live.snapshot(SAMPLE_TIME)
    base = baseline.snapshot
    assert moved.net_liquidation == pytest.approx(base.net_liquidation - 2_000.0)
    assert moved.equity_with_loan == pytest.approx(base.equity_with_loan)
    assert moved.excess_liquidity == pytest.approx(base.excess_liquidity)
    assert moved.positions[0].market_price == pytest.approx(2.0)


def test_a_material_move_is_one_past_the_fraction_of_nlv() -> None:
    """With 0.01% of NLV (~$11 here) a $5 move is not material, a further $10 is; the
    evaluation resets the reference; 0 makes any move material; a holding the book cannot
    move alone (unknown at the baseline) is refused."""
    baseline = make_baseline(
        authoritative((position(STOCK, 50.0),), 105_000.0), rate_lookup({}, {})
    )
    live = LiveBook(baseline, baseline.snapshot, 0.0001)
    anything = LiveBook(baseline, baseline.snapshot)
    assert not live.material() and not anything.material()
    live.move(8, 50.05)  # +$5
    anything.move(8, 50.05)
    assert not live.material() and anything.material()
    live.move(8, 50.15)  # +$15 since the evaluation
    assert live.material()
    for book in (live, anything):
        book.snapshot(SAMPLE_TIME)
        book.mark_evaluated()
        assert not book.material()
    assert not live.move(12345, 1.0)
