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
            "Sell about USD 22,000.00 of long positions and keep the proceeds (they repay the "
            "loan), or deposit about USD 17,187.50, to bring it to 28% of NLV, where the alert "
            "clears",
        ),
    ],
    ids=["no-loan", "ok", "warning"],
)
def test_margin_utilization(cash, severity, value, in_message, in_action):
    """Loan / NLV against the 30% cap. A loan of 50,000 on NLV 100,000 (50%) clears at 28%: a
    sale repays 50,000 - 0.28 x 100,000 = 22,000 (NLV unchanged); a deposit repays D and adds
    D to NLV: (50,000 - 28,000) / 1.28 = 17,187.50, and (50,000 - 17,187.50) / 117,187.50 is
    28%."""
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


def test_a_loan_beyond_the_equity_has_no_ratio():
    """NLV -5,000 with a loan of 80,000: no ratio (null), the worst level set (warning by
    default) and a deposit: (80,000 + 0.28 x 5,000) / 1.28 = 63,593.75, after which the loan
    is 16,406.25 on NLV 58,593.75, 28%. No sale: NLV stays negative whatever is sold."""
    snapshot = sample_snapshot(net_liquidation=-5_000.0, cash_balance=-80_000.0)
    finding = margin_utilization(snapshot, NOON, MarginUtilizationConfig())
    assert finding.severity is WARNING and finding.value is None and not finding.data_missing
    assert "exceeds the equity" in finding.message
    assert (
        finding.action
        == "Deposit about USD 63,593.75 to bring it to 28% of NLV, where the alert clears"
    )
    assert [r.actions[0].kind for r in finding.remedies] == ["deposit"]
