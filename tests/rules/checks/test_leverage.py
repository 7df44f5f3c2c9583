"""The ``leverage`` rule: the envelope, a value just past a level, missing data, its settings."""

from __future__ import annotations

import pytest

from rules.checks.leverage import LeverageConfig, leverage
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN


@pytest.mark.parametrize(
    ("gpv", "severity", "clear", "in_action"),
    [
        (150_000.0, OK, OK, None),
        (158_000.0, OK, WARNING, None),
        (
            170_000.0,
            WARNING,
            WARNING,
            "Reduce gross positions by about USD 10,000.00 (sell and repay the loan with the "
            "proceeds) to bring leverage to 1.6x",
        ),
        (210_000.0, CRITICAL, CRITICAL, "Reduce gross positions by about USD 50,000.00"),
    ],
    ids=["ok", "ok-but-held", "warning", "critical"],
)
def test_leverage(gpv, severity, clear, in_action):
    """GPV / NLV: warning above 1.6x, critical above 2.0x, clear 0.05x below."""
    finding = leverage(sample_snapshot(gross_position_value=gpv), NOON, LeverageConfig())
    assert finding.value == pytest.approx(gpv / 100_000)
    assert finding.severity is severity
    assert finding.clear_severity is clear
    assert (finding.action is None) if in_action is None else (in_action in finding.action)


def test_leverage_just_past_the_level_reads_past_it():
    """1.6003x is not shown as "1.6x above 1.6x": enough decimals to see the breach."""
    finding = leverage(sample_snapshot(gross_position_value=160_030.0), NOON, LeverageConfig())
    assert finding.severity is WARNING
    assert finding.message.startswith("Gross leverage 1.60030x is above the warning level 1.6x")


def test_leverage_missing():
    """No GPV: unknown, naming the tag."""
    finding = leverage(sample_snapshot(gross_position_value=None), NOON, LeverageConfig())
    assert finding.severity is UNKNOWN and finding.data_missing
    assert "GrossPositionValue" in finding.message


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: LeverageConfig(warning=2.5, critical=2.0), "warning (2.5) must be below critical"),
    ],
    ids=["order"],
)
def test_leverage_settings_say_what_to_fix(build, fragment):
    """Each ValueError names the field and the problem."""
    with pytest.raises(ValueError) as caught:
        build()
    assert fragment in str(caught.value)
