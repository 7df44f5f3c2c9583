"""The ``leveraged_etf`` rule: the sleeve, the projected cushion at the Reg T requirement
inside and outside the window, shorts, custom factors, and the factor table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rules.checks.cushion import CushionConfig
from rules.checks.leveraged_etf import LeveragedEtfConfig, leveraged_etf, leveraged_factors
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot, stock

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
BEFORE_CLOSE = EvaluationContext(now=datetime(2026, 5, 11, 19, 45, tzinfo=UTC))  # 15:45 EDT
SATURDAY = EvaluationContext(now=datetime(2026, 5, 16, 19, 45, tzinfo=UTC))
OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN
CRASHING = {"excess_liquidity": 15_000.0}
SLEEVE = [stock("TQQQ", 40_000.0, stock_type="ETF"), stock("SOXL", 20_000.0, stock_type="ETF")]


def test_leveraged_etf_none_held_is_not_applicable():
    """No leveraged ETFs: ok with a message, not missing data."""
    finding = leveraged_etf(sample_snapshot([stock("AAPL", 5_000.0)]), NOON, LeveragedEtfConfig())
    assert finding.severity is OK and not finding.data_missing
    assert "No leveraged ETFs held" in finding.message


def test_a_minus_one_x_fund_is_not_leveraged():
    """SH (-1x) is an inverse fund, not a leveraged one (|factor| > 1 is): it is no part of
    the sleeve, and its requirement is the base itself, Max(50%, Min(50% x 1, 100%)) = 50%.
    The factor table is data: configured as -2x, the same holding is leveraged."""
    snapshot = sample_snapshot([stock("SH", 30_000.0, stock_type="ETF")])
    finding = leveraged_etf(snapshot, BEFORE_CLOSE, LeveragedEtfConfig())
    assert finding.severity is OK and finding.value == 0.0
    assert "SH: a factor of 1 or less in size is not leveraged" in finding.message
    doubled = leveraged_etf(snapshot, BEFORE_CLOSE, LeveragedEtfConfig(factors={"SH": -2}))
    assert doubled.severity is WARNING  # a 30% sleeve over the 10% cap
    (row,) = doubled.details["positions"]
    assert (row["factor"], row["requirement"], row["current_rate"]) == (-2.0, 1.0, 0.5)


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
    """A 15% sleeve breaks the 10% cap; it clears at 9%: sell 15,000 - 9,000 = 6,000 of
    leveraged ETFs, or deposit 15,000 / 0.09 - 100,000 = 66,666.67. No deadline: the sleeve
    cap is not about the close."""
    finding = leveraged_etf(sample_snapshot([stock("TQQQ", 15_000.0)]), NOON, LeveragedEtfConfig())
    assert finding.severity is WARNING
    assert finding.action == (
        "Sell about USD 6,000.00 of leveraged ETFs (TQQQ; sized at 100%, the lowest Reg T "
        "requirement among them) or deposit about USD 66,666.67 to keep the sleeve at 9% of "
        "NLV, where the alert clears"
    )


@pytest.mark.parametrize(
    ("context", "severity", "in_action"),
    [
        (
            BEFORE_CLOSE,
            CRITICAL,
            "Now, sell about USD 51,000.00 of leveraged ETFs (TQQQ, SOXL; sized at 100%, the "
            "lowest Reg T requirement among them) or deposit about USD 566,666.67 to keep the "
            "sleeve at 9% of NLV and a 20% cushion through the close, where the alert clears",
        ),
        (NOON, WARNING, "Before 15:30 America/New_York, sell about USD 51,000.00"),
        (SATURDAY, WARNING, "Before 15:30 America/New_York"),
    ],
    ids=["inside-window-critical", "midday-warning", "weekend-warning"],
)
def test_leveraged_etf_projected_cushion(context, severity, in_action):
    """EL 15,000; 60,000 of 3x ETFs at 75% maintenance -> 100% Reg T leaves a 0% cushion.
    The cut must bring the sleeve to 9% (60,000 - 9,000 = 51,000) and the projected cushion to
    20% (each dollar sold frees its 100% Reg T requirement: 20,000 / 100% = 20,000): 51,000.
    A deposit: the sleeve needs 60,000 / 0.09 - 100,000 = 566,666.67, the cushion 20,000 /
    0.8 = 25,000: 566,666.67."""
    finding = leveraged_etf(sample_snapshot(SLEEVE, **CRASHING), context, LeveragedEtfConfig())
    assert finding.details["projected_cushion"] == pytest.approx(0.0)
    assert finding.severity is severity
    assert finding.value == pytest.approx(0.0)
    assert finding.threshold == pytest.approx(0.10)
    assert in_action in finding.action
    trade, deposit = (remedy.actions[0] for remedy in finding.remedies)
    assert (trade.kind, trade.amount, trade.symbols, trade.rate) == (
        "sell",
        51_000.0,
        ("TQQQ", "SOXL"),
        1.0,
    )
    assert (deposit.kind, deposit.amount) == ("deposit", 566_666.67)


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


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: LeveragedEtfConfig(window_start="3pm"), "window_start must be a time 'HH:MM'"),
        (lambda: LeveragedEtfConfig(factors={"XYZ": 50}), "factors.XYZ"),
    ],
    ids=["window-format", "factor-range"],
)
def test_leveraged_etf_settings_say_what_to_fix(build, fragment):
    """Each ValueError names the field and the problem."""
    with pytest.raises(ValueError) as caught:
        build()
    assert fragment in str(caught.value)


def test_leveraged_etf_factors_are_upper_cased():
    """Symbol keys are normalised to IB's upper case."""
    assert LeveragedEtfConfig(factors={"tqqq": 2}).factors == {"TQQQ": 2.0}


def test_leveraged_factors_merge_over_the_builtin_table():
    """Config factors add to and override the built-in table; 0 removes a symbol."""
    table = leveraged_factors(LeveragedEtfConfig(factors={"NEWX": 2, "TQQQ": 0, "UVXY": 2}))
    assert table["NEWX"] == 2
    assert "TQQQ" not in table
    assert table["UVXY"] == 2
    builtin = leveraged_factors()
    for symbol, factor in {
        "TQQQ": 3, "SQQQ": -3, "UPRO": 3, "SPXU": -3, "SSO": 2, "SDS": -2, "QLD": 2,
        "SOXL": 3, "SOXS": -3, "TNA": 3, "TZA": -3, "TMF": 3, "TMV": -3,
    }.items():  # fmt: skip
        assert builtin[symbol] == factor
