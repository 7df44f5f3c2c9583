"""The ``pm_equity_floor`` rule: portfolio-margin NLV in USD, other accounts, missing rates."""

from __future__ import annotations

import pytest

from rules.checks.pm_equity_floor import PmEquityFloorConfig, pm_equity_floor
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN
PM = PmEquityFloorConfig(portfolio_margin_accounts=("DU111",))


@pytest.mark.parametrize(
    ("values", "severity", "in_action"),
    [
        ({"net_liquidation": 120_000.0}, OK, None),
        (
            {"net_liquidation": 105_000.0},
            WARNING,
            "Deposit about USD 6,000.00 to bring NLV back to USD 111,000.00 (USD 110,000.00 plus "
            "the clear margin)",
        ),
        ({"net_liquidation": 95_000.0}, CRITICAL, "Deposit about USD 16,000.00"),
        ({"net_liquidation": -1_000.0}, CRITICAL, "Deposit about USD 112,000.00"),
        (
            {"net_liquidation": 95_000.0, "base_currency": "EUR", "exchange_rates": {"USD": 0.9}},
            WARNING,
            "Deposit about EUR 4,900.00 (USD 5,444.44)",
        ),
    ],
    ids=["ok", "warning", "critical", "negative", "eur-base"],
)
def test_pm_equity_floor(values, severity, in_action):
    """PM accounts: NLV in USD under 110,000 warning, under 100,000 critical (a negative NLV
    too). The deposit reaches the clear level 111,000: from 105,000, 6,000. EUR base at 0.9
    EUR per USD: EUR 95,000 is USD 105,555.56, so (111,000 - 105,555.56) x 0.9 = EUR 4,900."""
    finding = pm_equity_floor(sample_snapshot(**values), NOON, PM)
    assert finding.severity is severity
    assert (finding.action is None) if in_action is None else (in_action in finding.action)


def test_pm_equity_floor_not_applicable_and_missing():
    """A non-PM account is ok (not missing); a PM account without a USD rate is unknown."""
    other = pm_equity_floor(sample_snapshot(net_liquidation=5.0), NOON, PmEquityFloorConfig())
    assert other.severity is OK and not other.data_missing
    assert "Not a portfolio-margin account" in other.message
    no_rate = pm_equity_floor(sample_snapshot(base_currency="CHF"), NOON, PM)
    assert no_rate.severity is UNKNOWN and no_rate.data_missing
    assert "USD exchange rate for base currency CHF" in no_rate.message
