"""Helpers shared by the integration tests: a config for a monitor on a local gateway, and the
one bounded wait on a condition (never a sleep for luck)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.settings import Settings, load_settings

CLIENT_ID = 7


def write_config(
    tmp_path: Path,
    port: int,
    urls: list[str],
    *,
    name: str = "config.toml",
    state_dir: Path | None = None,
    **sections: dict[str, Any],
) -> Path:
    """A config file for a monitor on a local gateway, tuned for fast tests.

    ``sections`` add or override keys: ``ib={...}``, ``notify={...}``, ``monitor={...}`` and
    ``rules={"stale_data": {...}}``.
    """
    ib = {
        "host": "127.0.0.1",
        "port": port,
        "client_id": CLIENT_ID,
        "timeout": 5,
        "reconnect_min_seconds": 0.05,
        "reconnect_max_seconds": 0.5,
        "probe_after_seconds": 5,
        **sections.get("ib", {}),
    }
    notify = {"urls": urls, **sections.get("notify", {})}
    monitor = {
        "state_dir": str(state_dir or tmp_path / "state"),
        "evaluate_every_seconds": 0.05,
        **sections.get("monitor", {}),
    }
    lines = []
    for title, table in (("ib", ib), ("notify", notify), ("monitor", monitor)):
        lines.append(f"[{title}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in table.items())
    for rule, table in sections.get("rules", {}).items():
        lines.append(f"[rules.{rule}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in table.items())
    lines.append("[summary]\nenabled = false")
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


class SteppingClock:
    """A wall clock and a monotonic clock, both running in real time, that a test moves.

    :meth:`advance` lets time pass on both (minutes go by without waiting); :meth:`step` moves
    the wall clock alone, as an NTP correction or a VM resumed from suspend does. Hand the
    instance to the builders as ``clock`` and its :meth:`monotonic` as ``monotonic``.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime.now(UTC)
        self._origin = time.monotonic()
        self.offset = timedelta()
        self.elapsed = 0.0

    def __call__(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._origin) + self.offset

    def monotonic(self) -> float:
        """The monotonic clock: real seconds plus every :meth:`advance`."""
        return time.monotonic() + self.elapsed

    def advance(self, **delta: float) -> None:
        """Let ``timedelta(**delta)`` pass on both clocks."""
        moved = timedelta(**delta)
        self.offset += moved
        self.elapsed += moved.total_seconds()

    def step(self, **delta: float) -> None:
        """Step the wall clock alone by ``timedelta(**delta)`` (negative: back)."""
        self.offset += timedelta(**delta)


def make_settings(tmp_path: Path, port: int, urls: list[str], **sections: Any) -> Settings:
    """:func:`write_config` loaded."""
    return load_settings(write_config(tmp_path, port, urls, **sections))


async def until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    changed: asyncio.Event | None = None,
) -> None:
    """Wait until ``predicate()`` holds; fail the test naming ``what`` after ``timeout`` s.

    The predicate is checked every 20 ms, or, given ``changed`` (an event the code under test
    sets when something happened), each time that event is set.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout:g} s waiting until {what}")
        if changed is None:
            await asyncio.sleep(min(0.02, remaining))
            continue
        changed.clear()  # no await since the check: nothing can have set it in between
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), remaining)


def toml_value(value: Any) -> str:
    """A TOML literal for a bool, number, string, list or (inline) table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(value)
