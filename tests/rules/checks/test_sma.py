"""The ``sma`` rule: SMA below 0, critical inside the Reg T window on weekdays."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rules.checks.sma import SmaConfig, sma
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
IN_REG_T_WINDOW = EvaluationContext(now=datetime(2026, 5, 11, 20, 30, tzinfo=UTC))  # 16:30 EDT
SATURDAY_1630 = EvaluationContext(now=datetime(2026, 5, 16, 20, 30, tzinfo=UTC))
OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN


@pytest.mark.parametrize(
    ("sma_value", "context", "severity", "in_action"),
    [
        (20_000.0, NOON, OK, None),
        (
            -1_000.0,
            NOON,
            WARNING,
            "Raise SMA by USD 1,000.00 before 15:50 America/New_York: deposit USD 1,000.00 or "
            "sell (or buy back) about USD 2,000.00 of positions (a trade credits 50% of its "
            "value to SMA)",
        ),
        (-1_000.0, IN_REG_T_WINDOW, CRITICAL, "Raise SMA by USD 1,000.00 now"),
        (-1_000.0, SATURDAY_1630, WARNING, "before 15:50"),
        (20_000.0, IN_REG_T_WINDOW, OK, None),
    ],
    ids=["ok", "warning-midday", "critical-in-window", "weekend-not-window", "ok-in-window"],
)
def test_sma(sma_value, context, severity, in_action):
    """SMA < 0 is a warning, critical inside 15:50-17:20 New York on weekdays. SMA -1,000
    clears at 0 (clear margin 0): a deposit of 1,000, or a trade of 1,000 / 50% = 2,000."""
    finding = sma(sample_snapshot(sma=sma_value), context, SmaConfig())
    assert finding.severity is severity
    assert finding.value == sma_value
    assert (finding.action is None) if in_action is None else (in_action in finding.action)
    if severity is not OK:
        assert finding.clear_severity is severity


def test_sma_missing():
    """No SMA: unknown."""
    finding = sma(sample_snapshot(sma=None), NOON, SmaConfig())
    assert finding.severity is UNKNOWN and finding.data_missing and "SMA" in finding.message


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: SmaConfig(timezone="Mars/Olympus"), "unknown timezone 'Mars/Olympus'"),
    ],
    ids=["timezone"],
)
def test_sma_settings_say_what_to_fix(build, fragment):
    """Each ValueError names the field and the problem."""
    with pytest.raises(ValueError) as caught:
        build()
    assert fragment in str(caught.value)
