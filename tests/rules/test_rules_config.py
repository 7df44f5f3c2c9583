"""The configuration aggregate: one section per catalog entry, documented defaults, typed
access, and pydantic compatibility (each rule's own settings are tested with the rule)."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import TypeAdapter, ValidationError

from rules import RULES, RulesConfig
from rules.catalog import CATALOG
from rules.checks.cushion import CushionConfig
from rules.checks.financing_cost import FinancingCostConfig, InterestTier
from rules.checks.stale_data import StaleDataConfig


def test_one_section_per_rule_id():
    """RulesConfig has exactly one section per rule id, each with ``enabled`` on by default."""
    names = [f.name for f in dataclasses.fields(RulesConfig)]
    assert names == list(RULES)
    config = RulesConfig()
    for name in names:
        assert getattr(config, name).enabled is True


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("cushion.warning", 0.20),
        ("cushion.critical", 0.10),
        ("cushion.ib_warning_line", 0.10),
        ("cushion.clear_margin", 0.02),
        ("leverage.warning", 1.6),
        ("leverage.critical", 2.0),
        ("margin_utilization.warning", 0.30),
        ("cash_reserve.quarters", 2.0),
        ("financing_cost.increase_warning", 0.15),
        ("financing_cost.day_count", 360),
        ("financing_cost.rate_rise", 0.005),
        ("drawdown.warning", 0.12),
        ("drawdown.loan_cut", 0.20),
        ("concentration.stock_cap", 0.20),
        ("concentration.etf_cap", 0.50),
        ("leveraged_etf.sleeve_cap", 0.10),
        ("leveraged_etf.window_start", "15:30"),
        ("leveraged_etf.window_end", "16:00"),
        ("leveraged_etf.timezone", "America/New_York"),
        ("shares_outstanding.warning", 0.01),
        ("shares_outstanding.critical", 0.05),
        ("allocation_drift.band", 0.05),
        ("sma.window_start", "15:50"),
        ("sma.window_end", "17:20"),
        ("pm_equity_floor.warning", 110_000),
        ("pm_equity_floor.critical", 100_000),
        ("distance_to_liquidation.warning", 0.15),
        ("distance_to_liquidation.critical", 0.08),
        ("distance_to_liquidation.moves", (0.10, 0.12, 0.20)),
        ("leverage.warning", 1.6),
        ("leverage.critical", 2.0),
        ("gross_leverage.warning", None),
        ("gross_leverage.critical", 2.0),
        ("pm_equity_floor.maintenance_floor", 0.15),
        ("min_equity.warning", 2_000),
        ("stale_data.stale_minutes", 10),
        ("stale_data.blind_minutes", 5),
    ],
    ids=lambda value: str(value),
)
def test_documented_defaults(path, expected):
    """Defaults of margin-rules.md section 4 and the issue-3 table."""
    value = RulesConfig()
    for part in path.split("."):
        value = getattr(value, part)
    assert value == expected


def test_sections_are_derived_from_the_catalog():
    """One field per catalog entry, in catalog order, typed by the rule's settings class."""
    fields = dataclasses.fields(RulesConfig)
    assert [(f.name, f.type) for f in fields] == [(e.id, e.config) for e in CATALOG]


def test_section_returns_the_typed_section():
    """``section(Kind)`` is the section of the rule whose settings class is Kind."""
    config = RulesConfig(stale_data=StaleDataConfig(stale_minutes=3))
    assert config.section(StaleDataConfig) is config.stale_data
    assert config.section(StaleDataConfig).stale_minutes == 3
    assert config.section(CushionConfig) == CushionConfig()
    with pytest.raises(KeyError, match="InterestTier is not the settings class of a rule"):
        config.section(InterestTier)  # a tier, not a rule's settings


def test_replace_swaps_one_section():
    """``dataclasses.replace`` changes one section and keeps the others (the demo relies on it)."""
    config = RulesConfig()
    changed = dataclasses.replace(config, financing_cost=FinancingCostConfig(benchmark_rate=0.0433))
    assert changed.financing_cost.benchmark_rate == 0.0433
    assert changed.cushion is config.cushion
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.cushion = CushionConfig()


# -- pydantic compatibility -------------------------------------------------------------------

adapter = TypeAdapter(RulesConfig)


def test_pydantic_validates_toml_shaped_data():
    """The settings layer can build RulesConfig from TOML data (tables, arrays of tables)."""
    config = adapter.validate_python(
        {
            "cushion": {"warning": 0.25},
            "financing_cost": {
                "benchmark_rate": 0.0433,
                "tiers": [{"up_to": 150000, "rate": 0.03}, {"rate": 0.04}],
            },
            "allocation_drift": {"targets": {"SCHD": 0.4, "VOO": 0.4, "BND": 0.2}},
            "pm_equity_floor": {"portfolio_margin_accounts": ["u1234567"]},
            "leveraged_etf": {"enabled": False},
        }
    )
    assert config.cushion.warning == 0.25
    assert config.cushion.critical == 0.10
    assert config.financing_cost.tiers[1] == InterestTier(rate=0.04)
    assert config.pm_equity_floor.portfolio_margin_accounts == ("U1234567",)
    assert config.leveraged_etf.enabled is False


@pytest.mark.parametrize(
    ("data", "location"),
    [
        ({"cushion": {"warnin": 0.3}}, ("cushion", "warnin")),
        ({"no_such_rule": {"enabled": True}}, ("no_such_rule",)),
        ({"financing_cost": {"tiers": [{"up_to": 1, "rate": 0.1, "cap": 2}]}}, None),
    ],
    ids=["misspelt-key", "unknown-section", "unknown-tier-key"],
)
def test_pydantic_rejects_unknown_keys(data, location):
    """``__pydantic_config__`` forbids extra keys, so a typo is an error, not silently ignored."""
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python(data)
    errors = caught.value.errors()
    if location is not None:
        assert errors[0]["loc"] == location


def test_pydantic_reports_post_init_errors_with_the_message():
    """A ValueError from __post_init__ reaches the user with its text."""
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python({"cushion": {"warning": 0.05}})
    assert "warning (0.05) must be above critical (0.1)" in str(caught.value)
