"""Every suggested action, once executed, clears its alert: a property over random books.

A book is longs and shorts of stocks and funds (leveraged and inverse ETFs among them) with a
maintenance rate each (Reg T: 25% or more long, 30% or more short; portfolio margin: 15% or
more; a leveraged fund its own), cash from a deposit to a deep loan, and NLV from healthy to
negative. For each rule that alerts, each of its remedies is applied to the snapshot by
:func:`rules.actions.apply_remedy` (a sale lowers GPV and the requirement by m x S and leaves
NLV unchanged; a buy-back of a short the same with cash going out; a deposit raises NLV, ELV
and EL by D), a trade that names no holding is taken from the lowest-rate holdings first (the
worst case for what it frees), and the rule is run again: its value must be at or beyond the
clear level (the finding ok against the clear levels), and no trade may ask for more than is
held (``apply_remedy`` raises then).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import examples

from rules import RulesConfig, evaluate, figures, run_rule
from rules.actions import apply_action, apply_remedy, up_to_cent
from rules.checks.allocation_drift import AllocationDriftConfig
from rules.checks.cash_reserve import CashReserveConfig
from rules.checks.financing_cost import FinancingCostConfig
from rules.checks.pm_equity_floor import PmEquityFloorConfig
from rules.checks.shares_outstanding import SharesOutstandingConfig
from rules.model import AccountSnapshot, Action, EvaluationContext, Severity
from rules.rates import merged_factors
from rules.samples import SAMPLE_TIME, sample_snapshot, stock

NOON = EvaluationContext(now=SAMPLE_TIME, last_update=SAMPLE_TIME)  # Monday 12:00 New York
BEFORE_CLOSE = replace(NOON, now=datetime(2026, 5, 11, 19, 45, tzinfo=UTC))  # 15:45, in windows
IN_REG_T_WINDOW = replace(NOON, now=datetime(2026, 5, 11, 20, 30, tzinfo=UTC))  # 16:30

#: Rules whose action is the seed's prescribed response rather than a fix of what they measure
#: (a market drawdown or a cost rise is answered by a loan cut, not undone; a rise of IB's
#: terms resolves at IB's next update, its trim restores the cushion the cushion rule
#: measures) or that have no money action.
NO_FIXING_ACTION = {"drawdown", "financing_cost", "margin_terms", "stale_data"}

STOCKS = ("AAA", "BBB", "CCC", "DDD", "SCHD", "VOO", "BND", "SGOV")
FUNDS = ("TQQQ", "SQQQ", "SSO", "SH")  # 3x, -3x, 2x, and a -1x fund that is not leveraged
FACTORS = merged_factors()


def true_rate(symbol: str, value: float, draw_rate: float, pm: bool) -> float:
    """A holding's maintenance rate: a leveraged fund's own (IB's Reg T schedule, as the
    leveraged-ETF rule projects it), anything else at least the floor of its side."""
    factor = FACTORS.get(symbol)
    if factor is not None and abs(factor) > 1:
        return figures.leveraged_maintenance(factor, long=value > 0)
    floor = 0.15 if pm else (0.25 if value > 0 else 0.30)
    return floor + (1 - floor) * draw_rate


@st.composite
def books(draw: st.DrawFn) -> tuple[AccountSnapshot, dict[str, float], bool]:
    """A consistent account: values, rates, cash, NLV = cash + positions, ELV = NLV (no
    options), maintenance = sum of rate x |value|, EL = ELV - maintenance."""
    pm = draw(st.booleans())
    symbols = draw(st.lists(st.sampled_from(STOCKS + FUNDS), min_size=1, max_size=6, unique=True))
    size = st.floats(500, 400_000)
    positions, rates = [], {}
    for symbol in symbols:
        value = draw(size) * draw(st.sampled_from([1, 1, -1]))
        rates[symbol] = true_rate(symbol, value, draw(st.floats(0, 1)), pm)
        positions.append(stock(symbol, value, quantity=value / 100.0))
    longs = sum(p.market_value_base for p in positions if p.market_value_base > 0)
    shorts = -sum(p.market_value_base for p in positions if p.market_value_base < 0)
    gross = longs + shorts
    nlv = draw(st.one_of(st.floats(-0.5, 2.5), st.floats(0.01, 0.6))) * gross
    maint = sum(rates[p.symbol] * abs(p.market_value_base) for p in positions)
    excess = nlv - maint
    look_ahead_extra = draw(st.sampled_from([0.0, 0.0, 0.25])) * maint
    snapshot = sample_snapshot(
        positions,
        net_liquidation=nlv,
        equity_with_loan=nlv,
        gross_position_value=gross,
        init_margin_req=maint,
        maint_margin_req=maint,
        excess_liquidity=excess,
        available_funds=excess,
        cushion=excess / nlv if nlv > 0 else None,
        cash_balance=nlv - (longs - shorts),
        sma=draw(st.floats(-0.2, 0.3)) * gross,
        look_ahead_init_margin_req=maint + look_ahead_extra,
        look_ahead_maint_margin_req=maint + look_ahead_extra,
        look_ahead_excess_liquidity=excess - look_ahead_extra,
        look_ahead_available_funds=excess - look_ahead_extra,
    )
    return snapshot, rates, pm


def configured(pm: bool, reserve: bool) -> RulesConfig:
    """Every rule on, with the figures the optional ones need."""
    return RulesConfig(
        financing_cost=FinancingCostConfig(benchmark_rate=0.05),
        cash_reserve=CashReserveConfig(reserve_symbols=("SGOV",) if reserve else ()),
        allocation_drift=AllocationDriftConfig(targets={"SCHD": 0.4, "VOO": 0.4, "BND": 0.2}),
        shares_outstanding=SharesOutstandingConfig(
            shares_outstanding={symbol: 100_000.0 for symbol in STOCKS + FUNDS}
        ),
        pm_equity_floor=PmEquityFloorConfig(portfolio_margin_accounts=("DU111",) if pm else ()),
    )


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    book=books(),
    reserve=st.booleans(),
    context=st.sampled_from([NOON, BEFORE_CLOSE, IN_REG_T_WINDOW]),
)
def test_every_remedy_clears_its_alert(book, reserve, context):
    """For random books and every rule that alerts, each remedy executed on the snapshot
    brings the rule to its clear level, and never trades more than is held."""
    snapshot, rates, pm = book
    config = configured(pm, reserve)
    for finding in evaluate(snapshot, context, config):
        if finding.severity not in (Severity.WARNING, Severity.CRITICAL):
            continue
        if finding.rule in NO_FIXING_ACTION:
            continue
        assert finding.remedies, finding
        for remedy in finding.remedies:
            after = apply_remedy(snapshot, remedy, rates)
            again = run_rule(finding.rule, after, context, config)
            assert again.severity is Severity.OK and again.held_severity is Severity.OK, (
                finding.action,
                remedy,
                again,
            )
            for action in remedy.actions:
                assert whole_cents(action) or action.amount == pytest.approx(
                    everything(snapshot, action)
                )


def whole_cents(action: Action) -> bool:
    """The amount is rounded to the cent (up: the sizing tests check the direction)."""
    return action.amount == up_to_cent(action.amount)


def everything(snapshot: AccountSnapshot, action: Action) -> float:
    """The whole of the holdings a trade may draw on (a trade of all of them is not rounded
    up beyond them)."""
    wanted = set(action.symbols)
    sides = {"sell": (1,), "buy_back": (-1,), "reduce": (1, -1)}.get(action.kind, ())
    return sum(
        abs(value)
        for p in snapshot.positions
        if (value := p.market_value_base or 0.0) and (not wanted or p.symbol in wanted)
        if (1 if value > 0 else -1) in sides
    )


def test_applying_actions_follows_margin_rules_section_6():
    """Worked by hand on NLV 100,000, GPV 150,000 (AAA 100,000 at 25%, ZZZ short 50,000 at
    30%: maintenance 40,000), EL 60,000, cash 50,000:
    - selling 20,000 of AAA: GPV 130,000, maintenance 35,000, EL 65,000, cash 70,000, NLV and
      ELV unchanged, SMA + 10,000 (50% under Reg T);
    - buying back 10,000 of ZZZ: GPV 140,000, maintenance 37,000, EL 63,000, cash 40,000;
    - depositing 5,000: NLV, ELV, EL and cash + 5,000, GPV and maintenance unchanged."""
    snapshot = sample_snapshot(
        (stock("AAA", 100_000.0), stock("ZZZ", -50_000.0)),
        equity_with_loan=100_000.0,
        maint_margin_req=40_000.0,
        excess_liquidity=60_000.0,
        cash_balance=50_000.0,
        sma=0.0,
    )
    rates = {"AAA": 0.25, "ZZZ": 0.30}
    sold = apply_action(snapshot, Action("sell", 20_000.0, "USD"), rates)
    assert (sold.gross_position_value, sold.maint_margin_req, sold.excess_liquidity) == (
        130_000.0,
        35_000.0,
        65_000.0,
    )
    assert (sold.net_liquidation, sold.equity_with_loan, sold.cash_balance, sold.sma) == (
        100_000.0,
        100_000.0,
        70_000.0,
        10_000.0,
    )
    assert [p.market_value_base for p in sold.positions] == [80_000.0, -50_000.0]
    covered = apply_action(snapshot, Action("buy_back", 10_000.0, "USD"), rates)
    assert (covered.gross_position_value, covered.maint_margin_req) == (140_000.0, 37_000.0)
    assert (covered.excess_liquidity, covered.cash_balance) == (63_000.0, 40_000.0)
    assert covered.net_liquidation == 100_000.0
    paid = apply_action(snapshot, Action("deposit", 5_000.0, "USD"), rates)
    assert (paid.net_liquidation, paid.equity_with_loan, paid.excess_liquidity) == (
        105_000.0,
        105_000.0,
        65_000.0,
    )
    assert (paid.gross_position_value, paid.maint_margin_req) == (150_000.0, 40_000.0)
    with pytest.raises(ValueError, match="more than the eligible holdings"):
        apply_action(snapshot, Action("buy_back", 60_000.0, "USD"), rates)


@pytest.mark.parametrize(
    ("amount", "rounded"),
    [(48_000.0, 48_000.0), (8_974.358974, 8_974.36), (0.001, 0.01), (10_927.1523, 10_927.16)],
)
def test_amounts_round_up_to_the_cent(amount, rounded):
    """Never half a cent short: 8,974.358... is 8,974.36, a tenth of a cent is a cent; an
    amount already in cents (up to float noise) stays."""
    assert up_to_cent(amount) == rounded
    assert up_to_cent(48_000.000000000007) == 48_000.0
