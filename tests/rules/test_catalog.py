"""The catalog: each rule declared once, in its own module, and what the daemon reads from it."""

from __future__ import annotations

import inspect
import pkgutil

import pytest

import rules.checks
from rules.catalog import CATALOG, HEALTH_RULE, history_figures_of, spec, unit_of
from rules.model import Finding, Severity


@pytest.mark.parametrize("entry", CATALOG, ids=[entry.id for entry in CATALOG])
def test_each_rule_lives_in_the_module_named_by_its_id(entry):
    """Rule X's function, settings class and spec are all in rules/checks/X.py."""
    module = f"rules.checks.{entry.id}"
    assert entry.check.__module__ == module
    assert entry.check.__name__ == entry.id
    assert entry.config.__module__ == module
    assert entry.config().enabled is True


def test_every_rule_module_is_in_the_catalog():
    """A module added to rules/checks/ but not listed in the catalog fails here."""
    modules = {info.name for info in pkgutil.iter_modules(rules.checks.__path__)}
    assert modules == {entry.id for entry in CATALOG}
    assert len(CATALOG) == len(modules)


@pytest.mark.parametrize(
    "entry", [e for e in CATALOG if e.shares], ids=[e.id for e in CATALOG if e.shares]
)
def test_shared_sections_are_keywords_of_the_rule(entry):
    """Each shared section names a catalog rule and a keyword the rule's function accepts."""
    parameters = inspect.signature(entry.check).parameters
    for keyword, other in entry.shares.items():
        assert parameters[keyword].kind is inspect.Parameter.KEYWORD_ONLY
        assert spec(other).id == other


@pytest.mark.parametrize("entry", CATALOG, ids=[entry.id for entry in CATALOG])
def test_rules_reading_positions_take_the_engines_sums(entry):
    """A rule declares "positions" in ``reads`` exactly when it accepts the sums as ``book=``."""
    parameters = inspect.signature(entry.check).parameters
    assert ("book" in parameters) == ("positions" in entry.reads)


def test_spec_and_unit_lookups():
    """Ids resolve to their spec and unit; an unknown id names the known ones."""
    assert spec("cushion").unit == unit_of("cushion") == "percent"
    assert unit_of("leverage") == "multiple"
    assert unit_of("no_such_rule") == "number"
    assert spec(HEALTH_RULE).id == "stale_data"
    with pytest.raises(KeyError, match="unknown rule 'nope'; known: cushion, leverage"):
        spec("nope")


def test_history_figures_come_from_the_declared_details():
    """The history row takes each declared figure from its finding; missing data gives None."""

    def finding(rule: str, details: dict[str, float], missing: bool = False) -> Finding:
        return Finding(rule, "DU1", Severity.OK, 1.0, None, "m", data_missing=missing,
                       details=details)  # fmt: skip

    figures = history_figures_of(
        [
            finding("financing_cost", {"annual_cost": 8_500.0}),
            finding("leveraged_etf", {"sleeve_share": 0.3}, missing=True),
        ]
    )
    assert figures == {
        "net_leverage": None,
        "annual_financing_cost": 8_500.0,
        "financing_by_currency": None,
        "market_drawdown": None,
        "leveraged_etf_share": None,
        "liquidation_exposure": None,
    }
