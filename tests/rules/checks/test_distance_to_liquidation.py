"""The ``distance_to_liquidation`` rule: d* and the cushion after each fall, its levels,
and when no fall can liquidate."""

from __future__ import annotations

import pytest

from rules.checks.distance_to_liquidation import (
    DistanceToLiquidationConfig,
    distance_to_liquidation,
)
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN


def test_distance_to_liquidation_example_and_falls():
    """d* = 62,500 / (0.75 x 150,000) = 55.6%, with the cushion after -10%, -12%, -20%."""
    finding = distance_to_liquidation(sample_snapshot(), NOON, DistanceToLiquidationConfig())
    assert finding.severity is OK
    assert round(finding.value * 100, 1) == 55.6
    assert "55.6%" in finding.message
    falls = finding.details["cushion_after_falls"]
    assert list(falls) == ["-10%", "-12%", "-20%"]
    assert falls["-10%"] == pytest.approx(51_250 / 85_000)
    assert falls["-20%"] == pytest.approx(40_000 / 70_000)


@pytest.mark.parametrize(
    ("values", "severity", "in_action"),
    [
        (
            {"excess_liquidity": 15_000.0},
            WARNING,
            "Sell about USD 5,172.41 of positions (at 25% maintenance) so the account withstands "
            "a 15% fall",
        ),
        ({"excess_liquidity": 7_500.0}, CRITICAL, "withstands a 15% fall"),
        ({"excess_liquidity": -100.0}, CRITICAL, "Sell about"),
    ],
    ids=["warning", "critical", "negative-el"],
)
def test_distance_to_liquidation_levels(values, severity, in_action):
    """Warning under 15%, critical under 8%; the sale restores 15%."""
    finding = distance_to_liquidation(
        sample_snapshot(**values), NOON, DistanceToLiquidationConfig()
    )
    assert finding.severity is severity
    assert in_action in finding.action


def test_distance_to_liquidation_not_applicable_and_missing():
    """No positions: ok, not applicable. Missing maintenance: unknown."""
    flat = sample_snapshot(gross_position_value=0.0, maint_margin_req=0.0)
    finding = distance_to_liquidation(flat, NOON, DistanceToLiquidationConfig())
    assert finding.severity is OK and not finding.data_missing
    gap = distance_to_liquidation(
        sample_snapshot(maint_margin_req=None), NOON, DistanceToLiquidationConfig()
    )
    assert gap.severity is UNKNOWN and "MaintMarginReq" in gap.message


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: DistanceToLiquidationConfig(falls=(0.1, 2.0)), "falls must be a fraction"),
    ],
    ids=["falls-range"],
)
def test_distance_to_liquidation_settings_say_what_to_fix(build, fragment):
    """Each ValueError names the field and the problem."""
    with pytest.raises(ValueError) as caught:
        build()
    assert fragment in str(caught.value)
