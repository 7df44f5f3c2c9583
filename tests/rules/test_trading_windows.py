"""The pre-close windows follow the exchange's sessions (issue 10 point 10): none on a
holiday, moved before an early close, weekdays only when the calendar is unknown.

2026-11-26 is Thanksgiving (NYSE closed); 2026-11-27, the day after, closes at 13:00; on a
regular day (2026-11-25) the session closes at 16:00. Times below are New York (EST, UTC-5).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from rules.checks.leveraged_etf import LeveragedEtfConfig, leveraged_etf
from rules.checks.sma import SmaConfig, sma
from rules.clock import session_window
from rules.model import EvaluationContext, Severity, TradingDay
from rules.samples import sample_snapshot, stock

NEW_YORK = ZoneInfo("America/New_York")
OK, WARNING, CRITICAL = Severity.OK, Severity.WARNING, Severity.CRITICAL
SLEEVE = [stock("TQQQ", 40_000.0, stock_type="ETF"), stock("SOXL", 20_000.0, stock_type="ETF")]


def session(day: date, close_hour: int = 16) -> TradingDay:
    """A session 09:30 to ``close_hour``:00 New York (16:00 regular)."""

    def at(hour: int, minute: int = 0) -> datetime:
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)

    return TradingDay(day, at(9, 30), at(close_hour), close_hour < 16, at(16))


THANKSGIVING = TradingDay(date(2026, 11, 26))  # no session
BLACK_FRIDAY = session(date(2026, 11, 27), close_hour=13)
REGULAR = session(date(2026, 11, 25))


def ny(day: date, hour: int, minute: int = 0) -> datetime:
    """A New York wall-clock time as a UTC instant."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK).astimezone(UTC)


@pytest.mark.parametrize(
    ("now", "trading_day", "inside", "text"),
    [
        (ny(REGULAR.day, 15, 45), REGULAR, True, "15:30-16:00 America/New_York"),
        (ny(REGULAR.day, 12, 45), REGULAR, False, "15:30-16:00 America/New_York"),
        (ny(THANKSGIVING.day, 15, 45), THANKSGIVING, False, "the exchange is closed"),
        (ny(BLACK_FRIDAY.day, 12, 45), BLACK_FRIDAY, True, "12:30-13:00 America/New_York"),
        (ny(BLACK_FRIDAY.day, 15, 45), BLACK_FRIDAY, False, "early close at 13:00"),
        (ny(THANKSGIVING.day, 15, 45), None, True, "15:30-16:00"),  # calendar unknown: weekday
        (ny(date(2026, 11, 28), 15, 45), None, False, "15:30-16:00"),  # Saturday
        (ny(REGULAR.day, 15, 45), THANKSGIVING, True, "15:30-16:00"),  # another day's calendar
    ],
    ids=[
        "regular-inside",
        "regular-noon",
        "holiday",
        "early-close-inside",
        "early-close-after",
        "unknown-weekday",
        "unknown-saturday",
        "other-day",
    ],
)
def test_session_window(now, trading_day, inside, text):
    """15:30-16:00 on a regular day, none on Thanksgiving, 12:30-13:00 when the session closes
    at 13:00 (shifted by 13:00 - 16:00 = -3 h), weekdays without a calendar."""
    today = session_window(now, "15:30", "16:00", "America/New_York", trading_day)
    assert today.inside is inside
    assert text in today.text


def test_close_shift_of_an_early_close():
    """13:00 against the regular 16:00: the windows move three hours earlier."""
    assert BLACK_FRIDAY.close_shift == timedelta(hours=-3)
    assert REGULAR.close_shift == timedelta(0) and THANKSGIVING.close_shift == timedelta(0)
    assert not THANKSGIVING.is_session and BLACK_FRIDAY.is_session and BLACK_FRIDAY.early_close


def crashing(trading_day: TradingDay | None, now: datetime) -> Severity:
    """The leveraged-ETF rule's severity for a sleeve whose Reg T requirement would take the
    cushion to 10% (EL 15,000; +20,000 of requirement on 60,000 of 3x funds: -5%)."""
    snapshot = sample_snapshot(SLEEVE, excess_liquidity=15_000.0)
    context = EvaluationContext(now=now, trading_day=trading_day)
    return leveraged_etf(snapshot, context, LeveragedEtfConfig()).severity


def test_leveraged_etf_window_follows_the_calendar():
    """Critical only inside the day's window: 15:45 on a regular day, 12:45 on the early close
    (not 15:45 then: the funds rebalanced before 13:00), never on Thanksgiving."""
    assert crashing(REGULAR, ny(REGULAR.day, 15, 45)) is CRITICAL
    assert crashing(BLACK_FRIDAY, ny(BLACK_FRIDAY.day, 12, 45)) is CRITICAL
    assert crashing(BLACK_FRIDAY, ny(BLACK_FRIDAY.day, 15, 45)) is WARNING
    assert crashing(THANKSGIVING, ny(THANKSGIVING.day, 15, 45)) is WARNING


def test_leveraged_etf_action_names_the_moved_window():
    """Outside the early-close window the action says to act before 12:30, not 15:30. (The
    amount, 51,000, brings the 60% sleeve to 9% and the projected cushion to 20%: see
    tests/rules/checks/test_leveraged_etf.py.)"""
    snapshot = sample_snapshot(SLEEVE, excess_liquidity=15_000.0)
    context = EvaluationContext(now=ny(BLACK_FRIDAY.day, 10, 0), trading_day=BLACK_FRIDAY)
    finding = leveraged_etf(snapshot, context, LeveragedEtfConfig())
    assert finding.severity is WARNING
    assert "Before 12:30 America/New_York, sell about USD 51,000.00" in finding.action
    assert "12:30-13:00 America/New_York (early close at 13:00" in finding.message


def test_sma_window_follows_the_calendar():
    """SMA -5,000: critical inside 15:50-17:20 on a regular day; on the early close the check
    moves to 12:50-14:20; on Thanksgiving it is a warning all day."""
    negative = sample_snapshot(sma=-5_000.0)

    def severity(trading_day: TradingDay, hour: int, minute: int) -> Severity:
        context = EvaluationContext(now=ny(trading_day.day, hour, minute), trading_day=trading_day)
        return sma(negative, context, SmaConfig()).severity

    assert severity(REGULAR, 16, 0) is CRITICAL
    assert severity(BLACK_FRIDAY, 13, 30) is CRITICAL
    assert severity(BLACK_FRIDAY, 16, 0) is WARNING
    assert severity(THANKSGIVING, 16, 0) is WARNING
    holiday = sma(
        negative,
        EvaluationContext(now=ny(THANKSGIVING.day, 10, 0), trading_day=THANKSGIVING),
        SmaConfig(),
    )
    assert "before the next session's 15:50 America/New_York" in holiday.action
    assert holiday.message == (
        "SMA is USD -5,000.00, below 0: it must be 0 or more by the next session's check (no "
        "15:50-17:20 America/New_York window today: the exchange is closed)"
    )


def test_leveraged_etf_message_on_a_holiday_reads_plainly():
    """Thanksgiving: the projected cushion is a warning and the message says why there is no
    rebalancing window, the action when to act."""
    snapshot = sample_snapshot(SLEEVE, excess_liquidity=15_000.0)
    context = EvaluationContext(now=ny(THANKSGIVING.day, 15, 45), trading_day=THANKSGIVING)
    finding = leveraged_etf(snapshot, context, LeveragedEtfConfig())
    assert (
        "below the critical level 10% (no 15:30-16:00 America/New_York window today: the "
        "exchange is closed)" in finding.message
    )
    assert finding.action.startswith("Before the next session's 15:30 America/New_York, sell")
