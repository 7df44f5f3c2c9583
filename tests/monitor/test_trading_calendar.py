"""The exchange calendar at the edge: real NYSE sessions from exchange_calendars."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest

from monitor.trading_calendar import trading_day, trading_day_at


def test_thanksgiving_has_no_session():
    """2026-11-26 (Thanksgiving) and 2026-07-03 (Independence Day observed): NYSE closed."""
    for holiday in (date(2026, 11, 26), date(2026, 7, 3)):
        day = trading_day(holiday)
        assert day is not None and not day.is_session


def test_the_day_after_thanksgiving_closes_at_one():
    """2026-11-27 opens 09:30 and closes 13:00 New York: an early close, 3 h before 16:00."""
    day = trading_day(date(2026, 11, 27))
    assert day is not None and day.is_session and day.early_close
    assert day.open is not None and day.open.time() == time(9, 30)
    assert day.close is not None and day.close.time() == time(13, 0)
    assert day.close_shift.total_seconds() == -3 * 3600


def test_a_regular_day_and_the_exchange_clock():
    """2026-12-02 closes at 16:00; 03:00 UTC on 2026-11-27 is still Thanksgiving in New York."""
    regular = trading_day(date(2026, 12, 2))
    assert regular is not None and regular.is_session and not regular.early_close
    assert trading_day_at(datetime(2026, 11, 27, 3, 0, tzinfo=UTC)) == trading_day(
        date(2026, 11, 26)
    )


def test_a_day_beyond_the_calendar_is_unknown():
    """Far outside the library's range: None (the windows then fall on weekdays)."""
    assert trading_day(date(2099, 1, 2)) is None


@pytest.mark.slow
def test_the_command_line_starts_without_the_calendar_library():
    """Importing the CLI loads neither exchange_calendars nor pandas (0.5 s): the calendar is
    imported on the first evaluation only."""
    code = (
        "import sys, monitor.cli, monitor.app, monitor.service; "
        "print(sorted(m for m in ('exchange_calendars', 'pandas') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_daemon_reads_the_sessions_from_a_child_process_without_pandas():
    """After ``use_child_process`` (the daemon), the day after Thanksgiving is still an early
    close, and pandas never loaded in this process."""
    code = (
        "import sys; from datetime import date; from monitor import trading_calendar as t; "
        "t.use_child_process(); day = t.trading_day(date(2026, 11, 27)); "
        "print(day is not None and day.early_close, 'pandas' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["True", "False"]


def early_close_and_pandas(cache_home: Path) -> list[str]:
    """In a new interpreter caching in ``cache_home``: whether the day after Thanksgiving 2026
    closes early, and whether pandas was loaded to say so."""
    code = (
        "import sys; from datetime import date; from monitor import trading_calendar as t; "
        "day = t.trading_day(date(2026, 11, 27)); "
        "print(day is not None and day.early_close, 'pandas' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "XDG_CACHE_HOME": str(cache_home)},
    )
    return result.stdout.split()


@pytest.mark.slow
def test_the_sessions_are_cached_so_the_next_check_loads_no_pandas(tmp_path):
    """The first run reads the calendar (pandas) and keeps its sessions under
    $XDG_CACHE_HOME/margin-monitor; the next run (a cron ``check``) answers from that file
    alone. A damaged cache file is read anew, never an error."""
    assert early_close_and_pandas(tmp_path) == ["True", "True"]
    [cached] = (tmp_path / "margin-monitor").glob("XNYS-sessions-*.json")
    assert early_close_and_pandas(tmp_path) == ["True", "False"]
    cached.write_text("{not json", encoding="utf-8")
    assert early_close_and_pandas(tmp_path) == ["True", "True"]
    assert json.loads(cached.read_text(encoding="utf-8"))["last"] > "2026-12-31"
