"""What ``check --json`` reports about an account: one source for every view of the figures.

An account's entry holds the snapshot figures of :data:`REPORTED_FIGURES` (``None`` where IB
sent no value, or where a ratio would mean nothing: ``null_reasons`` then says why), its number
of positions, its status and every finding. The status is never milder than what
ExcessLiquidity alone says (EL < 0 is critical); the report's status is the worst over all
accounts and its exit code follows the Nagios convention.
"""

from __future__ import annotations

from typing import Any

from rules import account_status
from rules.common import MIN_EQUITY, Book, exposure_of
from rules.model import AccountSnapshot, Finding, Severity, is_number, worst
from rules.text import money

#: Snapshot figures in each account of ``check --json``. ``cushion`` is EL / NLV, ``leverage``
#: gross leverage GPV / NLV, ``net_leverage`` (long - short) / NLV (negative: net short); all
#: three are null unless NLV is positive.
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
    "net_leverage",
)

#: Exit status per overall severity (Nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
EXIT_CODES = {Severity.OK: 0, Severity.WARNING: 1, Severity.CRITICAL: 2, Severity.UNKNOWN: 3}

_RATIOS = ("cushion", "leverage", "net_leverage")


def account_report(
    account: str, snapshot: AccountSnapshot | None, findings: list[Finding]
) -> dict[str, Any]:
    """One account's entry in ``check --json``."""
    entry: dict[str, Any] = {"account": account}
    figures, reasons = reported_figures(snapshot)
    entry.update(figures)
    entry["null_reasons"] = reasons
    entry["positions"] = len(snapshot.positions) if snapshot else 0
    entry["status"] = account_status(snapshot, findings).value
    entry["findings"] = [finding.to_dict() for finding in findings]
    return entry


def reported_figures(
    snapshot: AccountSnapshot | None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The figures of :data:`REPORTED_FIGURES` and, for each ratio left null, why."""
    figures: dict[str, Any] = {
        name: getattr(snapshot, name, None) for name in REPORTED_FIGURES if name not in _RATIOS
    }
    reasons: dict[str, str] = {}
    if snapshot is None:
        return {**figures, **dict.fromkeys(_RATIOS)}, reasons
    nlv = snapshot.net_liquidation
    figures["cushion"] = snapshot.measured_cushion
    figures["leverage"] = snapshot.leverage
    figures["net_leverage"] = None
    if not is_number(nlv):
        why = "NetLiquidation was not reported"
    elif nlv < MIN_EQUITY:
        why = (
            f"NetLiquidation is {money(nlv, snapshot.base_currency)}: a ratio to equity that is "
            "not positive means nothing"
        )
    else:
        why = ""
        exposure = exposure_of(snapshot, Book.of(snapshot))
        if exposure is not None:
            figures["net_leverage"] = exposure.net / nlv
        else:
            reasons["net_leverage"] = "a position has no market value yet"
    if why:
        reasons.update(dict.fromkeys(_RATIOS, why))
    else:
        if figures["cushion"] is None:
            reasons["cushion"] = "neither Cushion nor ExcessLiquidity was reported"
        if figures["leverage"] is None:
            reasons["leverage"] = "GrossPositionValue was not reported"
    return figures, reasons


def report(accounts: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole ``check --json`` object of the accounts' entries (``unknown`` without any)."""
    if not accounts:
        return unknown("the gateway reported no managed accounts (or none of [ib] accounts)")
    severities = [Severity(account["status"]) for account in accounts]
    return {"status": worst(severities).value, "accounts": accounts}


def unknown(error: str) -> dict[str, Any]:
    """The ``check --json`` object when nothing could be evaluated, saying why."""
    return {"status": Severity.UNKNOWN.value, "error": error, "accounts": []}
