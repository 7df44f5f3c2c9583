"""The ``margin_terms`` rule: IB raising MaintMarginReq / GPV between two of its updates with
the book and its prices unchanged (seed 000: "if margin terms tighten, trim levered exposure").

The book (scenario market_drawdown's): VTI 400 @ 250 = 100,000 and QQQ 100 @ 480 = 48,000;
cash -40,000: NLV 108,000, GPV 148,000, maintenance 25% = 37,000, EL 71,000, cushion 65.74%.
IB then raises every rate to 35%: maintenance 51,800, EL 56,200, cushion 52.04%.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from rules.checks.margin_terms import MarginTermsConfig, largest_price_move, margin_terms
from rules.model import AccountSnapshot, EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot, stock

OK, WARNING, CRITICAL = Severity.OK, Severity.WARNING, Severity.CRITICAL


def book(
    maintenance: float, *, qqq_price: float = 480.0, vti_quantity: float = 400
) -> AccountSnapshot:
    """The VTI/QQQ book with IB's maintenance requirement ``maintenance``."""
    vti, qqq = vti_quantity * 250.0, 100 * qqq_price
    gross = vti + qqq
    nlv = gross - 40_000.0
    return sample_snapshot(
        [stock("VTI", vti, quantity=vti_quantity, stock_type="ETF"),
         stock("QQQ", qqq, quantity=100, stock_type="ETF")],
        net_liquidation=nlv,
        equity_with_loan=nlv,
        gross_position_value=gross,
        maint_margin_req=maintenance,
        excess_liquidity=nlv - maintenance,
        cash_balance=-40_000.0,
    )  # fmt: skip


BEFORE = book(37_000.0)
AFTER = replace(book(51_800.0), as_of=SAMPLE_TIME + timedelta(minutes=3))


def judged(now: AccountSnapshot, previous: AccountSnapshot | None, **config) -> object:
    context = EvaluationContext(now=now.as_of, previous_snapshot=previous)
    return margin_terms(now, context, MarginTermsConfig(**config))


def test_a_ten_point_jump_warns_with_the_cushion_it_cost_and_the_trim():
    """25% -> 35% of GPV (+10 points > 5): warning.

    It cost 51,800 - 37,000 = 14,800 of ExcessLiquidity: cushion 71,000 / 108,000 = 65.74% ->
    56,200 / 108,000 = 52.04%. Restoring 65.74% needs EL 71,000, 14,800 more: selling S at the
    lowest 25% rate (enough whatever is sold) = 14,800 / 0.25 = 59,200.00; at the book's new
    35% average 14,800 / 0.35 = 42,285.71; or deposit D = 14,800 / (1 - 0.657407) = 43,200.00.
    """
    finding = judged(AFTER, BEFORE)
    assert finding.severity is WARNING
    assert finding.value == pytest.approx(0.10)
    assert finding.threshold == 0.05
    assert "maintenance 25% -> 35% of GPV (+10.0 points)" in finding.message
    assert "it cost USD 14,800.00 of ExcessLiquidity" in finding.message
    assert "cushion fell from 65.7% to 52%" in finding.message
    assert "Trim about USD 59,200.00 of positions to restore the 65.7% cushion" in finding.action
    assert "about USD 42,285.71 at the book's new 35% average" in finding.action
    assert "deposit about USD 43,200.00" in finding.action
    assert finding.details["trim"] == pytest.approx(59_200.0)
    assert finding.details["deposit"] == pytest.approx(43_200.0)


def test_the_trim_restores_the_cushion_whatever_is_sold():
    """Selling the trim at the 25% floor raises EL by 0.25 x 59,200 = 14,800: back to 71,000 /
    108,000 = 65.74%; at the 35% average the larger EL lift only overshoots."""
    finding = judged(AFTER, BEFORE)
    trim = finding.details["trim"]
    for rate in (0.25, 0.35, 0.50):
        cushion = (AFTER.excess_liquidity + rate * trim) / AFTER.net_liquidation
        assert cushion >= finding.details["cushion_before"] - 1e-9


@pytest.mark.parametrize(
    ("previous", "now", "said"),
    [
        (None, AFTER, "No earlier IB update to compare with yet"),
        (BEFORE, replace(book(51_800.0, qqq_price=500.0)), "prices moved up to 4.2%"),
        (BEFORE, replace(book(51_800.0, vti_quantity=300)), "the holdings changed"),
        (BEFORE, replace(AFTER, maint_margin_req=None), "MaintMarginReq or GrossPositionValue"),
    ],
    ids=["first-update", "prices-moved", "trade", "missing"],
)
def test_nothing_comparable_holds_without_judging(previous, now, said):
    """No earlier update, prices moved more than 2% (QQQ 480 -> 500: 4.17%), a trade, or a
    missing figure: not compared; ok, but data-missing so a firing alert is held."""
    finding = judged(now, previous)
    assert finding.severity is OK and finding.data_missing
    assert said in finding.message
    assert finding.action is None


def test_steady_terms_and_small_moves_are_ok():
    """The same 25% at IB's next update is ok; a 3-point rise (25% -> 28%) stays under 5."""
    steady = judged(replace(BEFORE, as_of=AFTER.as_of), BEFORE)
    assert steady.severity is OK and not steady.data_missing and steady.value == 0.0
    assert "Margin terms steady: maintenance 25% of GPV" in steady.message
    small = judged(book(0.28 * 148_000.0), BEFORE)
    assert small.severity is OK and small.value == pytest.approx(0.03)


def test_critical_points_and_price_tolerance_are_settings():
    """critical_points 0.08: the 10-point jump is critical; a 5% tolerance compares the
    4.2% move (the jump is then 51,800 / 150,000 - 25% = 9.53 points)."""
    assert judged(AFTER, BEFORE, critical_points=0.08).severity is CRITICAL
    moved = judged(book(51_800.0, qqq_price=500.0), BEFORE, price_tolerance=0.05)
    assert moved.severity is WARNING
    assert moved.value == pytest.approx(51_800.0 / 150_000.0 - 0.25)


def test_largest_price_move_is_per_holding():
    """QQQ 480 -> 500 is 4.17%, VTI unchanged; a changed quantity makes the books unlike."""
    assert largest_price_move(BEFORE, book(37_000.0, qqq_price=500.0)) == pytest.approx(20 / 480)
    assert largest_price_move(BEFORE, book(37_000.0, vti_quantity=1)) is None


def test_settings_say_what_to_fix():
    """Points are fractions; critical above warning."""
    with pytest.raises(ValueError, match="warning_points"):
        MarginTermsConfig(warning_points=5)
    with pytest.raises(ValueError):
        MarginTermsConfig(warning_points=0.10, critical_points=0.05)
