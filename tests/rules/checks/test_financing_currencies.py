"""Financing per currency (issue 10 point 4): each currency's debit on its own benchmark, tiers
and day count; a credit in one currency never cancels the interest on a debit in another."""

from __future__ import annotations

import pytest

from rules.checks.cash_reserve import CashReserveConfig, cash_reserve
from rules.checks.financing_cost import (
    BUILTIN_CURRENCY_TERMS,
    CurrencyTerms,
    FinancingCostConfig,
    financing_cost,
)
from rules.model import EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot

NOW = EvaluationContext(now=SAMPLE_TIME)
TERMS = FinancingCostConfig(
    benchmark_rate=0.0433,
    currencies={
        "CHF": CurrencyTerms(benchmark_rate=0.005),
        "GBP": CurrencyTerms(benchmark_rate=0.047),
    },
)


def eur_chf_debit():
    """Scenario eur_chf_debit's DU7100001: EUR base; EUR +8,000, CHF -25,000 (CHF = 1.06 EUR),
    SPY and MSFT (USD 50,400 at 0.92): BASE cash 8,000 - 26,500 = -18,500 EUR."""
    return sample_snapshot(
        account="DU7100001",
        base_currency="EUR",
        net_liquidation=27_868.0,
        excess_liquidity=16_276.0,
        gross_position_value=46_368.0,
        maint_margin_req=11_592.0,
        cash_balance=-18_500.0,
        cash_balances={"EUR": 8_000.0, "CHF": -25_000.0, "USD": 0.0},
        exchange_rates={"USD": 0.92, "CHF": 1.06, "EUR": 1.0},
    )


def test_eur_base_account_with_a_chf_debit_and_usd_stocks():
    """The CHF debit is charged in francs on CHF's terms, not netted with the euros.

    CHF benchmark 0.5%, first tier (to 90,000) +1.5%: 25,000 x 2.0% = CHF 500.00 a year; at
    actual/360 CHF 1.39 a day; in euros 500 x 1.06 = EUR 530.00 a year, 1.3889 x 1.06 = EUR
    1.47 a day. The loan in base currency is 25,000 x 1.06 = EUR 26,500.00 (not the net
    18,500): the EUR 8,000 credit does not offset a franc debit. Effective 530 / 26,500 = 2%.
    """
    finding = financing_cost(eur_chf_debit(), NOW, TERMS)
    assert finding.severity is Severity.OK and not finding.data_missing
    assert finding.value == pytest.approx(530.0)
    assert finding.details["margin_loan"] == pytest.approx(26_500.0)
    assert round(finding.details["daily_cost"], 2) == 1.47
    assert finding.details["effective_rate"] == pytest.approx(0.02)
    (chf,) = finding.details["currencies"]
    assert chf["currency"] == "CHF" and chf["debit"] == 25_000.0
    assert chf["annual_cost"] == pytest.approx(500.0) and chf["day_count"] == 360
    assert round(chf["daily_cost"], 2) == 1.39
    assert "Margin loan EUR 26,500.00 costs EUR 530.00 a year" in finding.message
    assert "CHF 25,000.00 (EUR 26,500.00) at CHF 500.00 a year (2% on actual/360)" in (
        finding.message
    )
    assert "credits (EUR 8,000.00) do not offset a debit in another currency" in finding.message


def test_usd_and_gbp_accounts_of_one_advisor_login():
    """Scenario advisor_currencies: each account in its own base currency.

    DU3100001 (USD base): USD -20,000 at 4.33% + 1.5% = 5.83%: USD 1,166.00 a year, /360 =
    3.24 a day; its GBP +1,000 is a credit. DU3100002 (GBP base): the USD -30,000 loan is
    charged on USD terms, 30,000 x 5.83% = USD 1,749.00 a year = GBP 1,381.71 at 0.79 (/360:
    USD 4.86 = GBP 3.84 a day), not on the net BASE -13,700 GBP; its GBP +10,000 is a credit.
    """
    usd = sample_snapshot(
        account="DU3100001", cash_balance=-18_730.0,
        cash_balances={"USD": -20_000.0, "GBP": 1_000.0}, exchange_rates={"GBP": 1.27},
    )  # fmt: skip
    gbp = sample_snapshot(
        account="DU3100002", base_currency="GBP", cash_balance=-13_700.0,
        cash_balances={"GBP": 10_000.0, "USD": -30_000.0}, exchange_rates={"USD": 0.79},
    )  # fmt: skip
    first = financing_cost(usd, NOW, TERMS)
    assert first.value == pytest.approx(1_166.0)
    assert round(first.details["daily_cost"], 2) == 3.24
    second = financing_cost(gbp, NOW, TERMS)
    assert second.value == pytest.approx(1_381.71)
    assert round(second.details["daily_cost"], 2) == 3.84
    assert second.details["margin_loan"] == pytest.approx(23_700.0)
    assert "Margin loan GBP 23,700.00 costs GBP 1,381.71 a year" in second.message
    assert "USD 30,000.00 (GBP 23,700.00) at USD 1,749.00 a year" in second.message


def test_a_gbp_debit_is_tiered_in_pounds_on_actual_365():
    """GBP -100,000 at benchmark 4.70%: 80,000 x 6.20% = 4,960 + 20,000 x 5.70% = 1,140 ->
    GBP 6,100.00 a year, effective 6.1%, /365 = GBP 16.71 a day."""
    snapshot = sample_snapshot(
        base_currency="GBP", cash_balance=-100_000.0, cash_balances={"GBP": -100_000.0}
    )
    finding = financing_cost(snapshot, NOW, TERMS)
    assert finding.value == pytest.approx(6_100.0)
    assert round(finding.details["daily_cost"], 2) == 16.71
    assert finding.details["day_count"] == 365
    assert "GBP 16.71 a day on actual/365" in finding.message


def test_two_debits_are_each_charged_and_summed():
    """USD -20,000 (5.83%: 1,166.00) and GBP -10,000 at 1.25 USD (6.20%: GBP 620.00 = USD
    775.00): USD 1,941.00 a year; the day counts differ, so none is named for the total."""
    snapshot = sample_snapshot(
        cash_balance=-32_500.0,
        cash_balances={"USD": -20_000.0, "GBP": -10_000.0},
        exchange_rates={"GBP": 1.25},
    )
    finding = financing_cost(snapshot, NOW, TERMS)
    assert finding.value == pytest.approx(1_941.0)
    assert finding.details["margin_loan"] == pytest.approx(32_500.0)
    assert [row["currency"] for row in finding.details["currencies"]] == ["GBP", "USD"]
    assert finding.details["day_count"] is None


@pytest.mark.parametrize(
    ("balances", "terms", "said"),
    [
        ({"CHF": -25_000.0}, FinancingCostConfig(), "no CHF benchmark is set"),
        ({"EUR": -5_000.0}, TERMS, "no tiers known for EUR"),
        ({"GBP": -5_000.0}, TERMS, "no ExchangeRate from IB for GBP"),
    ],
    ids=["no-benchmark", "no-tiers", "no-fx"],
)
def test_an_unknown_cost_is_said_never_guessed(balances, terms, said):
    """A debit without a benchmark, tiers or exchange rate: the total is not computed (a partial
    sum would understate it) and the message says what to set."""
    snapshot = sample_snapshot(
        base_currency="EUR", cash_balances=balances, exchange_rates={"CHF": 1.06, "EUR": 1.0}
    )
    finding = financing_cost(snapshot, NOW, terms)
    assert finding.severity is Severity.OK and finding.value is None
    assert said in finding.message
    if "tiers" in said:
        assert "[rules.financing_cost.currencies.EUR]" in finding.message


def test_only_credits_means_no_loan():
    """Cash positive in every currency: nothing is financed."""
    snapshot = sample_snapshot(cash_balances={"USD": 5_000.0, "GBP": 2_000.0})
    finding = financing_cost(snapshot, NOW, TERMS)
    assert finding.value == 0.0 and "no currency in debit" in finding.message


def test_cash_reserve_reserves_for_the_per_currency_cost():
    """The EUR/CHF account: 2 quarters of EUR 530.00 a year = EUR 265.00; ExcessLiquidity
    16,276 covers it, and the message names the franc debit it was computed on."""
    finding = cash_reserve(eur_chf_debit(), NOW, CashReserveConfig(), financing=TERMS)
    assert finding.severity is Severity.OK
    assert finding.threshold == pytest.approx(265.0)
    assert "CHF 25,000.00 (EUR 26,500.00)" in finding.message
    assert finding.details["currencies"][0]["currency"] == "CHF"


def test_configured_terms_override_the_built_in_table_key_by_key():
    """GBP with only a benchmark keeps IBKR's GBP tiers and actual/365; a new currency needs
    tiers; USD's terms stay the top-level keys (an old config keeps working)."""
    gbp = TERMS.terms_for("GBP")
    assert gbp is not None and gbp.day_count == 365 and gbp.benchmark_rate == 0.047
    assert gbp.tiers == BUILTIN_CURRENCY_TERMS["GBP"].tiers
    assert gbp.tiers[0].up_to == 80_000.0
    assert TERMS.terms_for("EUR") is None
    assert TERMS.terms_for("USD").benchmark_rate == 0.0433
    eur = FinancingCostConfig(
        currencies={"eur": {"benchmark_rate": 0.019, "tiers": [{"rate": 0.04}]}}
    ).terms_for("EUR")
    assert eur is not None and eur.day_count == 360 and eur.tiers[0].rate == 0.04


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: FinancingCostConfig(currencies={"USD": {}}), "USD's terms are the top-level"),
        (lambda: FinancingCostConfig(currencies={"EURO": {}}), "not a currency code"),
        (lambda: CurrencyTerms(day_count=364), "day_count must be 360"),
        (lambda: CurrencyTerms(tiers=[]), "at least one tier"),
    ],
    ids=["usd", "code", "day-count", "tiers"],
)
def test_currency_settings_say_what_to_fix(build, fragment):
    """Each bad per-currency setting is one ValueError naming the fix."""
    with pytest.raises(ValueError, match=fragment):
        build()
