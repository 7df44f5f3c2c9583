"""The catalog of rules and the engine that runs it.

``RULES`` maps each stable rule id (the ``rule`` field of ``check --json``) to its function, in
the order of the catalog. :func:`evaluate` runs every enabled rule on one account snapshot and
returns exactly one finding per rule; a rule that raises becomes an ``unknown`` finding with the
error text, so one bad rule never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from rules import exposure, financing, health, margin
from rules.config import RulesConfig
from rules.model import AccountSnapshot, EvaluationContext, Finding, Severity, worst

RuleFunction = Callable[..., Finding]

RULES: dict[str, RuleFunction] = {
    "cushion": margin.cushion,
    "leverage": exposure.leverage,
    "margin_utilization": exposure.margin_utilization,
    "cash_reserve": financing.cash_reserve,
    "financing_cost": financing.financing_cost,
    "drawdown": financing.drawdown,
    "concentration": exposure.concentration,
    "leveraged_etf": exposure.leveraged_etf,
    "shares_outstanding": exposure.shares_outstanding,
    "allocation_drift": exposure.allocation_drift,
    "look_ahead": margin.look_ahead,
    "sma": margin.sma,
    "pm_equity_floor": margin.pm_equity_floor,
    "distance_to_liquidation": margin.distance_to_liquidation,
    "min_equity": margin.min_equity,
    "stale_data": health.stale_data,
}

#: Rules that also read another rule's section: keyword -> section name.
_SHARED_SECTIONS: dict[str, dict[str, str]] = {
    "cash_reserve": {"financing": "financing_cost"},
    "concentration": {"leveraged": "leveraged_etf"},
    "leveraged_etf": {"cushion": "cushion"},
    "look_ahead": {"cushion": "cushion"},
}


def rule_config(config: RulesConfig, rule: str) -> Any:
    """The ``[rules.<rule>]`` section of ``config``."""
    return getattr(config, rule)


def enabled_rules(config: RulesConfig) -> list[str]:
    """The ids of the enabled rules, in catalog order."""
    return [rule for rule in RULES if rule_config(config, rule).enabled]


def run_rule(
    rule: str, snapshot: AccountSnapshot, context: EvaluationContext, config: RulesConfig
) -> Finding:
    """Run one rule with its section (and any shared sections); an exception becomes ``unknown``."""
    function = RULES[rule]
    shared = {
        keyword: rule_config(config, section)
        for keyword, section in _SHARED_SECTIONS.get(rule, {}).items()
    }
    try:
        finding = function(snapshot, context, rule_config(config, rule), **shared)
    except Exception as error:  # a broken rule must never stop the engine
        finding = Finding(
            rule=rule,
            account=snapshot.account,
            severity=Severity.UNKNOWN,
            value=None,
            threshold=None,
            message=f"rule {rule} failed: {type(error).__name__}: {error}",
            data_missing=True,
            estimated=snapshot.estimated,
            details={"error": type(error).__name__},
        )
    if snapshot.estimated and snapshot.authoritative_as_of is not None:
        age = (snapshot.as_of - snapshot.authoritative_as_of).total_seconds()
        finding = replace(finding, authoritative_age=max(0.0, age))
    return finding


def evaluate(
    snapshot: AccountSnapshot, context: EvaluationContext, config: RulesConfig | None = None
) -> list[Finding]:
    """One finding per enabled rule for ``snapshot``, in catalog order.

    A disabled rule is simply absent from the result.
    """
    settings = config if config is not None else RulesConfig()
    return [run_rule(rule, snapshot, context, settings) for rule in enabled_rules(settings)]


def overall_status(findings: Iterable[Finding]) -> Severity:
    """The worst severity among ``findings`` (``ok`` when there are none)."""
    return worst(finding.severity for finding in findings)
