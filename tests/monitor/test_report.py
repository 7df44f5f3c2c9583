"""What ``check`` reports: the ``--json`` entry of an account (monitor/report.py) and the
readable table (monitor/cli.py), whose figures read in the unit each rule declares."""

from __future__ import annotations

from datetime import timedelta

from monitor.cli import render_check
from monitor.report import EXIT_CODES, REPORTED_FIGURES, account_report, report, unknown
from rules import evaluate
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


def test_the_table_shows_each_value_in_its_rules_unit():
    """Cushion 62.5% against 20% as percentages, leverage 1.5x against 1.6x as multiples,
    SMA USD 20,000 against USD 0 as money; a rule without a value reads n/a."""
    lines = render_check(sample_report()).splitlines()

    def row(rule: str) -> list[str]:
        return next(line for line in lines if line.split()[:1] == [rule]).split()

    assert row("cushion")[2:4] == ["62.50%", "20.00%"]
    assert row("leverage")[2:4] == ["1.50x", "1.60x"]
    assert row("sma")[2:6] == ["USD", "20,000.00", "USD", "0.00"]
    assert row("allocation_drift")[2:4] == ["n/a", "n/a"]
    assert "  Net liquidation               USD 100,000.00" in lines
    assert "  Cushion                               62.50%" in lines
