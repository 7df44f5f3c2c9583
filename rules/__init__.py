"""Pure margin rules engine: standard library only.

Entry points: :data:`RULES` (rule id -> function), :func:`evaluate` (every enabled rule on one
account snapshot), :func:`overall_status`, :func:`account_status` (never milder than EL < 0),
the configuration :class:`RulesConfig`, the shared arithmetic in :mod:`rules.figures`, and
:mod:`rules.actions` (what executing a remedy does to a snapshot). Rule ``<id>`` lives in
``rules/checks/<id>.py`` with its settings; :mod:`rules.catalog` puts the rules in order.
"""

from rules import figures
from rules.checks.leveraged_etf import leveraged_factors
from rules.config import RulesConfig
from rules.registry import (
    RULES,
    account_status,
    enabled_rules,
    evaluate,
    overall_status,
    run_rule,
)

__all__ = [
    "RULES",
    "RulesConfig",
    "account_status",
    "enabled_rules",
    "evaluate",
    "figures",
    "leveraged_factors",
    "overall_status",
    "run_rule",
]
