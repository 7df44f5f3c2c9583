"""The ``concentration`` rule: stock and ETF caps, overrides, symbols summed across
positions."""

from __future__ import annotations

import pytest

from rules.checks.concentration import ConcentrationConfig, concentration
from rules.model import EvaluationContext, Position, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot, stock

NOON = EvaluationContext(now=SAMPLE_TIME)  # Monday 12:00 New York
OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN


def test_concentration_single_stock_over_cap():
    """AAPL at 32% of NLV breaks the 20% stock cap; VOO at 45% is within the ETF cap. The alert
    clears at 19% (cap less the 1 pp clear margin): sell 32,000 - 19,000 = 13,000 (NLV does not
    move), or deposit 32,000 / 0.19 - 100,000 = 68,421.06 (68,421.052... rounded up)."""
    snapshot = sample_snapshot(
        [stock("AAPL", 32_000.0), stock("VOO", 45_000.0, stock_type="ETF"), stock("KO", 5_000.0)]
    )
    finding = concentration(snapshot, NOON, ConcentrationConfig())
    assert finding.severity is WARNING
    assert finding.value == pytest.approx(0.32)
    assert finding.threshold == pytest.approx(0.20)
    assert "AAPL is 32% of NLV (cap 20%)" in finding.message
    assert finding.action == (
        "Sell about USD 13,000.00 of AAPL (to 19% of NLV), where the alert clears; or deposit "
        "about USD 68,421.06 instead"
    )
    sale, deposit = (remedy.actions for remedy in finding.remedies)
    assert [(a.kind, a.symbols, a.amount) for a in sale] == [("sell", ("AAPL",), 13_000.0)]
    assert [(a.kind, a.amount) for a in deposit] == [("deposit", 68_421.06)]
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
            "Sell about USD 6,000.00 of VOO (to 49% of NLV)",
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
            "Buy back about USD 6,000.00 of MSFT",
        ),
        ([], ConcentrationConfig(), OK, "No stock or ETF positions"),
    ],
    ids=["ok", "override", "etf-cap", "leveraged-etf-is-etf", "short", "no-positions"],
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


def sap_without_a_rate() -> Position:
    """10 SAP in EUR worth EUR 81,818.18 (USD 90,000 at 1.10), but IB sent no EUR rate."""
    return Position("SAP", 7, "STK", 10.0, "EUR", 8_181.818, 81_818.18, None)


def test_a_holding_without_an_exchange_rate_makes_the_rule_unknown_naming_the_rate():
    """AAPL is USD 10,000 of NLV 100,000 (10%, under the 20% cap); SAP would be USD 90,000
    (90%) at 1.10 but IB sent no EUR rate, so its share cannot be known. The rule must not
    read "ok": it is unknown, data missing, and names the rate (and the holding)."""
    snapshot = sample_snapshot([stock("AAPL", 10_000.0), sap_without_a_rate()])
    finding = concentration(snapshot, NOON, ConcentrationConfig())
    assert finding.severity is UNKNOWN and finding.data_missing
    assert finding.message == "data missing: exchange rate EUR to USD (for SAP); not evaluated"


def test_a_breach_among_the_valued_holdings_stands_beside_an_unvalued_one():
    """AAPL at USD 32,000 is 32% of NLV 100,000, over the 20% cap, whatever SAP is worth: a
    warning, whose message also names the missing rate; a holding with no value at all is
    named as such."""
    snapshot = sample_snapshot(
        [stock("AAPL", 32_000.0), sap_without_a_rate(), stock("XYZ", None)]
    )
    finding = concentration(snapshot, NOON, ConcentrationConfig())
    assert finding.severity is WARNING and finding.value == pytest.approx(0.32)
    assert finding.message.endswith(
        "; missing: exchange rate EUR to USD (for SAP), market value of XYZ"
    )
    alone = concentration(sample_snapshot([stock("XYZ", None)]), NOON, ConcentrationConfig())
    assert alone.severity is UNKNOWN and "market value of XYZ" in alone.message


def test_a_holding_inside_the_clear_band_is_trimmed_too():
    """AAPL at 25% breaks the cap; KO at 19.5% is under it but above the 19% clear level, so
    it would hold the alert after AAPL alone is cut: the action cuts both, AAPL by 6,000 and
    KO by 500, and the deposit covers the larger ratio (25,000 / 0.19 - 100,000 = 31,578.95)."""
    snapshot = sample_snapshot([stock("AAPL", 25_000.0), stock("KO", 19_500.0)])
    finding = concentration(snapshot, NOON, ConcentrationConfig())
    assert finding.severity is WARNING
    assert "KO" not in finding.message  # not a breach
    sale, deposit = (remedy.actions for remedy in finding.remedies)
    assert [(a.symbols[0], a.amount) for a in sale] == [("AAPL", 6_000.0), ("KO", 500.0)]
    assert deposit[0].amount == 31_578.95
