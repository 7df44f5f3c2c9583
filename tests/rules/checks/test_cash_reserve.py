"""The ``cash_reserve`` rule: ExcessLiquidity or reserve holdings against two quarters of
financing cost."""

from __future__ import annotations

import pytest

from rules.checks.cash_reserve import CashReserveConfig, cash_reserve
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, SEED_FINANCING, sample_snapshot, stock

OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN
LOAN_250K = {"cash_balance": -250_000.0}
NOON = EvaluationContext(now=SAMPLE_TIME)


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
        sample_snapshot(**LOAN_250K, **values), NOON, config, financing=SEED_FINANCING
    )
    assert finding.severity is severity
    assert (finding.action is None) if in_action is None else (in_action in finding.action)


def test_cash_reserve_not_applicable_and_missing():
    """No loan or no benchmark: ok. No ExcessLiquidity: unknown."""
    no_loan = cash_reserve(
        sample_snapshot(cash_balance=1.0), NOON, CashReserveConfig(), financing=SEED_FINANCING
    )
    assert no_loan.severity is OK and "No margin loan" in no_loan.message
    no_benchmark = cash_reserve(sample_snapshot(), NOON, CashReserveConfig())
    assert no_benchmark.severity is OK and "benchmark_rate" in no_benchmark.message
    gap = cash_reserve(
        sample_snapshot(excess_liquidity=None), NOON, CashReserveConfig(), financing=SEED_FINANCING
    )
    assert gap.severity is UNKNOWN and gap.data_missing
