"""The ``min_equity`` rule: NLV converted to USD against USD 2,000."""

from __future__ import annotations

import pytest

from rules.checks.min_equity import MinEquityConfig, min_equity
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN


@pytest.mark.parametrize(
    ("values", "severity", "in_action"),
    [
        ({}, OK, None),
        (
            {"net_liquidation": 1_500.0},
            WARNING,
            "Deposit about USD 600.00 to bring NLV to USD 2,100.00, where the alert clears",
        ),
        ({"net_liquidation": 2_000.0}, WARNING, "Deposit about USD 100.00"),
        ({"net_liquidation": 0.0}, WARNING, "Deposit about USD 2,100.00"),
        ({"net_liquidation": -5_000.0}, WARNING, "Deposit about USD 7,100.00"),
        (
            {"net_liquidation": 1_000.0, "base_currency": "GBP", "exchange_rates": {"USD": 0.8}},
            WARNING,
            "Deposit about GBP 680.00 (USD 850.00)",
        ),
    ],
    ids=["ok", "warning", "at-the-floor", "zero", "negative", "gbp-base"],
)
def test_min_equity(values, severity, in_action):
    """NLV converted to USD at or below 2,000 fails, zero and negative included (a deficit is
    not "data missing"). The deposit reaches the clear level 2,000 + 100: from 1,500, 600;
    from -5,000, 7,100. GBP base at 0.8 GBP per USD: NLV GBP 1,000 is USD 1,250, so USD 850 =
    GBP 680."""
    finding = min_equity(sample_snapshot(**values), NOON, MinEquityConfig())
    assert finding.severity is severity
    assert (finding.action is None) if in_action is None else (in_action in finding.action)


def test_min_equity_missing():
    """No NLV at all (IB's unset value parses as None): unknown, naming the tag."""
    finding = min_equity(sample_snapshot(net_liquidation=None), NOON, MinEquityConfig())
    assert finding.severity is UNKNOWN and finding.data_missing
    assert "NetLiquidation" in finding.message
