"""The engine that runs the catalog.

``RULES`` maps each stable rule id (the ``rule`` field of ``check --json``) to its function, in
the order of :data:`rules.catalog.CATALOG`, from which everything here derives.
:func:`evaluate` runs every enabled rule on one account snapshot and returns exactly one finding
per rule; a rule that raises becomes an ``unknown`` finding with the
error text, so one bad rule never stops the others. It sums the positions once
(:class:`rules.common.Book`) and hands the sums to each rule that reads positions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from rules.catalog import CATALOG, spec
from rules.common import Book, RuleConfig, RuleFunction
from rules.config import RulesConfig
from rules.model import (
    AccountSnapshot,
    EvaluationContext,
    Finding,
    Severity,
    falls_short,
    is_number,
    worst,
)

RULES: dict[str, RuleFunction] = {entry.id: entry.check for entry in CATALOG}

#: The rules that read positions: they take the per-snapshot sums as ``book=``.
_READ_POSITIONS = frozenset(entry.id for entry in CATALOG if "positions" in entry.reads)


def _section(config: RulesConfig, rule: str) -> RuleConfig:
    """The ``[rules.<rule>]`` section of ``config``."""
    section: RuleConfig = getattr(config, rule)
    return section


def enabled_rules(config: RulesConfig) -> list[str]:
    """The ids of the enabled rules, in catalog order."""
    return [rule for rule in RULES if _section(config, rule).enabled]


def run_rule(
    rule: str,
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: RulesConfig,
    book: Book | None = None,
) -> Finding:
    """Run one rule with its section (and any shared sections); an exception becomes ``unknown``.

    ``book`` is ``snapshot``'s position sums when the caller has them; without, a rule that
    reads positions sums them itself.
    """
    entry = spec(rule)
    function = entry.check
    extra: dict[str, object] = {
        keyword: _section(config, section) for keyword, section in entry.shares.items()
    }
    if book is not None and rule in _READ_POSITIONS:
        extra["book"] = book
    try:
        finding = function(snapshot, context, _section(config, rule), **extra)
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
    rules = enabled_rules(settings)
    book = None
    if _READ_POSITIONS.intersection(rules):
        try:
            book = Book.of(snapshot)
        except Exception:  # garbage positions: each rule that reads them reports the error
            book = None
    return [run_rule(rule, snapshot, context, settings, book) for rule in rules]


def overall_status(findings: Iterable[Finding]) -> Severity:
    """The worst severity among ``findings`` (``ok`` when there are none)."""
    return worst(finding.severity for finding in findings)


def account_status(snapshot: AccountSnapshot | None, findings: Iterable[Finding]) -> Severity:
    """An account's status: the worst of its findings, and never milder than what
    ExcessLiquidity alone says. IBKR liquidates when EL < 0, so a known deficit makes the
    account critical even if the rule that reports it is disabled or the others could compute
    nothing (``unknown``)."""
    status = overall_status(findings)
    excess = snapshot.excess_liquidity if snapshot is not None else None
    if is_number(excess) and falls_short(excess, 0.0):
        return Severity.CRITICAL
    return status
