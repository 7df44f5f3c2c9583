"""The ``gross_leverage`` rule: GPV / NLV against its own cap (critical above 2.0x), beside the
net envelope; a hedged book; a deficit; its settings."""

from __future__ import annotations

import pytest

from rules.checks.gross_leverage import GrossLeverageConfig, gross_leverage
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot, stock

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN


@pytest.mark.parametrize(
    ("gpv", "severity", "clear"),
    [(150_000.0, OK, OK), (197_000.0, OK, CRITICAL), (210_000.0, CRITICAL, CRITICAL)],
    ids=["ok", "ok-but-held", "critical"],
)
def test_gross_leverage_levels(gpv, severity, clear):
    """No warning level by default; critical above 2.0x, clear below 1.95x (NLV 100,000)."""
    finding = gross_leverage(sample_snapshot(gross_position_value=gpv), NOON, GrossLeverageConfig())
    assert finding.value == pytest.approx(gpv / 100_000)
    assert (finding.severity, finding.clear_severity) == (severity, clear)


def test_a_hedged_book_beyond_the_gross_cap():
    """Long 130,000 and short 120,000, NLV 100,000: net 0.1x (inside the envelope) but gross
    (130,000 + 120,000) / 100,000 = 2.5x, critical. To 1.95x: sell or buy back 250,000 -
    195,000 = 55,000 of positions (either cuts GPV by the amount), or deposit 250,000 / 1.95
    - 100,000 = 28,205.13 (28,205.128... rounded up)."""
    snapshot = sample_snapshot(
        (stock("AAA", 130_000.0), stock("ZZZ", -120_000.0)), gross_position_value=250_000.0
    )
    finding = gross_leverage(snapshot, NOON, GrossLeverageConfig())
    assert finding.severity is CRITICAL
    assert finding.value == pytest.approx(2.5)
    assert finding.message.startswith("Gross leverage 2.5x is above the critical level 2x")
    assert finding.action == (
        "Sell or buy back about USD 55,000.00 of positions or deposit about USD 28,205.13 to "
        "bring gross leverage to 1.95x, where the alert clears"
    )
    cut, deposit = (remedy.actions[0] for remedy in finding.remedies)
    assert (cut.kind, cut.amount, deposit.kind, deposit.amount) == (
        "reduce",
        55_000.0,
        "deposit",
        28_205.13,
    )


def test_gross_leverage_with_no_positive_equity_and_missing_data():
    """NLV 0 with GPV 40,000: no ratio, critical, a deposit of 40,000 / 1.95 = 20,512.83.
    No GPV: unknown."""
    finding = gross_leverage(
        sample_snapshot(net_liquidation=0.0, gross_position_value=40_000.0),
        NOON,
        GrossLeverageConfig(),
    )
    assert finding.severity is CRITICAL and finding.value is None
    assert "Deposit about USD 20,512.83" in finding.action
    gap = gross_leverage(sample_snapshot(gross_position_value=None), NOON, GrossLeverageConfig())
    assert gap.severity is UNKNOWN and "GrossPositionValue" in gap.message


def test_gross_leverage_settings_say_what_to_fix():
    """Levels in order; a warning level may be added."""
    with pytest.raises(ValueError, match=r"warning \(2.5\) must be below critical"):
        GrossLeverageConfig(warning=2.5)
    finding = gross_leverage(
        sample_snapshot(gross_position_value=180_000.0),
        NOON,
        GrossLeverageConfig(warning=1.75),
    )
    assert finding.severity is WARNING and finding.threshold == 1.75
