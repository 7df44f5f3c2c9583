"""The connector's conversion of IB's strings into snapshots (no socket needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.gateway import RawPosition, build_snapshot, parse_number, parse_shares_outstanding

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("123.45", 123.45),
        ("-10000", -10000.0),
        ("0.3127", 0.3127),
        ("1,234.5", 1234.5),
        ("", None),
        ("   ", None),
        ("1.7976931348623157E308", None),
        ("-1.7976931348623157E308", None),
        ("nan", None),
        ("inf", None),
        ("USD", None),
        (None, None),
    ],
    ids=lambda value: repr(value),
)
def test_parse_number(text, expected):
    """Empty strings, IB's unset double, NaN and words are not numbers to compute with."""
    assert parse_number(text) == expected


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15))
def test_parse_number_round_trips_finite_values(value):
    """Any finite figure IB could send comes back unchanged."""
    assert parse_number(repr(value)) == pytest.approx(value)


USD_ROWS = [
    ("AccountType", "INDIVIDUAL", ""),
    ("NetLiquidation", "100000.00", "USD"),
    ("EquityWithLoanValue", "100000.00", "USD"),
    ("GrossPositionValue", "150000.00", "USD"),
    ("InitMarginReq", "37500.00", "USD"),
    ("MaintMarginReq", "37500.00", "USD"),
    ("ExcessLiquidity", "62500.00", "USD"),
    ("AvailableFunds", "62500.00", "USD"),
    ("Cushion", "0.625", ""),
    ("SMA", "", "USD"),
    ("LookAheadExcessLiquidity", "1.7976931348623157E308", "USD"),
    ("LookAheadNextChange", "0", ""),
    ("TotalCashBalance", "-50000.00", "BASE"),
    ("TotalCashBalance", "-50000.00", "USD"),
    ("ExchangeRate", "1.00", "USD"),
    ("ExchangeRate", "1.00", "BASE"),
]


def test_usd_account_values_become_a_snapshot():
    """Margin tags, the BASE cash row and the empty/unset values are read as documented."""
    snapshot = build_snapshot("DU111", USD_ROWS, [], NOW)
    assert snapshot.base_currency == "USD"
    assert snapshot.net_liquidation == 100_000
    assert snapshot.gross_position_value == 150_000
    assert snapshot.excess_liquidity == 62_500
    assert snapshot.cushion == 0.625
    assert snapshot.sma is None
    assert snapshot.look_ahead_excess_liquidity is None
    assert snapshot.look_ahead_next_change is None
    assert snapshot.cash_balance == -50_000
    assert snapshot.margin_loan == 50_000
    assert snapshot.leverage == pytest.approx(1.5)
    assert snapshot.account_type == "INDIVIDUAL"


def test_eur_base_account_is_read_in_euros_and_positions_converted():
    """A non-USD base account: figures in EUR, a USD position converted with ExchangeRate."""
    rows = [
        ("NetLiquidation", "50000", "EUR"),
        ("ExcessLiquidity", "20000", "EUR"),
        ("MaintMarginReq", "15000", "EUR"),
        ("GrossPositionValue", "60000", "EUR"),
        ("TotalCashBalance", "-10000", "BASE"),
        ("TotalCashBalance", "-10800", "USD"),
        ("TotalCashBalance", "0", "EUR"),
        ("ExchangeRate", "1.00", "EUR"),
        ("ExchangeRate", "0.925926", "USD"),
        ("LookAheadNextChange", "1795000000", ""),
    ]
    position = RawPosition("SPY", 756733, "STK", "USD", 100, market_price=648.0)
    snapshot = build_snapshot("U222", rows, [position], NOW, {756733: "ETF"})
    assert snapshot.base_currency == "EUR"
    assert snapshot.cash_balance == -10_000
    assert snapshot.cushion == pytest.approx(0.4)  # computed from EL / NLV when Cushion is absent
    assert snapshot.rate_to_base("USD") == pytest.approx(0.925926)
    held = snapshot.positions[0]
    assert held.market_value == pytest.approx(64_800)
    assert held.market_value_base == pytest.approx(64_800 * 0.925926)
    assert held.stock_type == "ETF"
    assert snapshot.look_ahead_next_change == datetime.fromtimestamp(1795000000, UTC)


def test_securities_segment_is_the_fallback_and_duplicates_collapse():
    """Only "-S" rows present: they are used; a repeated push of a value keeps the latest."""
    rows = [
        ("NetLiquidation-S", "1000", "USD"),
        ("ExcessLiquidity-S", "300", "USD"),
        ("ExcessLiquidity-S", "250", "USD"),
    ]
    snapshot = build_snapshot("DU1", rows, [], NOW)
    assert snapshot.net_liquidation == 1000
    assert snapshot.excess_liquidity == 250
    assert snapshot.cushion == pytest.approx(0.25)


def test_cash_balance_falls_back_to_the_cashbalance_tag():
    """A gateway that sends only CashBalance (no TotalCashBalance) still yields the loan."""
    rows = [("NetLiquidation", "1000", "USD"), ("CashBalance", "-250", "BASE")]
    assert build_snapshot("DU1", rows, [], NOW).margin_loan == 250


def test_cash_per_currency_comes_from_totalcashbalance_with_cashbalance_as_fallback():
    """Each currency's own balance (not converted): TotalCashBalance EUR 8,000 and CHF -25,000;
    USD has only CashBalance 0; the BASE row (-18,500 EUR) is the total, not a currency."""
    rows = [
        ("NetLiquidation", "27868.00", "EUR"),
        ("TotalCashBalance", "-18500.00", "BASE"),
        ("TotalCashBalance", "8000.00", "EUR"),
        ("TotalCashBalance", "-25000.00", "CHF"),
        ("CashBalance", "-24000.00", "CHF"),
        ("CashBalance", "0.00", "USD"),
        ("ExchangeRate", "1.06", "CHF"),
    ]
    snapshot = build_snapshot("DU7100001", rows, [], NOW)
    assert snapshot.base_currency == "EUR"
    assert snapshot.cash_balances == {"EUR": 8_000.0, "CHF": -25_000.0, "USD": 0.0}
    assert snapshot.cash_balance == -18_500.0


def test_missing_values_stay_missing():
    """No rows for a tag means None, never zero."""
    snapshot = build_snapshot("DU1", [("AccountType", "INDIVIDUAL", "")], [], NOW)
    assert snapshot.net_liquidation is None
    assert snapshot.cushion is None
    assert snapshot.margin_loan is None
    assert snapshot.leverage is None


def test_zero_quantity_positions_are_dropped_and_value_gives_price():
    """A closed position (quantity 0) is not a holding; a streamed value yields a price."""
    positions = [
        RawPosition("AAPL", 1, "STK", "USD", 0, market_value=0.0),
        RawPosition("MSFT", 2, "STK", "USD", 10, market_value=4000.0),
    ]
    snapshot = build_snapshot("DU1", [("NetLiquidation", "1", "USD")], positions, NOW)
    assert [p.symbol for p in snapshot.positions] == ["MSFT"]
    assert snapshot.positions[0].market_price == 400.0


def test_shares_outstanding_from_report_snapshot():
    """IB's ReportSnapshot carries shares outstanding in a SharesOut element."""
    xml = (
        '<ReportSnapshot><CoGeneralInfo><SharesOut Date="2026-09-30" TotalFloat="1">'
        "15204137000.0</SharesOut></CoGeneralInfo></ReportSnapshot>"
    )
    assert parse_shares_outstanding(xml) == 15_204_137_000.0
    assert parse_shares_outstanding("") is None
    assert parse_shares_outstanding("<not-xml") is None
