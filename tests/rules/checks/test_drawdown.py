"""The ``drawdown`` rule: NLV below its recorded peak, and the 20% loan cut it names."""

from __future__ import annotations

import pytest

from rules.checks.drawdown import DrawdownConfig, drawdown
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot

OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN


def history(peak: float | None = None) -> EvaluationContext:
    """The context with the recorded NLV peak, when there is one."""
    return EvaluationContext(now=SAMPLE_TIME, peak_net_liquidation=peak)


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
