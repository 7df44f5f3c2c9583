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
        ({"net_liquidation": 1_500.0}, WARNING, "Deposit about USD 500.00 to reach USD 2,000.00"),
        (
            {"net_liquidation": 1_000.0, "base_currency": "GBP", "exchange_rates": {"USD": 0.8}},
            WARNING,
            "Deposit about GBP 600.00 (USD 750.00)",
        ),
    ],
    ids=["ok", "warning", "gbp-base"],
)
def test_min_equity(values, severity, in_action):
    """NLV converted to USD under 2,000."""
    finding = min_equity(sample_snapshot(**values), NOON, MinEquityConfig())
    assert finding.severity is severity
    assert (finding.action is None) if in_action is None else (in_action in finding.action)


def test_min_equity_missing():
    """Zero NLV is missing data, not a 'below minimum' alert."""
    finding = min_equity(sample_snapshot(net_liquidation=0.0), NOON, MinEquityConfig())
    assert finding.severity is UNKNOWN and finding.data_missing
