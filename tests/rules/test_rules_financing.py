"""Financing rules: financing cost, cash reserve, drawdown."""

from __future__ import annotations

import pytest

from rules.config import (
    CashReserveConfig,
    DrawdownConfig,
    FinancingCostConfig,
    InterestTier,
)
from rules.financing import cash_reserve, drawdown, financing_cost
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot, stock

OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN
SEED = FinancingCostConfig(tiers=(InterestTier(up_to=150_000, rate=0.03), InterestTier(rate=0.04)))
LOAN_250K = {"cash_balance": -250_000.0}


def history(year_ago: float | None = None, peak: float | None = None) -> EvaluationContext:
    return EvaluationContext(
        now=SAMPLE_TIME, financing_cost_year_ago=year_ago, peak_net_liquidation=peak
    )


# -- financing cost ---------------------------------------------------------------------------


def test_financing_cost_reports_the_seed_figures_without_history():
    """$250,000: $8,500 a year, 3.4%, $23.61 a day, +$1,250 for +0.5 pp; no history, no guess."""
    finding = financing_cost(sample_snapshot(**LOAN_250K), history(), SEED)
    assert finding.severity is OK and not finding.data_missing
    assert round(finding.value, 2) == 8_500.00
    for text in (
        "Margin loan USD 250,000.00 costs USD 8,500.00 a year",
        "3.4% effective",
        "USD 23.61 a day on actual/360",
        "a +0.5 pp rise would add USD 1,250.00 a year",
        "no year-ago history",
    ):
        assert text in finding.message
    assert round(finding.details["annual_cost"], 2) == 8_500.00
    assert round(finding.details["daily_cost"], 2) == 23.61
    assert round(finding.details["cost_of_rise"], 2) == 1_250.00


@pytest.mark.parametrize(
    ("year_ago", "severity", "clear", "in_text"),
    [
        (8_000.0, OK, OK, "up 6.2% from USD 8,000.00 a year ago"),
        (7_500.0, OK, WARNING, "up 13.3%"),
        (
            7_000.0,
            WARNING,
            WARNING,
            "Cut the margin loan by 20%: repay USD 50,000.00 (saves about USD 2,000.00 a year)",
        ),
        (10_000.0, OK, OK, "down 15%"),
    ],
    ids=["ok", "ok-but-held", "warning-up-21pct", "cheaper"],
)
def test_financing_cost_year_over_year(year_ago, severity, clear, in_text):
    """Warning when the annual cost is more than 15% above a year ago."""
    finding = financing_cost(sample_snapshot(**LOAN_250K), history(year_ago), SEED)
    assert finding.severity is severity
    assert finding.clear_severity is clear
    assert finding.threshold == pytest.approx(year_ago * 1.15)
    assert in_text in f"{finding.message} {finding.action}"


def test_financing_cost_not_applicable_cases():
    """No loan, or spread tiers without a benchmark: ok with a message, not missing data."""
    no_loan = financing_cost(sample_snapshot(cash_balance=5_000.0), history(), SEED)
    assert no_loan.severity is OK and no_loan.value == 0.0
    assert "No margin loan" in no_loan.message
    unpriced = financing_cost(sample_snapshot(), history(), FinancingCostConfig())
    assert unpriced.severity is OK and not unpriced.data_missing
    assert "benchmark_rate" in unpriced.message
    priced = financing_cost(sample_snapshot(), history(), FinancingCostConfig(benchmark_rate=0.05))
    assert round(priced.value, 2) == 3_250.00  # 50,000 at 5% + 1.5%


def test_financing_cost_missing_cash():
    """No cash balance: unknown."""
    finding = financing_cost(sample_snapshot(cash_balance=None), history(), SEED)
    assert finding.severity is UNKNOWN and "TotalCashBalance (BASE)" in finding.message


# -- cash reserve -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "config", "severity", "in_action"),
    [
        ({}, CashReserveConfig(), OK, None),
        (
            {"excess_liquidity": 3_000.0},
            CashReserveConfig(),
            WARNING,
            "Raise ExcessLiquidity by about USD 1,250.00: deposit USD 1,250.00 or sell about "
            "USD 5,000.00 of positions to cover 2 quarters of financing cost",
        ),
        (
            {"positions": (stock("SGOV", 3_000.0, stock_type="ETF"),)},
            CashReserveConfig(reserve_symbols=("sgov", "BIL")),
            WARNING,
            "Add about USD 1,250.00 to the reserve (buy more SGOV, BIL",
        ),
        (
            {"positions": (stock("SGOV", 10_000.0, stock_type="ETF"),)},
            CashReserveConfig(reserve_symbols=("SGOV",)),
            OK,
            None,
        ),
        ({"excess_liquidity": 5_000.0}, CashReserveConfig(quarters=4), WARNING, "USD 3,500.00"),
    ],
    ids=["ok", "el-short", "symbols-short", "symbols-ok", "four-quarters"],
)
def test_cash_reserve(values, config, severity, in_action):
    """$8,500 a year = $2,125 a quarter: the reserve must cover two quarters, $4,250."""
    finding = cash_reserve(
        sample_snapshot(**LOAN_250K, **values), history(), config, financing=SEED
    )
    assert finding.severity is severity
    assert (finding.action is None) if in_action is None else (in_action in finding.action)


def test_cash_reserve_not_applicable_and_missing():
    """No loan or no benchmark: ok. No ExcessLiquidity: unknown."""
    no_loan = cash_reserve(
        sample_snapshot(cash_balance=1.0), history(), CashReserveConfig(), financing=SEED
    )
    assert no_loan.severity is OK and "No margin loan" in no_loan.message
    no_benchmark = cash_reserve(sample_snapshot(), history(), CashReserveConfig())
    assert no_benchmark.severity is OK and "benchmark_rate" in no_benchmark.message
    gap = cash_reserve(
        sample_snapshot(excess_liquidity=None), history(), CashReserveConfig(), financing=SEED
    )
    assert gap.severity is UNKNOWN and gap.data_missing


# -- drawdown ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peak", "values", "severity", "clear", "in_text"),
    [
        (None, {}, OK, OK, "No recorded peak yet"),
        (110_000.0, {}, OK, OK, "9.1% below its peak of USD 110,000.00"),
        (113_000.0, {}, OK, WARNING, "11.5% below"),
        (
            125_000.0,
            {"cash_balance": -125_000.0},
            WARNING,
            WARNING,
            "Cut the margin loan by 20%: repay USD 25,000.00",
        ),
        (125_000.0, {"cash_balance": 5_000.0}, WARNING, WARNING, "No margin loan to cut"),
        (125_000.0, {"cash_balance": None}, WARNING, WARNING, "loan amount unknown"),
        (90_000.0, {}, OK, OK, "0% below its peak of USD 100,000.00"),
    ],
    ids=["no-peak", "ok", "ok-but-held", "warning-cut", "no-loan", "loan-unknown", "new-peak"],
)
def test_drawdown(peak, values, severity, clear, in_text):
    """NLV more than 12% below the peak: cut the margin loan by 20%, in dollars."""
    finding = drawdown(sample_snapshot(**values), history(peak=peak), DrawdownConfig())
    assert finding.severity is severity
    assert finding.clear_severity is clear
    assert in_text in f"{finding.message} {finding.action}"


def test_drawdown_critical_and_missing():
    """Optional critical level; missing NLV is unknown."""
    finding = drawdown(sample_snapshot(), history(peak=125_000.0), DrawdownConfig(critical=0.18))
    assert finding.severity is CRITICAL
    gap = drawdown(sample_snapshot(net_liquidation=None), history(peak=1.0), DrawdownConfig())
    assert gap.severity is UNKNOWN and gap.data_missing
