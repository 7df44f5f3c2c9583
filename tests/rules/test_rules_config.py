"""Rule configuration: documented defaults, clear validation errors, and pydantic compatibility."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import TypeAdapter, ValidationError

from rules import RULES
from rules.config import (
    AllocationDriftConfig,
    CushionConfig,
    DistanceToLiquidationConfig,
    FinancingCostConfig,
    InterestTier,
    LeverageConfig,
    LeveragedEtfConfig,
    RulesConfig,
    SharesOutstandingConfig,
    SmaConfig,
    leveraged_factors,
)


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
        ("distance_to_liquidation.falls", (0.10, 0.12, 0.20)),
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


def test_default_tiers_are_ibkr_pro_usd_spreads():
    """IBKR Pro USD: BM+1.5% to 100k, +1% to 1M, +0.75% to 50M, +0.5% to 200M and above."""
    tiers = FinancingCostConfig().tiers
    assert [(t.up_to, t.spread) for t in tiers] == [
        (100_000, 0.015),
        (1_000_000, 0.01),
        (50_000_000, 0.0075),
        (200_000_000, 0.005),
        (None, 0.005),
    ]
    assert FinancingCostConfig().benchmark_rate is None  # it moves: configuration only


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: CushionConfig(warning=0.1, critical=0.2), "warning (0.1) must be above critical"),
        (lambda: CushionConfig(warning=1.5), "warning must be a fraction"),
        (lambda: CushionConfig(critical=float("nan")), "critical must be a finite number"),
        (lambda: LeverageConfig(warning=2.5, critical=2.0), "warning (2.5) must be below critical"),
        (lambda: AllocationDriftConfig(targets={"A": 0.5, "B": 0.4}), "sum to 0.9"),
        (lambda: AllocationDriftConfig(targets={"A": 60, "B": 40}), "look like percent"),
        (lambda: AllocationDriftConfig(targets={"A": -0.5, "B": 1.5}), "targets.A"),
        (lambda: InterestTier(up_to=10), "exactly one of rate"),
        (lambda: InterestTier(rate=0.03, spread=0.01), "exactly one of rate"),
        (
            lambda: FinancingCostConfig(
                tiers=(InterestTier(up_to=200, rate=0.03), InterestTier(up_to=100, rate=0.04))
            ),
            "ascending",
        ),
        (
            lambda: FinancingCostConfig(tiers=(InterestTier(rate=0.03), InterestTier(rate=0.04))),
            "only the last tier may omit up_to",
        ),
        (lambda: FinancingCostConfig(day_count=300), "day_count must be 360"),
        (lambda: FinancingCostConfig(tiers=()), "at least one tier"),
        (lambda: LeveragedEtfConfig(window_start="3pm"), "window_start must be a time 'HH:MM'"),
        (lambda: SmaConfig(timezone="Mars/Olympus"), "unknown timezone 'Mars/Olympus'"),
        (lambda: LeveragedEtfConfig(factors={"XYZ": 50}), "factors.XYZ"),
        (lambda: SharesOutstandingConfig(shares_outstanding={"AAPL": 0}), "AAPL must be above 0"),
        (lambda: DistanceToLiquidationConfig(falls=(0.1, 2.0)), "falls must be a fraction"),
    ],
    ids=[
        "cushion-order",
        "cushion-range",
        "cushion-nan",
        "leverage-order",
        "targets-sum",
        "targets-percent",
        "targets-negative",
        "tier-no-rate",
        "tier-both",
        "tiers-order",
        "tiers-open-middle",
        "day-count",
        "tiers-empty",
        "window-format",
        "timezone",
        "factor-range",
        "shares-zero",
        "falls-range",
    ],
)
def test_invalid_values_say_what_to_fix(build, fragment):
    """Each ValueError names the field and the problem."""
    with pytest.raises(ValueError) as caught:
        build()
    assert fragment in str(caught.value)


def test_symbols_are_upper_cased():
    """Symbol keys and lists are normalised to IB's upper case."""
    drift = AllocationDriftConfig(targets={"schd": 0.4, "voo": 0.4, "bnd": 0.2})
    assert list(drift.targets) == ["SCHD", "VOO", "BND"]
    assert LeveragedEtfConfig(factors={"tqqq": 2}).factors == {"TQQQ": 2.0}


def test_leveraged_factors_merge_over_the_builtin_table():
    """Config factors add to and override the built-in table; 0 removes a symbol."""
    table = leveraged_factors(LeveragedEtfConfig(factors={"NEWX": 2, "TQQQ": 0, "UVXY": 2}))
    assert table["NEWX"] == 2
    assert "TQQQ" not in table
    assert table["UVXY"] == 2
    builtin = leveraged_factors()
    for symbol, factor in {
        "TQQQ": 3, "SQQQ": -3, "UPRO": 3, "SPXU": -3, "SSO": 2, "SDS": -2, "QLD": 2,
        "SOXL": 3, "SOXS": -3, "TNA": 3, "TZA": -3, "TMF": 3, "TMV": -3,
    }.items():  # fmt: skip
        assert builtin[symbol] == factor


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
