"""Shared helpers: trading-day windows, wording of amounts, per-snapshot position sums."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rules.clock import in_window, window_of, zone
from rules.common import Book
from rules.model import Position
from rules.samples import sample_snapshot, stock
from rules.text import money, pct


@pytest.mark.parametrize(
    ("moment", "start", "end", "expected"),
    [
        (datetime(2026, 5, 11, 19, 30, tzinfo=UTC), "15:30", "16:00", True),  # 15:30 EDT
        (datetime(2026, 5, 11, 20, 0, tzinfo=UTC), "15:30", "16:00", False),  # end exclusive
        (datetime(2026, 1, 12, 20, 45, tzinfo=UTC), "15:30", "16:00", True),  # 15:45 EST
        (datetime(2026, 5, 16, 19, 45, tzinfo=UTC), "15:30", "16:00", False),  # Saturday
        (datetime(2026, 5, 12, 4, 0, tzinfo=UTC), "23:45", "00:15", True),  # Mon 00:00 EDT
        (datetime(2026, 5, 11, 4, 0, tzinfo=UTC), "23:45", "00:15", False),  # began on Sunday
        (datetime(2026, 5, 11, 19, 45), "15:30", "16:00", True),  # naive = UTC
    ],
    ids=["start", "end", "winter", "weekend", "wraps-midnight", "wrap-from-sunday", "naive"],
)
def test_in_window(moment, start, end, expected):
    """Windows are on New York's clock, weekdays only, and may wrap past midnight."""
    window = window_of(start, end)
    assert in_window(moment, window, zone("America/New_York"), weekdays_only=True) is expected


@pytest.mark.parametrize(
    ("fraction", "text"),
    [(0.2, "20%"), (0.125, "12.5%"), (0.2734, "27.3%"), (-1e-12, "0%"), (1.5, "150%")],
)
def test_pct(fraction, text):
    """Percentages without trailing zeros or a negative zero."""
    assert pct(fraction) == text


def test_money():
    """Amounts to the cent with the currency code."""
    assert money(48_000, "EUR") == "EUR 48,000.00"
    assert money(23.6111, "USD") == "USD 23.61"
    assert money(5, "") == "5.00"


def test_book_sums_symbols_and_converts_currencies():
    """Positions of one symbol add up; a local value is converted with the snapshot's rates."""
    foreign = Position("SAP", 7, "STK", 10.0, "EUR", market_value=1_000.0, market_value_base=None)
    option = Position("AAPL", 8, "OPT", 1.0, "USD", market_value_base=500.0, multiplier=100)
    snapshot = sample_snapshot(
        [stock("AAPL", 3_000.0, con_id=1), stock("aapl", 2_000.0, con_id=2), foreign, option],
        exchange_rates={"EUR": 1.1},
    )
    positions = Book.of(snapshot)
    assert positions.values == {"AAPL": 5_000.0, "SAP": pytest.approx(1_100.0)}
    assert positions.quantities["SAP"] == 10.0
    assert positions.long_value == pytest.approx(6_600.0)  # the option counts here only
    assert positions.all_priced and not positions.unpriced
    assert Book.of(snapshot) == positions  # a value: no state kept between calls


def test_book_marks_unpriced_symbols():
    """A position without any usable value makes its symbol unpriced."""
    no_rate = Position("SAP", 7, "STK", 10.0, "EUR", market_value=1_000.0)
    positions = Book.of(sample_snapshot([no_rate, stock("KO", float("nan"))]))
    assert list(positions.unpriced) == ["SAP", "KO"]
    assert not positions.all_priced
    assert "SAP" in positions.unpriced and "KO" not in positions.values
    assert positions.no_rate == {"SAP": "EUR"}  # KO has no value at all, SAP no rate
    assert positions.lacking(["KO", "SAP"]) == [
        "exchange rate EUR to USD (for SAP)",
        "market value of KO",
    ]
