"""Times of day, daily windows and UTC instants: pure functions, no clock is read here.

Standard library only. ``HH:MM`` parsing, ``HH:MM-HH:MM`` windows (which may wrap past
midnight), the time zone cache, and the fixed-width UTC ISO text the store and the alert ids
use all live here once; the caller always passes ``now`` in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rules.model import TradingDay

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

#: A daily window: start (inclusive) and end (exclusive) on some clock; start > end wraps.
Window = tuple[time, time]


def parse_hhmm(text: str) -> time:
    """``"15:30"`` -> ``time(15, 30)``; ValueError naming the expected form otherwise."""
    match = _HHMM.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"expected a time 'HH:MM' on a 24-hour clock, got {text!r}")
    return time(int(match.group(1)), int(match.group(2)))


def parse_window(text: str) -> Window:
    """``"23:45-00:15"`` -> two times (the window may wrap past midnight)."""
    start, sep, end = text.partition("-") if isinstance(text, str) else ("", "", "")
    try:
        if not sep:
            raise ValueError
        return parse_hhmm(start), parse_hhmm(end)
    except ValueError:
        raise ValueError(f"expected 'HH:MM-HH:MM' (24-hour clock), got {text!r}") from None


def window_of(start: str, end: str) -> Window:
    """A ``start``/``end`` pair of ``HH:MM`` texts (a rule's window settings) as a window."""
    return parse_hhmm(start), parse_hhmm(end)


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The :class:`ZoneInfo` of an IANA name (cached); ValueError naming an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as 'America/New_York')"
        ) from None


def as_utc(moment: datetime) -> datetime:
    """The same instant in UTC (a naive datetime is taken to be UTC already)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def on_clock(moment: datetime, timezone: tzinfo | None) -> datetime:
    """``moment`` on the clock of ``timezone`` (``None``: the machine's local zone)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(timezone) if timezone is not None else aware.astimezone()


def in_window(
    now: datetime, window: Window, timezone: tzinfo | None, *, weekdays_only: bool = False
) -> bool:
    """True when ``now`` is inside the daily ``window`` on ``timezone``'s clock.

    The start is inclusive, the end exclusive; a window may wrap past midnight. With
    ``weekdays_only`` the window exists Monday to Friday, by the day it starts on.
    """
    local = on_clock(now, timezone)
    begin, finish = window
    current = local.time().replace(tzinfo=None)
    weekday = local.weekday()
    if begin <= finish:
        inside = begin <= current < finish
    else:
        inside = current >= begin or current < finish
        if inside and current < finish:
            weekday = (weekday - 1) % 7  # the window started the day before
    return inside and (not weekdays_only or weekday < 5)


@dataclass(frozen=True, slots=True)
class WindowToday:
    """A daily window as it falls today: ``inside`` it now, ``text`` saying where it is
    (``15:30-16:00 America/New_York``, moved before an early close, or why there is none) and
    ``starts``, when it opens (``15:30 America/New_York``; the next session's when none today);
    ``exists`` is False on a day the exchange does not trade."""

    inside: bool
    text: str
    starts: str
    exists: bool = True


def session_window(
    now: datetime,
    start: str,
    end: str,
    timezone: str,
    trading_day: TradingDay | None,
) -> WindowToday:
    """The ``start``-``end`` window (``HH:MM`` on ``timezone``'s clock, set against a regular
    session) as it falls on the day of ``now``.

    Without a calendar (``trading_day`` None, or describing another day) the window exists on
    weekdays. With one: no window when the exchange has no session (holiday, weekend); on an
    early-close day the window moves by as much as the close (15:30-16:00 becomes 12:30-13:00
    when the session closes at 13:00).
    """
    clock = zone(timezone)
    span, starts = f"{start}-{end} {timezone}", f"{start} {timezone}"
    local = on_clock(now, clock)
    if trading_day is None or trading_day.day != local.date():
        inside = in_window(now, window_of(start, end), clock, weekdays_only=True)
        return WindowToday(inside, span, starts)
    if not trading_day.is_session:
        closed = f"no {start}-{end} {timezone} window today: the exchange is closed"
        return WindowToday(False, closed, f"the next session's {starts}", exists=False)
    shift = trading_day.close_shift
    begin = datetime.combine(local.date(), parse_hhmm(start), tzinfo=clock) + shift
    finish = datetime.combine(local.date(), parse_hhmm(end), tzinfo=clock) + shift
    if shift:
        close = on_clock(trading_day.close, clock) if trading_day.close else finish
        span = (
            f"{begin:%H:%M}-{finish:%H:%M} {timezone} (early close at {close:%H:%M}; "
            f"{start}-{end} on a regular day)"
        )
        starts = f"{begin:%H:%M} {timezone}"
    return WindowToday(begin <= local < finish, span, starts)


def local_time(moment: datetime, timezone: str) -> str:
    """``2026-05-11 15:00 EDT``: a moment on the clock of ``timezone``."""
    return on_clock(moment, zone(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def utc_minute(moment: datetime) -> str:
    """``2026-05-11 19:00 UTC``: an instant as people read it in messages."""
    return as_utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def iso_utc(moment: datetime | None) -> str | None:
    """Fixed-width UTC ISO text (``2026-05-01T13:30:00.000000+00:00``): string order is time
    order, and the text does not depend on the zone the instant was expressed in."""
    if moment is None:
        return None
    return as_utc(moment).isoformat(timespec="microseconds")


def parse_iso(text: str | None) -> datetime | None:
    """An ISO instant back as an aware datetime (naive text is taken to be UTC)."""
    if not text:
        return None
    return as_utc(datetime.fromisoformat(text))
