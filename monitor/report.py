"""What ``check --json`` reports about an account: one source for every view of the figures.

An account's entry holds the snapshot figures of :data:`REPORTED_FIGURES` (``None`` where IB
sent no value), its number of positions, its worst severity and every finding; the report's
status is the worst over all accounts and its exit code follows the Nagios convention.
"""

from __future__ import annotations

from typing import Any

from rules.model import AccountSnapshot, Finding, Severity, worst

#: Snapshot figures in each account of ``check --json``.
REPORTED_FIGURES = (
    "base_currency",
    "net_liquidation",
    "excess_liquidity",
    "cushion",
    "gross_position_value",
    "maint_margin_req",
    "init_margin_req",
    "equity_with_loan",
    "available_funds",
    "sma",
    "margin_loan",
    "leverage",
)

#: Exit status per overall severity (Nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
EXIT_CODES = {Severity.OK: 0, Severity.WARNING: 1, Severity.CRITICAL: 2, Severity.UNKNOWN: 3}


def account_report(
    account: str, snapshot: AccountSnapshot | None, findings: list[Finding]
) -> dict[str, Any]:
    """One account's entry in ``check --json``."""
    entry: dict[str, Any] = {"account": account}
    entry.update({name: getattr(snapshot, name, None) for name in REPORTED_FIGURES})
    entry["positions"] = len(snapshot.positions) if snapshot else 0
    entry["status"] = worst(f.severity for f in findings).value
    entry["findings"] = [finding.to_dict() for finding in findings]
    return entry


def report(accounts: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole ``check --json`` object of the accounts' entries (``unknown`` without any)."""
    if not accounts:
        return unknown("the gateway reported no managed accounts (or none of [ib] accounts)")
    severities = [Severity(f["severity"]) for a in accounts for f in a["findings"]]
    return {"status": worst(severities).value, "accounts": accounts}


def unknown(error: str) -> dict[str, Any]:
    """The ``check --json`` object when nothing could be evaluated, saying why."""
    return {"status": Severity.UNKNOWN.value, "error": error, "accounts": []}
