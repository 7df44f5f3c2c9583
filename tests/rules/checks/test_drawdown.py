"""The ``drawdown`` rule: the market benchmark below its prior peak (seed 001), the account's NLV
drawdown beside it, and the 20% loan cut it names; the NLV measure with ``benchmark = ""``."""

from __future__ import annotations

from datetime import date

import pytest

from rules.checks.drawdown import DrawdownConfig, drawdown
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot

OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN


ACCOUNT_ONLY = DrawdownConfig(benchmark="")


def history(peak: float | None = None) -> EvaluationContext:
    """The context with the recorded NLV peak, when there is one."""
    return EvaluationContext(now=SAMPLE_TIME, peak_net_liquidation=peak)


@pytest.mark.parametrize(
    ("peak", "values", "severity", "clear", "in_text"),
    [
        (None, {}, OK, OK, "No recorded peak yet"),
        (110_000.0, {}, OK, OK, "9.1% below its peak of USD 110,000.00"),
        (113_000.0, {}, OK, WARNING, "11.5% below"),
        (
            125_000.0,
            {"cash_balance": -125_000.0},
            WARNING,
            WARNING,
            "Cut the margin loan by 20%: repay USD 25,000.00",
        ),
        (125_000.0, {"cash_balance": 5_000.0}, WARNING, WARNING, "No margin loan to cut"),
        (125_000.0, {"cash_balance": None}, WARNING, WARNING, "loan amount unknown"),
        (90_000.0, {}, OK, OK, "0% below its peak of USD 100,000.00"),
    ],
    ids=["no-peak", "ok", "ok-but-held", "warning-cut", "no-loan", "loan-unknown", "new-peak"],
)
def test_drawdown(peak, values, severity, clear, in_text):
    """Without a benchmark: NLV more than 12% below the peak: cut the margin loan by 20%."""
    finding = drawdown(sample_snapshot(**values), history(peak=peak), ACCOUNT_ONLY)
    assert finding.severity is severity
    assert finding.clear_severity is clear
    assert in_text in f"{finding.message} {finding.action}"


def test_drawdown_critical_and_missing():
    """Optional critical level; missing NLV is unknown."""
    config = DrawdownConfig(critical=0.18, benchmark="")
    finding = drawdown(sample_snapshot(), history(peak=125_000.0), config)
    assert finding.severity is CRITICAL
    gap = drawdown(sample_snapshot(net_liquidation=None), history(peak=1.0), ACCOUNT_ONLY)
    assert gap.severity is UNKNOWN and gap.data_missing


def market(price: float | None, peak: float | None, nlv_peak: float | None = None, **extra):
    """The context with the benchmark SPY's price and prior peak (2026-10-21)."""
    return EvaluationContext(
        now=SAMPLE_TIME,
        peak_net_liquidation=nlv_peak,
        benchmark_symbol="SPY",
        benchmark_price=price,
        benchmark_peak=peak,
        benchmark_peak_on=date(2026, 10, 21) if peak else None,
        **extra,
    )


def test_market_drawdown_past_12_percent_with_the_nlv_drawdown_beside_it():
    """The market's fall triggers, not the account's; the NLV drawdown is reported beside it.

    SPY 522.00 against its prior peak 600.00: 1 - 522 / 600 = 13.0% > 12%: warning. The
    sample account (NLV 100,000, GPV 150,000, cash -50,000: 1.5x gross) had an NLV peak of
    125,000: 1 - 100,000 / 125,000 = 20.0%, the fall leverage magnifies (1.5 x 13% = 19.5%).
    The action: cut the 50,000 loan by 20% = repay 10,000.00.
    """
    finding = drawdown(sample_snapshot(), market(522.0, 600.0, 125_000.0), DrawdownConfig())
    assert finding.severity is WARNING
    assert finding.value == pytest.approx(0.13)
    assert finding.threshold == 0.12
    assert "SPY 522.00 is 13% below its prior peak 600.00 (2026-10-21)" in finding.message
    assert "NLV is 20% below its peak of USD 125,000.00" in finding.message
    assert "leverage magnifies" in finding.message and "1.50x gross" in finding.message
    assert "withdrawal" in finding.message and "reset-peak" in finding.message
    assert finding.action == (
        "Cut the margin loan by 20%: repay USD 10,000.00 of USD 50,000.00 (deposit, or sell "
        "positions and keep the proceeds)"
    )
    assert finding.details["account_drawdown"] == pytest.approx(0.20)
    assert finding.details["market_drawdown"] == pytest.approx(0.13)


def test_the_account_falling_alone_does_not_trigger_the_market_rule():
    """An NLV 20% below its peak (a withdrawal, say) with SPY 5% off its peak stays ok:
    1 - 570 / 600 = 5%."""
    finding = drawdown(sample_snapshot(), market(570.0, 600.0, 125_000.0), DrawdownConfig())
    assert finding.severity is OK and finding.value == pytest.approx(0.05)
    assert "NLV is 20% below its peak" in finding.message


def test_a_price_above_the_prior_peak_is_the_new_peak():
    """SPY at 610 above a 600 peak: no drawdown (the peak is max(peak, price)); with no NLV
    peak recorded yet, NLV 100,000 is the account's peak (0% below it)."""
    finding = drawdown(sample_snapshot(), market(610.0, 600.0), DrawdownConfig())
    assert finding.severity is OK and finding.value == 0.0
    assert "NLV is 0% below its peak of USD 100,000.00" in finding.message
    no_nlv = sample_snapshot(net_liquidation=None)
    unknown = drawdown(no_nlv, market(610.0, 600.0), DrawdownConfig())
    assert "own NLV drawdown is unknown (no NetLiquidation)" in unknown.message


@pytest.mark.parametrize(
    ("price", "peak", "note", "said"),
    [
        (None, None, "IB refused the daily bars: error 162, no permissions", "no SPY price"),
        (522.0, None, "daily bars still loading", "no SPY prior peak"),
        (None, 600.0, None, "no data from IB yet"),
    ],
)
def test_missing_benchmark_data_holds_the_alert_and_says_so(price, peak, note, said):
    """Without the benchmark's price or peak the finding is data-missing (never resolves an
    alert), says what is missing and why, and leaves the account's status to its own
    figures (severity ok, value unknown)."""
    finding = drawdown(
        sample_snapshot(), market(price, peak, 125_000.0, benchmark_note=note), DrawdownConfig()
    )
    assert finding.data_missing and finding.value is None
    assert finding.severity is OK
    assert finding.message.startswith("Market drawdown unknown: ")
    assert said in finding.message
    if note:
        assert note in finding.message
    assert "NLV is 20% below its peak" in finding.message
