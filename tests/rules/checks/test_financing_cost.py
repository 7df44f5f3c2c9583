"""The ``financing_cost`` rule: the seed's tiered cost, the year-over-year rise, cases where
it does not apply, and its settings (tiers, day count)."""

from __future__ import annotations

import pytest

from rules.checks.financing_cost import FinancingCostConfig, InterestTier, financing_cost
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, SEED_FINANCING, sample_snapshot

OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN
LOAN_250K = {"cash_balance": -250_000.0}


def history(year_ago: float | None = None) -> EvaluationContext:
    """The context with last year's financing cost, when there is one."""
    return EvaluationContext(now=SAMPLE_TIME, financing_cost_year_ago=year_ago)


def test_financing_cost_reports_the_seed_figures_without_history():
    """$250,000: $8,500 a year, 3.4%, $23.61 a day, +$1,250 for +0.5 pp; no history, no guess."""
    finding = financing_cost(sample_snapshot(**LOAN_250K), history(), SEED_FINANCING)
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
    finding = financing_cost(sample_snapshot(**LOAN_250K), history(year_ago), SEED_FINANCING)
    assert finding.severity is severity
    assert finding.clear_severity is clear
    assert finding.threshold == pytest.approx(year_ago * 1.15)
    assert in_text in f"{finding.message} {finding.action}"


def test_financing_cost_not_applicable_cases():
    """No loan, or spread tiers without a benchmark: ok with a message, not missing data."""
    no_loan = financing_cost(sample_snapshot(cash_balance=5_000.0), history(), SEED_FINANCING)
    assert no_loan.severity is OK and no_loan.value == 0.0
    assert "No margin loan" in no_loan.message
    unpriced = financing_cost(sample_snapshot(), history(), FinancingCostConfig())
    assert unpriced.severity is OK and not unpriced.data_missing
    assert "benchmark_rate" in unpriced.message
    priced = financing_cost(sample_snapshot(), history(), FinancingCostConfig(benchmark_rate=0.05))
    assert round(priced.value, 2) == 3_250.00  # 50,000 at 5% + 1.5%


def test_financing_cost_missing_cash():
    """No cash balance: unknown."""
    finding = financing_cost(sample_snapshot(cash_balance=None), history(), SEED_FINANCING)
    assert finding.severity is UNKNOWN and "TotalCashBalance (BASE)" in finding.message


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: InterestTier(up_to=10), "exactly one of rate"),
        (lambda: InterestTier(rate=0.03, spread=0.01), "exactly one of rate"),
        (
            lambda: FinancingCostConfig(
                tiers=(InterestTier(up_to=200, rate=0.03), InterestTier(up_to=100, rate=0.04))
            ),
            "ascending",
        ),
        (
            lambda: FinancingCostConfig(tiers=(InterestTier(rate=0.03), InterestTier(rate=0.04))),
            "only the last tier may omit up_to",
        ),
        (lambda: FinancingCostConfig(day_count=300), "day_count must be 360"),
        (lambda: FinancingCostConfig(tiers=()), "at least one tier"),
    ],
    ids=[
        "tier-no-rate",
        "tier-both",
        "tiers-order",
        "tiers-open-middle",
        "day-count",
        "tiers-empty",
    ],
)
def test_financing_cost_settings_say_what_to_fix(build, fragment):
    """Each ValueError names the field and the problem."""
    with pytest.raises(ValueError) as caught:
        build()
    assert fragment in str(caught.value)


def test_default_tiers_are_ibkr_pro_usd_spreads():
    """IBKR Pro USD: BM+1.5% to 100k, +1% to 1M, +0.75% to 50M, +0.5% to 200M and above."""
    tiers = FinancingCostConfig().tiers
    assert [(t.up_to, t.spread) for t in tiers] == [
        (100_000, 0.015),
        (1_000_000, 0.01),
        (50_000_000, 0.0075),
        (200_000_000, 0.005),
        (None, 0.005),
    ]
    assert FinancingCostConfig().benchmark_rate is None  # it moves: configuration only
