"""The ``shares_outstanding`` rule: 1% and 5% of shares outstanding, partial data, config
counts winning over IB's."""

from __future__ import annotations

import pytest

from rules.checks.shares_outstanding import SharesOutstandingConfig, shares_outstanding
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot, stock

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN


@pytest.mark.parametrize(
    ("quantity", "severity", "in_text"),
    [
        (500.0, OK, "Largest holding XYZ is 0.5% of shares outstanding"),
        (
            2_000.0,
            WARNING,
            "Sell 1,100 XYZ shares (about USD 11,000.00) to hold at most 0.9% of shares "
            "outstanding, where the alert clears",
        ),
        (5_000.0, CRITICAL, "100% margin at 5% or more"),
    ],
    ids=["ok", "warning-over-1pct", "critical-at-5pct"],
)
def test_shares_outstanding(quantity, severity, in_text):
    """Holding / shares outstanding: > 1% warning, >= 5% critical (config counts). 2,000 of
    100,000 shares (2%) clears at 0.9% (1% less the 0.1 pp clear margin): sell 2,000 - 900 =
    1,100 shares, USD 11,000 at 10.00."""
    position = stock("XYZ", quantity * 10.0, quantity=quantity)
    config = SharesOutstandingConfig(shares_outstanding={"XYZ": 100_000})
    finding = shares_outstanding(sample_snapshot([position]), NOON, config)
    assert finding.severity is severity
    assert finding.value == pytest.approx(quantity / 100_000)
    assert in_text in f"{finding.message} {finding.action}"


def test_shares_outstanding_partial_data():
    """Graded on the symbols with data; the others are named, not treated as missing data."""
    positions = [stock("XYZ", 20_000.0, quantity=2_000.0), stock("MSFT", 9_000.0)]
    context = EvaluationContext(now=SAMPLE_TIME, shares_outstanding={"XYZ": 100_000})
    finding = shares_outstanding(sample_snapshot(positions), context, SharesOutstandingConfig())
    assert finding.severity is WARNING
    assert "no shares-outstanding data for MSFT" in finding.message
    none = shares_outstanding(
        sample_snapshot([stock("MSFT", 9_000.0)]), NOON, SharesOutstandingConfig()
    )
    assert none.severity is OK and not none.data_missing
    assert "no shares-outstanding data for MSFT" in none.message


def test_shares_outstanding_config_wins_over_fundamentals():
    """A configured count replaces IB's fundamental data."""
    positions = [stock("XYZ", 20_000.0, quantity=2_000.0)]
    context = EvaluationContext(now=SAMPLE_TIME, shares_outstanding={"XYZ": 1e9})
    config = SharesOutstandingConfig(shares_outstanding={"XYZ": 100_000})
    assert shares_outstanding(sample_snapshot(positions), context, config).severity is WARNING
    assert (
        shares_outstanding(sample_snapshot(positions), context, SharesOutstandingConfig()).severity
        is OK
    )


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: SharesOutstandingConfig(shares_outstanding={"AAPL": 0}), "AAPL must be above 0"),
    ],
    ids=["shares-zero"],
)
def test_shares_outstanding_settings_say_what_to_fix(build, fragment):
    """Each ValueError names the field and the problem."""
    with pytest.raises(ValueError) as caught:
        build()
    assert fragment in str(caught.value)
