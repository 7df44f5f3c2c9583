"""Pure margin rules engine: standard library only.

Entry points: :data:`RULES` (rule id -> function), :func:`evaluate` (every enabled rule on one
account snapshot), :func:`overall_status`, the configuration :class:`RulesConfig`, and the
shared arithmetic in :mod:`rules.figures`.
"""

from rules import figures
from rules.config import RulesConfig, leveraged_factors
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
