"""The one catalog of rules: each rule declared once, with everything the rest derives from.

A :class:`RuleSpec` names the rule's stable id (the ``rule`` of ``check --json``), its function,
its configuration class (the ``[rules.<id>]`` section), the unit its measured value reads in,
the snapshot fields it reads, the other rules' sections it also receives, and the figures of
its findings that the history keeps. The engine (:mod:`rules.registry`), the configuration
aggregate, notification formatting, ``check`` output and the history all read this table, in
its order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rules import config, exposure, financing, health, margin
from rules.model import Finding
from rules.text import Unit

RuleFunction = Callable[..., Finding]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """Everything about one rule that is not its arithmetic.

    ``shares`` maps a keyword argument of ``check`` to the id of another rule whose section it
    also receives (the leveraged-ETF rule reads the cushion levels). ``history`` maps a key of
    the per-minute history row to the key of the finding's ``details`` it is copied from.
    """

    id: str
    check: RuleFunction
    config: type
    unit: Unit
    summary: str
    reads: tuple[str, ...] = ()
    shares: Mapping[str, str] = field(default_factory=dict)
    history: Mapping[str, str] = field(default_factory=dict)


CATALOG: tuple[RuleSpec, ...] = (
    RuleSpec(
        "cushion",
        margin.cushion,
        config.CushionConfig,
        "percent",
        "ExcessLiquidity / NLV; IBKR's warning line; EL < 0",
        reads=("net_liquidation", "excess_liquidity", "cushion", "maint_margin_req"),
    ),
    RuleSpec(
        "leverage",
        exposure.leverage,
        config.LeverageConfig,
        "multiple",
        "gross leverage GPV / NLV",
        reads=("net_liquidation", "gross_position_value"),
    ),
    RuleSpec(
        "margin_utilization",
        exposure.margin_utilization,
        config.MarginUtilizationConfig,
        "percent",
        "margin loan / NLV",
        reads=("net_liquidation", "cash_balance"),
    ),
    RuleSpec(
        "cash_reserve",
        financing.cash_reserve,
        config.CashReserveConfig,
        "money",
        "reserve vs two quarters of financing cost",
        reads=("cash_balance", "excess_liquidity", "positions"),
        shares={"financing": "financing_cost"},
    ),
    RuleSpec(
        "financing_cost",
        financing.financing_cost,
        config.FinancingCostConfig,
        "money",
        "tiered annual/daily cost, effective rate, +0.5 pp, year-over-year rise",
        reads=("cash_balance",),
        history={"annual_financing_cost": "annual_cost"},
    ),
    RuleSpec(
        "drawdown",
        financing.drawdown,
        config.DrawdownConfig,
        "percent",
        "NLV below its recorded peak; the action names the 20% loan cut",
        reads=("net_liquidation", "cash_balance"),
    ),
    RuleSpec(
        "concentration",
        exposure.concentration,
        config.ConcentrationConfig,
        "percent",
        "a holding's share of NLV (stocks vs ETFs, per-symbol overrides)",
        reads=("net_liquidation", "positions"),
        shares={"leveraged": "leveraged_etf"},
    ),
    RuleSpec(
        "leveraged_etf",
        exposure.leveraged_etf,
        config.LeveragedEtfConfig,
        "percent",
        "leveraged/inverse ETF sleeve; cushion if their Reg T requirement applied now",
        reads=("net_liquidation", "excess_liquidity", "positions"),
        shares={"cushion": "cushion"},
        history={"leveraged_etf_share": "sleeve_share"},
    ),
    RuleSpec(
        "shares_outstanding",
        exposure.shares_outstanding,
        config.SharesOutstandingConfig,
        "percent",
        "holding / shares outstanding (config or IB fundamentals)",
        reads=("positions",),
    ),
    RuleSpec(
        "allocation_drift",
        exposure.allocation_drift,
        config.AllocationDriftConfig,
        "percent",
        "weights vs targets, with the trades that restore them",
        reads=("positions",),
    ),
    RuleSpec(
        "look_ahead",
        margin.look_ahead,
        config.LookAheadConfig,
        "percent",
        "LookAheadExcessLiquidity and the look-ahead cushion",
        reads=(
            "net_liquidation",
            "excess_liquidity",
            "look_ahead_excess_liquidity",
            "look_ahead_maint_margin_req",
            "look_ahead_next_change",
            "gross_position_value",
        ),
        shares={"cushion": "cushion"},
    ),
    RuleSpec(
        "sma",
        margin.sma,
        config.SmaConfig,
        "money",
        "Reg T SMA",
        reads=("sma",),
    ),
    RuleSpec(
        "pm_equity_floor",
        margin.pm_equity_floor,
        config.PmEquityFloorConfig,
        "money",
        "portfolio-margin accounts' NLV",
        reads=("net_liquidation", "exchange_rates"),
    ),
    RuleSpec(
        "distance_to_liquidation",
        margin.distance_to_liquidation,
        config.DistanceToLiquidationConfig,
        "percent",
        "the uniform move that empties ExcessLiquidity",
        reads=(
            "net_liquidation",
            "excess_liquidity",
            "gross_position_value",
            "maint_margin_req",
            "positions",
        ),
    ),
    RuleSpec(
        "min_equity",
        margin.min_equity,
        config.MinEquityConfig,
        "money",
        "NLV in USD",
        reads=("net_liquidation", "exchange_rates"),
    ),
    RuleSpec(
        "stale_data",
        health.stale_data,
        config.StaleDataConfig,
        "minutes",
        "age of IB's values; time disconnected",
    ),
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


def history_figures_of(findings: Any) -> dict[str, Any]:
    """The history keys the catalog declares, taken from ``findings``' details.

    A finding whose data was missing contributes nothing (``None``).
    """
    figures: dict[str, Any] = {}
    by_rule = {finding.rule: finding for finding in findings}
    for entry in CATALOG:
        for key, detail in entry.history.items():
            finding = by_rule.get(entry.id)
            usable = finding is not None and not finding.data_missing
            figures[key] = finding.details.get(detail) if usable else None
    return figures
