"""Pure margin rules engine: standard library only.

Entry points: :data:`RULES` (rule id -> function), :func:`evaluate` (every enabled rule on one
account snapshot), :func:`overall_status`, the configuration :class:`RulesConfig`, and the
shared arithmetic in :mod:`rules.figures`. Rule ``<id>`` lives in ``rules/checks/<id>.py`` with
its settings; :mod:`rules.catalog` puts the rules in order.
"""

from rules import figures
from rules.checks.leveraged_etf import leveraged_factors
from rules.config import RulesConfig
from rules.registry import RULES, enabled_rules, evaluate, overall_status, run_rule

__all__ = [
    "RULES",
    "RulesConfig",
    "enabled_rules",
    "evaluate",
    "figures",
    "leveraged_factors",
    "overall_status",
    "run_rule",
]
