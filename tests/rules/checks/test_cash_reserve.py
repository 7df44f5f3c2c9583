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
            "Raise ExcessLiquidity by about USD 1,462.50: deposit USD 1,462.50 or sell about "
            "USD 5,850.00 of long positions (sized at 25%, the lowest maintenance a holding "
            "here can have) to cover 2 quarters of financing cost, where the alert clears",
        ),
        (
            {"positions": (stock("SGOV", 3_000.0, stock_type="ETF"),)},
            CashReserveConfig(reserve_symbols=("sgov", "BIL")),
            WARNING,
            "Deposit about USD 1,462.50 and buy USD 1,462.50 of SGOV, BIL with it",
        ),
        (
            {"positions": (stock("SGOV", 10_000.0, stock_type="ETF"),)},
            CashReserveConfig(reserve_symbols=("SGOV",)),
            OK,
            None,
        ),
        ({"excess_liquidity": 5_000.0}, CashReserveConfig(quarters=4), WARNING, "USD 3,925.00"),
    ],
    ids=["ok", "el-short", "symbols-short", "symbols-ok", "four-quarters"],
)
def test_cash_reserve(values, config, severity, in_action):
    """$8,500 a year = $2,125 a quarter: the reserve must cover two quarters, $4,250, and the
    alert clears at 105% of it, $4,462.50. From EL 3,000: deposit 1,462.50, or sell 1,462.50 /
    25% = 5,850 of longs (EL + 25% of the sale; the loan falls too, so the cost does); four
    quarters: 8,925 - 5,000 = 3,925."""
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
