"""The ``allocation_drift`` rule: weights against targets, the restoring trades, and the
targets' validation."""

from __future__ import annotations

import pytest

from rules.checks.allocation_drift import AllocationDriftConfig, allocation_drift
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot, stock

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN
THREE_FUND = AllocationDriftConfig(targets={"SCHD": 0.40, "VOO": 0.40, "BND": 0.20})


def funds(schd: float, voo: float, bnd: float | None) -> list:
    held = [stock("SCHD", schd, stock_type="ETF"), stock("VOO", voo, stock_type="ETF")]
    if bnd is not None:
        held.append(stock("BND", bnd, stock_type="ETF"))
    return held


@pytest.mark.parametrize(
    ("positions", "severity", "value", "action"),
    [
        (funds(40_000, 41_000, 19_000), OK, 0.01, None),
        (
            funds(50_000, 60_000, 10_000),
            WARNING,
            14_000 / 120_000,  # BND at 8.3% is 11.7 pp under its 20%
            "Sell USD 12,000.00 VOO; sell USD 2,000.00 SCHD; buy USD 14,000.00 BND "
            "(restores the targets on USD 120,000.00)",
        ),
        (
            funds(50_000, 50_000, None),
            WARNING,
            0.20,
            "Sell USD 10,000.00 SCHD; sell USD 10,000.00 VOO; buy USD 20,000.00 BND",
        ),
    ],
    ids=["within-band", "drifted", "target-not-held"],
)
def test_allocation_drift(positions, severity, value, action):
    """SCHD 40 / VOO 40 / BND 20 with a 5 pp band: the trades that restore the targets."""
    finding = allocation_drift(
        sample_snapshot([*positions, stock("AAPL", 7_000.0)]), NOON, THREE_FUND
    )
    assert finding.severity is severity
    assert finding.value == pytest.approx(value)
    if action is None:
        assert finding.action is None
    else:
        assert finding.action.startswith(action)


def test_allocation_drift_critical_band_and_not_applicable():
    """An optional critical band; no targets or none held is ok, not missing data."""
    config = AllocationDriftConfig(targets=THREE_FUND.targets, critical_band=0.08)
    assert allocation_drift(
        sample_snapshot(funds(50_000, 60_000, 10_000)), NOON, config
    ).severity is (CRITICAL)
    for finding in (
        allocation_drift(sample_snapshot(funds(1, 1, 1)), NOON, AllocationDriftConfig()),
        allocation_drift(sample_snapshot([stock("AAPL", 5.0)]), NOON, THREE_FUND),
    ):
        assert finding.severity is OK and not finding.data_missing
    assert (
        "No allocation targets configured"
        in allocation_drift(sample_snapshot(), NOON, AllocationDriftConfig()).message
    )


def test_allocation_drift_unpriced_target_is_missing():
    """A target symbol held without a value: unknown."""
    finding = allocation_drift(
        sample_snapshot([*funds(50_000, 60_000, None), stock("BND", None)]), NOON, THREE_FUND
    )
    assert finding.severity is UNKNOWN and "market value of BND" in finding.message


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: AllocationDriftConfig(targets={"A": 0.5, "B": 0.4}), "sum to 0.9"),
        (lambda: AllocationDriftConfig(targets={"A": 60, "B": 40}), "look like percent"),
        (lambda: AllocationDriftConfig(targets={"A": -0.5, "B": 1.5}), "targets.A"),
    ],
    ids=["targets-sum", "targets-percent", "targets-negative"],
)
def test_allocation_drift_settings_say_what_to_fix(build, fragment):
    """Each ValueError names the field and the problem."""
    with pytest.raises(ValueError) as caught:
        build()
    assert fragment in str(caught.value)


def test_allocation_drift_targets_are_upper_cased():
    """Symbol keys are normalised to IB's upper case."""
    drift = AllocationDriftConfig(targets={"schd": 0.4, "voo": 0.4, "bnd": 0.2})
    assert list(drift.targets) == ["SCHD", "VOO", "BND"]
