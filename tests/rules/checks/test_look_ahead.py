"""The ``look_ahead`` rule: a look-ahead deficit, a look-ahead cushion below the warning
level, and when it adds nothing to the cushion rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rules.checks.cushion import CushionConfig
from rules.checks.look_ahead import LookAheadConfig, look_ahead
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN
CHANGE = datetime(2026, 5, 11, 19, 0, tzinfo=UTC)  # 15:00 EDT, overnight margin


@pytest.mark.parametrize(
    ("values", "severity", "in_message", "in_action"),
    [
        ({}, OK, "Look-ahead cushion 62.5%", None),
        (
            {"look_ahead_excess_liquidity": 15_000.0, "look_ahead_next_change": CHANGE},
            WARNING,
            "15% at 2026-05-11 15:00 EDT is below the warning level 20%",
            "Before 2026-05-11 15:00 EDT, sell about USD 28,000.00 of long positions (sized at "
            "25%, the lowest Reg T maintenance a holding here can have) or deposit about "
            "USD 8,974.36 to keep a 22% cushion when the look-ahead margin takes effect (where "
            "the alert clears)",
        ),
        (
            {"look_ahead_excess_liquidity": -5_000.0, "look_ahead_next_change": CHANGE},
            CRITICAL,
            "LookAheadExcessLiquidity will be USD -5,000.00 at 2026-05-11 15:00 EDT",
            "Before 2026-05-11 15:00 EDT, sell about USD 108,000.00 of long positions",
        ),
        (
            {"look_ahead_excess_liquidity": -5_000.0},
            CRITICAL,
            "at the next margin change (time not reported)",
            "deposit about USD 34,615.39",
        ),
    ],
    ids=["ok", "warning", "critical-with-time", "critical-no-time"],
)
def test_look_ahead(values, severity, in_message, in_action):
    """LookAheadExcessLiquidity < 0 is critical and names when it takes effect. The action
    restores the 20% warning level plus the 2 pp clear margin on NLV 100,000: from 15,000 a
    sale of (22,000 - 15,000) / 25% = 28,000 or a deposit of 7,000 / 0.78 = 8,974.36; from
    -5,000, 27,000 / 25% = 108,000 or 27,000 / 0.78 = 34,615.39 (rounded up)."""
    finding = look_ahead(sample_snapshot(**values), NOON, LookAheadConfig())
    assert finding.severity is severity
    assert in_message in finding.message
    assert (finding.action is None) if in_action is None else (in_action in finding.action)


def test_look_ahead_uses_the_cushion_warning_level_unless_configured():
    """The warning level follows the cushion rule's unless look_ahead sets its own."""
    snapshot = sample_snapshot(look_ahead_excess_liquidity=25_000.0)
    assert look_ahead(snapshot, NOON, LookAheadConfig()).severity is OK
    shared = look_ahead(snapshot, NOON, LookAheadConfig(), cushion=CushionConfig(warning=0.3))
    assert shared.severity is WARNING
    own = look_ahead(snapshot, NOON, LookAheadConfig(warning=0.26))
    assert own.severity is WARNING


def test_look_ahead_adds_no_warning_when_no_worse_than_today():
    """A low look-ahead cushion equal to today's is the cushion rule's business alone."""
    same = sample_snapshot(excess_liquidity=15_000.0, look_ahead_excess_liquidity=15_000.0)
    finding = look_ahead(same, NOON, LookAheadConfig())
    assert finding.severity is OK and finding.held_severity is OK
    assert "no lower than today's" in finding.message
    worse = sample_snapshot(excess_liquidity=30_000.0, look_ahead_excess_liquidity=15_000.0)
    assert look_ahead(worse, NOON, LookAheadConfig()).severity is WARNING
    deficit = sample_snapshot(excess_liquidity=-5_000.0, look_ahead_excess_liquidity=-5_000.0)
    assert look_ahead(deficit, NOON, LookAheadConfig()).severity is CRITICAL


def test_look_ahead_missing():
    """No look-ahead value: unknown."""
    finding = look_ahead(sample_snapshot(look_ahead_excess_liquidity=None), NOON, LookAheadConfig())
    assert finding.severity is UNKNOWN and finding.data_missing
    assert "LookAheadExcessLiquidity" in finding.message


def test_a_look_ahead_deficit_is_critical_without_positive_equity():
    """LookAheadExcessLiquidity -8,000 with NLV -2,000: a known deficit to come is critical
    (no look-ahead cushion is reported); with NLV missing and no deficit, unknown."""
    snapshot = sample_snapshot(net_liquidation=-2_000.0, look_ahead_excess_liquidity=-8_000.0)
    finding = look_ahead(snapshot, NOON, LookAheadConfig())
    assert finding.severity is CRITICAL and finding.value is None and not finding.data_missing
    assert finding.action.startswith("Before the next margin change, deposit about")
    unknown = look_ahead(sample_snapshot(net_liquidation=None), NOON, LookAheadConfig())
    assert unknown.severity is UNKNOWN
