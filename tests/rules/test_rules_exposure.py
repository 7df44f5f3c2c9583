"""Exposure rules: leverage, margin utilization, concentration, leveraged ETFs, shares
outstanding, allocation drift. Each: ok, warning, critical, missing data, and the action."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rules.config import (
    AllocationDriftConfig,
    ConcentrationConfig,
    CushionConfig,
    LeverageConfig,
    LeveragedEtfConfig,
    MarginUtilizationConfig,
    SharesOutstandingConfig,
)
from rules.exposure import (
    allocation_drift,
    concentration,
    leverage,
    leveraged_etf,
    margin_utilization,
    shares_outstanding,
)
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot, stock

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
BEFORE_CLOSE = EvaluationContext(now=datetime(2026, 5, 11, 19, 45, tzinfo=UTC))  # 15:45 EDT
SATURDAY = EvaluationContext(now=datetime(2026, 5, 16, 19, 45, tzinfo=UTC))

OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN


# -- leverage ---------------------------------------------------------------------------------


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


# -- margin utilization -----------------------------------------------------------------------


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


# -- concentration ----------------------------------------------------------------------------


def test_concentration_single_stock_over_cap():
    """AAPL at 32% of NLV breaks the 20% stock cap; VOO at 45% is within the ETF cap."""
    snapshot = sample_snapshot(
        [stock("AAPL", 32_000.0), stock("VOO", 45_000.0, stock_type="ETF"), stock("KO", 5_000.0)]
    )
    finding = concentration(snapshot, NOON, ConcentrationConfig())
    assert finding.severity is WARNING
    assert finding.value == pytest.approx(0.32)
    assert finding.threshold == pytest.approx(0.20)
    assert "AAPL is 32% of NLV (cap 20%)" in finding.message
    assert finding.action == "Sell about USD 12,000.00 of AAPL (to 20% of NLV)"
    rows = {row["symbol"]: row for row in finding.details["positions"]}
    assert set(rows) == {"AAPL", "VOO", "KO"}
    assert rows["VOO"]["kind"] == "etf" and rows["VOO"]["cap"] == 0.50


@pytest.mark.parametrize(
    ("positions", "config", "severity", "in_text"),
    [
        ([stock("AAPL", 15_000.0)], ConcentrationConfig(), OK, "Largest holding AAPL is 15%"),
        ([stock("AAPL", 32_000.0)], ConcentrationConfig(overrides={"aapl": 0.40}), OK, "AAPL"),
        (
            [stock("VOO", 55_000.0, stock_type="ETF")],
            ConcentrationConfig(),
            WARNING,
            "Sell about USD 5,000.00 of VOO (to 50% of NLV)",
        ),
        (
            [stock("TQQQ", 30_000.0, stock_type=None)],
            ConcentrationConfig(),
            OK,
            "TQQQ is 30%",
        ),
        (
            [stock("MSFT", -25_000.0)],
            ConcentrationConfig(),
            WARNING,
            "Buy back about USD 5,000.00 of MSFT",
        ),
        (
            [stock("AAPL", 10_000.0), stock("XYZ", None)],
            ConcentrationConfig(),
            OK,
            "no value for XYZ",
        ),
        ([], ConcentrationConfig(), OK, "No stock or ETF positions"),
    ],
    ids=["ok", "override", "etf-cap", "leveraged-etf-is-etf", "short", "unpriced", "no-positions"],
)
def test_concentration_cases(positions, config, severity, in_text):
    """Separate stock and ETF caps, per-symbol overrides, shorts, unpriced positions."""
    finding = concentration(sample_snapshot(positions), NOON, config)
    assert finding.severity is severity
    assert in_text in f"{finding.message} {finding.action}"
    assert not finding.data_missing


def test_concentration_sums_a_symbol_across_positions_and_reports_missing_nlv():
    """Two lines of the same symbol count together; no NLV is unknown."""
    snapshot = sample_snapshot(
        [stock("AAPL", 12_000.0, con_id=1), stock("aapl", 12_000.0, con_id=2)]
    )
    finding = concentration(snapshot, NOON, ConcentrationConfig())
    assert finding.severity is WARNING and finding.value == pytest.approx(0.24)
    gap = concentration(sample_snapshot(net_liquidation=None), NOON, ConcentrationConfig())
    assert gap.severity is UNKNOWN and gap.data_missing


# -- leveraged ETFs ---------------------------------------------------------------------------

CRASHING = {"excess_liquidity": 15_000.0}
SLEEVE = [stock("TQQQ", 40_000.0, stock_type="ETF"), stock("SOXL", 20_000.0, stock_type="ETF")]


def test_leveraged_etf_none_held_is_not_applicable():
    """No leveraged ETFs: ok with a message, not missing data."""
    finding = leveraged_etf(sample_snapshot([stock("AAPL", 5_000.0)]), NOON, LeveragedEtfConfig())
    assert finding.severity is OK and not finding.data_missing
    assert "No leveraged or inverse ETFs held" in finding.message


def test_leveraged_etf_small_sleeve_is_ok_and_reports_requirements():
    """TQQQ at 5%: Reg T 100% vs maintenance 75% adds 1,250 to the requirement."""
    finding = leveraged_etf(sample_snapshot([stock("TQQQ", 5_000.0)]), NOON, LeveragedEtfConfig())
    assert finding.severity is OK
    assert finding.value == pytest.approx(0.05)
    row = finding.details["positions"][0]
    assert (row["requirement"], row["current_rate"]) == (1.0, 0.75)
    assert finding.details["requirement_increase"] == pytest.approx(1_250)
    assert finding.details["projected_cushion"] == pytest.approx(0.6125)


def test_leveraged_etf_sleeve_over_cap():
    """A 15% sleeve breaks the 10% cap: sell 5,000 of leveraged ETFs."""
    finding = leveraged_etf(sample_snapshot([stock("TQQQ", 15_000.0)]), NOON, LeveragedEtfConfig())
    assert finding.severity is WARNING
    assert (
        "Sell about USD 5,000.00 of leveraged ETFs (TQQQ) to bring the sleeve to 10% of NLV"
        in finding.action
    )


@pytest.mark.parametrize(
    ("context", "severity", "in_action"),
    [
        (
            BEFORE_CLOSE,
            CRITICAL,
            "Now, sell about USD 20,000.00 of leveraged ETFs (at their 100% Reg T requirement) "
            "to keep a 20% cushion through the close",
        ),
        (NOON, WARNING, "Before 15:30 America/New_York, sell about USD 20,000.00"),
        (SATURDAY, WARNING, "Before 15:30 America/New_York"),
    ],
    ids=["inside-window-critical", "midday-warning", "weekend-warning"],
)
def test_leveraged_etf_projected_cushion(context, severity, in_action):
    """EL 15,000; 60,000 of 3x ETFs at 75% maintenance -> 100% Reg T leaves a 0% cushion."""
    finding = leveraged_etf(sample_snapshot(SLEEVE, **CRASHING), context, LeveragedEtfConfig())
    assert finding.details["projected_cushion"] == pytest.approx(0.0)
    assert finding.severity is severity
    assert finding.value == pytest.approx(0.0)
    assert finding.threshold == pytest.approx(0.10)
    assert in_action in finding.action
    assert "Sell about USD 50,000.00 of leveraged ETFs (TQQQ, SOXL)" in finding.action


def test_leveraged_etf_shorts_custom_factors_and_critical_level():
    """Short 3x: 100% Reg T vs 90% maintenance; config factors add symbols; own critical level."""
    positions = [stock("SQQQ", -10_000.0, stock_type="ETF"), stock("NEWX", 4_000.0)]
    config = LeveragedEtfConfig(factors={"NEWX": 2}, projected_critical=0.7)
    finding = leveraged_etf(sample_snapshot(positions), BEFORE_CLOSE, config)
    rows = {row["symbol"]: row for row in finding.details["positions"]}
    assert rows["SQQQ"]["current_rate"] == pytest.approx(0.90)
    assert rows["SQQQ"]["increase"] == pytest.approx(1_000)
    assert rows["NEWX"]["increase"] == pytest.approx(4_000 * (1.0 - 0.5))
    assert finding.severity is CRITICAL  # 62,500 - 3,000 = 59.5% < 70%


def test_leveraged_etf_uses_the_cushion_rule_critical_level():
    """The projected cushion is graded against the cushion rule's critical level."""
    snapshot = sample_snapshot([stock("TQQQ", 8_000.0)], excess_liquidity=30_000.0)
    calm = leveraged_etf(snapshot, BEFORE_CLOSE, LeveragedEtfConfig())
    assert calm.severity is OK
    strict = leveraged_etf(
        snapshot,
        BEFORE_CLOSE,
        LeveragedEtfConfig(),
        cushion=CushionConfig(warning=0.4, critical=0.3),
    )
    assert strict.severity is CRITICAL


def test_leveraged_etf_missing_data():
    """Leveraged ETFs held but no ExcessLiquidity, or no value: unknown."""
    no_el = leveraged_etf(
        sample_snapshot([stock("TQQQ", 5_000.0)], excess_liquidity=None), NOON, LeveragedEtfConfig()
    )
    assert no_el.severity is UNKNOWN and "ExcessLiquidity" in no_el.message
    no_value = leveraged_etf(sample_snapshot([stock("TQQQ", None)]), NOON, LeveragedEtfConfig())
    assert no_value.severity is UNKNOWN and "market value of TQQQ" in no_value.message


# -- shares outstanding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "severity", "in_text"),
    [
        (500.0, OK, "Largest holding XYZ is 0.5% of shares outstanding"),
        (
            2_000.0,
            WARNING,
            "Sell about 1,000 XYZ shares (about USD 10,000.00) to get under 1% of shares "
            "outstanding",
        ),
        (5_000.0, CRITICAL, "100% margin at 5% or more"),
    ],
    ids=["ok", "warning-over-1pct", "critical-at-5pct"],
)
def test_shares_outstanding(quantity, severity, in_text):
    """Holding / shares outstanding: > 1% warning, >= 5% critical (config counts)."""
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


# -- allocation drift -------------------------------------------------------------------------

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
