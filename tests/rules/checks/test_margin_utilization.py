"""The ``margin_utilization`` rule: the loan against the cap, no loan, missing data."""

from __future__ import annotations

import pytest

from rules.checks.margin_utilization import MarginUtilizationConfig, margin_utilization
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN


@pytest.mark.parametrize(
    ("cash", "severity", "value", "in_message", "in_action"),
    [
        (10_000.0, OK, 0.0, "No margin loan", None),
        (-20_000.0, OK, 0.20, "20% of NLV (cap 30%)", None),
        (
            -50_000.0,
            WARNING,
            0.50,
            "above the 30% cap",
            "Repay about USD 20,000.00 of the USD 50,000.00 margin loan",
        ),
    ],
    ids=["no-loan", "ok", "warning"],
)
def test_margin_utilization(cash, severity, value, in_message, in_action):
    """Loan / NLV against the 30% cap."""
    finding = margin_utilization(
        sample_snapshot(cash_balance=cash), NOON, MarginUtilizationConfig()
    )
    assert finding.severity is severity
    assert finding.value == pytest.approx(value)
    assert in_message in finding.message
    assert (finding.action is None) if in_action is None else (in_action in finding.action)
    assert not finding.data_missing


def test_margin_utilization_critical_and_missing():
    """An optional critical cap; no cash balance means unknown."""
    config = MarginUtilizationConfig(warning=0.30, critical=0.45)
    finding = margin_utilization(sample_snapshot(), NOON, config)
    assert finding.severity is CRITICAL
    gap = margin_utilization(sample_snapshot(cash_balance=None), NOON, MarginUtilizationConfig())
    assert gap.severity is UNKNOWN and "TotalCashBalance (BASE)" in gap.message
