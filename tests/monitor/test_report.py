"""What ``check`` reports: the ``--json`` entry of an account and the plugin's lines
(monitor/report.py), whose figures read in the unit each rule declares."""

from __future__ import annotations

from datetime import timedelta

import pytest

from monitor.report import (
    EXIT_CODES,
    REPORTED_FIGURES,
    account_report,
    plugin_output,
    report,
    unknown,
)
from rules import RulesConfig, evaluate
from rules.checks.cushion import CushionConfig
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot


def sample_report() -> dict:
    """The sample account: NLV 100,000, EL 62,500 (cushion 62.5%), GPV 150,000 (1.5x), SMA
    20,000, cash -50,000 (a loan of 50% of NLV, above the 30% cap: a warning)."""
    snapshot = sample_snapshot(cushion=0.625)
    context = EvaluationContext(now=SAMPLE_TIME, last_update=SAMPLE_TIME - timedelta(minutes=1))
    return report([account_report("DU111", snapshot, evaluate(snapshot, context))])


def test_an_account_entry_holds_every_reported_figure_and_one_finding_per_rule():
    """The entry carries each figure of REPORTED_FIGURES, the position count, the worst
    severity and the findings; the report's status is the worst over every finding."""
    result = sample_report()
    (entry,) = result["accounts"]
    assert set(REPORTED_FIGURES) <= set(entry)
    assert entry["net_liquidation"] == 100_000.0 and entry["cushion"] == 0.625
    assert entry["positions"] == 0
    assert {finding["rule"] for finding in entry["findings"]} >= {"cushion", "leverage", "sma"}
    assert entry["status"] == result["status"] == "warning"
    assert EXIT_CODES[Severity(result["status"])] == 1


def test_no_account_or_no_gateway_is_unknown_with_the_reason():
    """Nothing evaluated is never ``ok``: status unknown (exit 3) and an error to read."""
    assert report([])["status"] == "unknown"
    assert "no managed accounts" in report([])["error"]
    assert unknown("gateway unreachable") == {
        "status": "unknown",
        "error": "gateway unreachable",
        "accounts": [],
    }
    assert EXIT_CODES[Severity.UNKNOWN] == 3


def test_the_plugin_lines_show_each_value_in_its_rules_unit():
    """The loan of 50% of NLV against the 30% cap reads as percentages on the first line; the
    details give NLV and EL as money, the cushion 62.5% as a percentage and both leverages
    1.5x as multiples, then the warning with the action that clears it."""
    lines = plugin_output(sample_report(), RulesConfig(), None).splitlines()
    assert lines[0].startswith("MARGIN WARNING - DU111 margin_utilization 50% > 30% | ")
    assert lines[1] == (
        "DU111 (USD) WARNING: NLV USD 100,000.00, EL USD 62,500.00, cushion 62.50%, "
        "net 1.50x, gross 1.50x"
    )
    assert lines[2].startswith("  WARNING margin_utilization: The margin loan USD 50,000.00")
    assert lines[3].startswith("    -> Sell about USD 22,000.00 of long positions")


def test_a_deficit_account_is_critical_and_shows_no_meaningless_ratio():
    """NLV -10,000 and EL -27,500 (IB's Cushion a bogus 2.75, EL / NLV of two negatives):
    the entry's cushion and both leverages are null, each with the reason; the status is
    critical even with the cushion rule disabled and the ratio rules unable to compute."""
    snapshot = sample_snapshot(net_liquidation=-10_000.0, excess_liquidity=-27_500.0, cushion=2.75)
    context = EvaluationContext(now=SAMPLE_TIME, last_update=SAMPLE_TIME)
    config = RulesConfig(cushion=CushionConfig(enabled=False))
    entry = account_report("DU111", snapshot, evaluate(snapshot, context, config))
    assert "cushion" not in {finding["rule"] for finding in entry["findings"]}
    assert entry["status"] == "critical"
    assert (entry["cushion"], entry["leverage"], entry["net_leverage"]) == (None, None, None)
    assert entry["null_reasons"]["cushion"].startswith("NetLiquidation is USD -10,000.00")
    assert report([entry])["status"] == "critical"
    lines = plugin_output(report([entry]), RulesConfig(), None).splitlines()
    assert lines[0].startswith("MARGIN CRITICAL - ")
    assert "cushion n/a, net n/a, gross n/a" in lines[1]
    assert lines[2].startswith("  n/a: NetLiquidation is USD -10,000.00")
    assert "not positive" in lines[2]


def test_net_leverage_is_reported_beside_gross():
    """Long 180,000 and short 60,000 on NLV 100,000: net 1.2x, gross 2.4x (IB's GPV / NLV);
    an account with no reason to null anything has empty null_reasons."""
    from rules.samples import stock

    snapshot = sample_snapshot(
        (stock("AAA", 180_000.0), stock("ZZZ", -60_000.0)),
        gross_position_value=240_000.0,
        cushion=0.625,
    )
    entry = account_report("DU111", snapshot, [])
    assert entry["net_leverage"] == pytest.approx(1.2)
    assert entry["leverage"] == pytest.approx(2.4)
    assert entry["null_reasons"] == {}
