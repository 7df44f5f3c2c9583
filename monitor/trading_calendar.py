"""The exchange calendar at the edge: today's NYSE session as a :class:`rules.model.TradingDay`.

The rules' pre-close windows (the leveraged-ETF rebalancing window, the Reg T SMA check) follow
the exchange's sessions: none on a holiday, moved before an early close. Holidays and early
closes come from ``exchange_calendars`` (maintained, and the one candidate that knows early
closes; ``holidays`` knows only the holidays). It brings pandas, so it is imported on the
first evaluation, never when the command line starts, and each day is looked up once.
When the library is missing or the day is outside its range the answer is ``None``: the
rules then fall back to weekdays, and the log says so once.
"""

from __future__ import annotations

import threading
import warnings
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from rules.model import TradingDay

log = structlog.get_logger("monitor.trading_calendar")

#: The exchange whose sessions the windows follow (ISO 10383 code, as exchange_calendars names it).
EXCHANGE = "XNYS"
EXCHANGE_ZONE = ZoneInfo("America/New_York")

_lock = threading.Lock()
_calendar: Any = None
_unavailable: str | None = None


def _load() -> Any:
    """The exchange calendar, built once (about half a second: pandas); ``None`` when the
    library cannot be used (the reason is logged once)."""
    global _calendar, _unavailable
    with _lock:
        if _calendar is None and _unavailable is None:
            try:
                with warnings.catch_warnings():  # pandas deprecations inside the library
                    warnings.simplefilter("ignore")
                    import exchange_calendars

                    _calendar = exchange_calendars.get_calendar(EXCHANGE)
            except Exception as error:  # missing library or broken data: windows on weekdays
                _unavailable = f"{type(error).__name__}: {error}"
                log.warning(
                    "exchange calendar unavailable; trading windows fall on weekdays",
                    error=_unavailable,
                )
        return _calendar


def warm() -> bool:
    """Build the calendar now (call it from a worker thread at start); True when usable."""
    return _load() is not None


def trading_day_at(now: datetime) -> TradingDay | None:
    """The NYSE session of the exchange-clock day of ``now`` (``None``: calendar unknown)."""
    return trading_day(now.astimezone(EXCHANGE_ZONE).date())


@lru_cache(maxsize=32)
def trading_day(day: date) -> TradingDay | None:
    """The NYSE session on ``day``: open and close (aware, exchange clock), early close or no
    session; ``None`` when the calendar is unavailable or does not cover ``day``."""
    calendar = _load()
    if calendar is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not (calendar.first_session.date() <= day <= calendar.last_session.date()):
                return None
            if not calendar.is_session(day):
                return TradingDay(day)
            opens = calendar.session_open(day).to_pydatetime().astimezone(EXCHANGE_ZONE)
            closes = calendar.session_close(day).to_pydatetime().astimezone(EXCHANGE_ZONE)
    except Exception as error:  # a library change must never stop an evaluation
        log.warning("exchange calendar lookup failed", day=day.isoformat(), error=str(error))
        return None
    regular = datetime.combine(day, _regular_close(calendar), tzinfo=EXCHANGE_ZONE)
    return TradingDay(day, opens, closes, early_close=closes < regular, regular_close=regular)


def _regular_close(calendar: Any) -> time:
    """The close of a regular session (16:00 for the NYSE), from the calendar's close times."""
    closes = getattr(calendar, "close_times", None) or ((None, time(16, 0)),)
    close: time = closes[-1][1]
    return close
