"""The one catalog of rules: every rule's :class:`RuleSpec`, in the order findings are reported.

Each rule declares its spec beside its function and settings (``rules/checks/<id>.py``); this
module only puts them in order. The engine (:mod:`rules.registry`), the configuration aggregate
(:class:`rules.config.RulesConfig`), notification formatting, ``check`` output and the history
all read this table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rules.checks import (
    allocation_drift,
    cash_reserve,
    concentration,
    cushion,
    distance_to_liquidation,
    drawdown,
    financing_cost,
    gross_leverage,
    leverage,
    leveraged_etf,
    look_ahead,
    margin_terms,
    margin_utilization,
    min_equity,
    pm_equity_floor,
    shares_outstanding,
    sma,
    stale_data,
)
from rules.common import RuleSpec
from rules.model import Finding
from rules.text import Unit

__all__ = [
    "CATALOG",
    "HEALTH_RULE",
    "RuleSpec",
    "history_figures_of",
    "spec",
    "unit_of",
]

CATALOG: tuple[RuleSpec, ...] = (
    cushion.SPEC,
    leverage.SPEC,
    gross_leverage.SPEC,
    margin_utilization.SPEC,
    cash_reserve.SPEC,
    financing_cost.SPEC,
    drawdown.SPEC,
    margin_terms.SPEC,
    concentration.SPEC,
    leveraged_etf.SPEC,
    shares_outstanding.SPEC,
    allocation_drift.SPEC,
    look_ahead.SPEC,
    sma.SPEC,
    pm_equity_floor.SPEC,
    distance_to_liquidation.SPEC,
    min_equity.SPEC,
    stale_data.SPEC,
)

_BY_ID: dict[str, RuleSpec] = {entry.id: entry for entry in CATALOG}

#: The rule that judges the data link itself: it runs even when an account's data is missing.
HEALTH_RULE = "stale_data"


def spec(rule: str) -> RuleSpec:
    """The catalog entry of ``rule``; KeyError naming the known ids otherwise."""
    try:
        return _BY_ID[rule]
    except KeyError:
        raise KeyError(f"unknown rule {rule!r}; known: {', '.join(_BY_ID)}") from None


def unit_of(rule: str) -> Unit:
    """How the measured value of ``rule`` reads (``number`` for an id not in the catalog)."""
    entry = _BY_ID.get(rule)
    return entry.unit if entry is not None else "number"


def history_figures_of(findings: Iterable[Finding]) -> dict[str, Any]:
    """The history keys the catalog declares, taken from ``findings``' details.

    A finding whose data was missing contributes nothing (``None``).
    """
    figures: dict[str, Any] = {}
    by_rule = {finding.rule: finding for finding in findings}
    for entry in CATALOG:
        for key, detail in entry.history.items():
            finding = by_rule.get(entry.id)
            if finding is None or finding.data_missing:
                figures[key] = None
            else:
                figures[key] = finding.details.get(detail)
    return figures
