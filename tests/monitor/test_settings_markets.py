"""The new settings of issue 10 from a TOML file and the environment, and their errors."""

from __future__ import annotations

import pytest

from monitor.settings import ConfigError, load_settings


def test_per_currency_terms_from_toml_sections(tmp_path):
    """[rules.financing_cost.currencies.XXX] sections: GBP keeps IBKR's built-in tiers and
    actual/365 with its benchmark set; EUR is added with its own tiers; USD keeps the
    top-level keys (an existing config's benchmark_rate still means USD)."""
    path = tmp_path / "config.toml"
    path.write_text(
        "[rules.financing_cost]\nbenchmark_rate = 0.0433\n"
        "[rules.financing_cost.currencies.GBP]\nbenchmark_rate = 0.047\n"
        "[rules.financing_cost.currencies.EUR]\nbenchmark_rate = 0.019\n"
        "tiers = [{ up_to = 90000.0, spread = 0.015 }, { spread = 0.01 }]\n"
    )
    terms = load_settings(path).rules.financing_cost
    gbp, eur, usd = terms.terms_for("GBP"), terms.terms_for("EUR"), terms.terms_for("USD")
    assert gbp is not None and (gbp.benchmark_rate, gbp.day_count) == (0.047, 365)
    assert eur is not None and (eur.benchmark_rate, eur.day_count, len(eur.tiers)) == (
        0.019,
        360,
        2,
    )
    assert usd is not None and usd.benchmark_rate == 0.0433


def test_currencies_and_the_benchmark_from_the_environment(monkeypatch):
    """JSON in MARGIN_MONITOR_RULES__FINANCING_COST__CURRENCIES; a plain benchmark symbol."""
    monkeypatch.setenv(
        "MARGIN_MONITOR_RULES__FINANCING_COST__CURRENCIES", '{"CHF": {"benchmark_rate": 0.001}}'
    )
    monkeypatch.setenv("MARGIN_MONITOR_RULES__DRAWDOWN__BENCHMARK", "QQQ")
    settings = load_settings(None)
    assert settings.rules.financing_cost.terms_for("CHF").benchmark_rate == 0.001
    assert settings.rules.drawdown.benchmark == "QQQ"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "[rules.financing_cost.currencies.USD]\nbenchmark_rate = 0.047\n",
            "USD's terms are the top-level tiers, benchmark_rate and day_count",
        ),
        (
            "[rules.financing_cost.currencies.GBP]\nbenchmark = 0.047\n",
            "rules.financing_cost.currencies.GBP.benchmark: unknown key",
        ),
        ("[rules.drawdown]\nbenchmark = 'S P Y'\n", "benchmark must be a symbol"),
        ("[rules.margin_terms]\nwarning_points = 5\n", "warning_points"),
    ],
    ids=["usd-section", "misspelt", "benchmark", "points"],
)
def test_bad_market_settings_are_one_clear_message(tmp_path, text, fragment):
    """Each mistake is a ConfigError naming the key and what to change."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert fragment in str(caught.value)
