"""The exchange calendar at the edge: today's NYSE session as a :class:`rules.model.TradingDay`.

The rules' pre-close windows (the leveraged-ETF rebalancing window, the Reg T SMA check) follow
the exchange's sessions: none on a holiday, moved before an early close. Holidays and early
closes come from ``exchange_calendars`` (maintained, and the one candidate that knows early
closes; ``holidays`` knows only the holidays). It brings pandas (about half a second and
~45 MB of memory that a daemon would carry for months), so the daemon
(:func:`use_child_process`) reads the sessions once from a short-lived child process
(``python -m monitor.trading_calendar``) that prints the calendar's whole range (about 21
years) as JSON, keeps only that table and never imports pandas. A one-shot command (``check``)
imports the library in-process, which is quicker than starting a second interpreter. Either
keeps the table in the user's cache directory (:func:`cache_file`), so the next run (a cron
``check``) reads the file and loads no pandas at all. When
the library is missing, the child fails or the day is outside the range the answer is
``None``: the rules then fall back to weekdays, and the log says so once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from monitor import installed_version
from rules.model import TradingDay

log = structlog.get_logger("monitor.trading_calendar")

#: The exchange whose sessions the windows follow (ISO 10383 code, as exchange_calendars names it).
EXCHANGE = "XNYS"
EXCHANGE_ZONE = ZoneInfo("America/New_York")
#: The child's longest run (it imports pandas: about a second on a busy machine).
CHILD_TIMEOUT = 60.0
#: A cached table is used while it covers this far ahead (the library's range reaches a year).
CACHE_AHEAD = timedelta(days=60)


@dataclass(frozen=True, slots=True)
class Sessions:
    """The calendar's range, its sessions (day -> open and close, UTC epoch seconds) and the
    close of a regular session."""

    first: date
    last: date
    sessions: dict[date, tuple[float, float]]
    regular_close: time


_lock = threading.Lock()
_sessions: Sessions | None = None
_unavailable: str | None = None
_child = False


def use_child_process() -> None:
    """Read the sessions from a child process from now on (the daemon: pandas never loads)."""
    global _child
    _child = True


def _load() -> Sessions | None:
    """The sessions, read once from the child process; ``None`` when the calendar cannot be
    used (the reason is logged once)."""
    global _sessions, _unavailable
    with _lock:
        if _sessions is None and _unavailable is None:
            try:
                table = _cached_table()
                if table is None:
                    table = _read_child() if _child else sessions_table()
                    _write_cache(table)
                _sessions = _parse(table)
            except Exception as error:  # missing library or broken data: windows on weekdays
                _unavailable = f"{type(error).__name__}: {error}"
                log.warning(
                    "exchange calendar unavailable; trading windows fall on weekdays",
                    error=_unavailable,
                )
        return _sessions


def cache_file() -> Path:
    """Where the sessions table is kept between runs (``$XDG_CACHE_HOME``, else ~/.cache), so
    that ``check`` imports no pandas after the first run; named by the library's version, so
    an upgrade (new holidays) reads the calendar anew."""
    version = installed_version("exchange_calendars")
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "margin-monitor" / f"{EXCHANGE}-sessions-{version}.json"


def _cached_table() -> dict[str, Any] | None:
    """The cached table when it is readable and still covers the next :data:`CACHE_AHEAD`
    days; ``None`` (read the calendar) otherwise."""
    try:
        table: dict[str, Any] = json.loads(cache_file().read_text(encoding="utf-8"))
        last = date.fromisoformat(table["last"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return table if last >= date.today() + CACHE_AHEAD else None


def _write_cache(table: dict[str, Any]) -> None:
    """Keep ``table`` for the next run (best effort: a cache that cannot be written only costs
    the next run the calendar's import); written whole or not at all."""
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(table), encoding="utf-8")
        partial.replace(path)
    except OSError as error:
        log.debug("calendar cache not written", error=str(error))


def _read_child() -> dict[str, Any]:
    """Run ``python -m monitor.trading_calendar`` and read the table it prints."""
    result = subprocess.run(
        [sys.executable, "-m", "monitor.trading_calendar"],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        lines = (result.stderr or "").strip().splitlines() or ["no output"]
        raise RuntimeError(lines[-1][:200])
    table: dict[str, Any] = json.loads(result.stdout)
    return table


def _parse(table: dict[str, Any]) -> Sessions:
    """The sessions from :func:`sessions_table`'s data."""
    hour, minute = (int(part) for part in table["regular_close"].split(":"))
    return Sessions(
        date.fromisoformat(table["first"]),
        date.fromisoformat(table["last"]),
        {date.fromisoformat(day): (opens, closes) for day, opens, closes in table["sessions"]},
        time(hour, minute),
    )


def sessions_table() -> dict[str, Any]:
    """The child's side: every session of the calendar's range, as JSON-ready data."""
    with warnings.catch_warnings():  # pandas deprecations inside the library
        warnings.simplefilter("ignore")
        import exchange_calendars

        calendar = exchange_calendars.get_calendar(EXCHANGE)
        schedule = calendar.schedule
        days = [day.isoformat() for day in schedule.index.date]
        opens, closes = (  # UTC epoch seconds, converted as whole columns (5,000 rows)
            (schedule[column].to_numpy().astype("datetime64[s]").astype("int64")).tolist()
            for column in ("open", "close")
        )
        sessions = [list(row) for row in zip(days, opens, closes, strict=True)]
        closes_at = getattr(calendar, "close_times", None) or ((None, time(16, 0)),)
        regular: time = closes_at[-1][1]
        return {
            "first": calendar.first_session.date().isoformat(),
            "last": calendar.last_session.date().isoformat(),
            "regular_close": regular.strftime("%H:%M"),
            "sessions": sessions,
        }


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
    table = _load()
    if table is None or not (table.first <= day <= table.last):
        return None
    session = table.sessions.get(day)
    if session is None:
        return TradingDay(day)
    opens, closes = (datetime.fromtimestamp(t, UTC).astimezone(EXCHANGE_ZONE) for t in session)
    regular = datetime.combine(day, table.regular_close, tzinfo=EXCHANGE_ZONE)
    return TradingDay(day, opens, closes, early_close=closes < regular, regular_close=regular)


if __name__ == "__main__":  # the child: print the sessions for the daemon to read
    json.dump(sessions_table(), sys.stdout)
