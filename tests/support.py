"""Helpers shared by the integration tests: a config for a monitor on a local gateway, the real
daemon run in the test's event loop with a recorder of its evaluations, clocks a test moves, and
the one bounded wait on a condition (never a sleep for luck)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.app import build_daemon, build_service
from monitor.clock import Clock, Monotonic, utc_now
from monitor.service import AccountView, MonitorService
from monitor.settings import Settings, load_settings
from monitor.sim.receiver import ReceivedMessage

CLIENT_ID = 7
ROOT = Path(__file__).resolve().parents[1]


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

    ``sections`` add or override keys: ``ib={...}``, ``notify={...}``, ``monitor={...}``,
    ``rules={"stale_data": {...}}`` and any other table, e.g. ``metrics={"port": 9464}``.
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
    for title, table in sections.items():
        if title not in ("ib", "notify", "monitor", "rules"):
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


class Recorder:
    """Every evaluation the service reports (through its ``on_evaluated`` hook)."""

    def __init__(self) -> None:
        self.views: list[tuple[str, AccountView]] = []

    def __call__(self, account: str, view: AccountView) -> None:
        self.views.append((account, view))

    def findings(self, account: str, rule: str) -> list[Any]:
        """The findings of ``rule`` for ``account``, oldest first."""
        return [
            finding
            for who, view in self.views
            if who == account
            for finding in view.findings
            if finding.rule == rule
        ]

    def since(self, mark: int, account: str, rule: str) -> list[Any]:
        """Like :meth:`findings`, for evaluations after the ``mark``-th one."""
        return [
            finding
            for who, view in self.views[mark:]
            if who == account
            for finding in view.findings
            if finding.rule == rule
        ]


@contextlib.asynccontextmanager
async def daemon(
    settings: Settings, clock: Clock = utc_now, monotonic: Monotonic = time.monotonic
) -> AsyncIterator[tuple[MonitorService, Recorder]]:
    """The real daemon (scheduler, connector, evaluator, notifier) in this event loop.

    The notifier retries after 0.1 s instead of 5 s so a recovered endpoint is tried at once.
    A :class:`SteppingClock` passed as ``clock`` also provides the monotonic clock.
    """
    recorder = Recorder()
    if isinstance(clock, SteppingClock):
        monotonic = clock.monotonic
    service = build_service(settings, clock=clock, monotonic=monotonic, on_evaluated=recorder)
    service.notifier.backoff_base = timedelta(milliseconds=100)
    service.notifier.backoff_max = timedelta(seconds=1)
    stop = asyncio.Event()
    task = asyncio.create_task(build_daemon(settings, service=service).run(stop))
    try:
        yield service, recorder
        assert not task.done(), "the daemon ended on its own"
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


def titles(messages: list[ReceivedMessage], account: str, rule: str) -> list[str]:
    """Titles of one (account, rule)'s notifications, in arrival order."""
    return [m.title for m in messages if m.title.split()[1:3] == [account, rule]]


def has(title: str) -> Callable[[list[ReceivedMessage]], bool]:
    """A receiver predicate: a message with exactly this title arrived."""
    return lambda messages: any(m.title == title for m in messages)



def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start_daemon(config: Path, log: Path) -> asyncio.subprocess.Process:
    """``python -m monitor.cli run --config ...`` as a real child process."""
    handle = log.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "monitor.cli",
            "run",
            "--config",
            str(config),
            cwd=str(ROOT),
            stdout=handle,
            stderr=handle,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        handle.close()


@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str = "4m") -> Iterator[str | None]:
    """Mount a tmpfs of ``size`` at ``path`` for the block; yields ``None`` when mounted, else
    why it could not be (it takes root or CAP_SYS_ADMIN): the caller skips, saying so."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        yield (
            "a full disk needs a small filesystem, and mounting one is not allowed here "
            f"({mounted.stderr.strip() or 'mount failed'})"
        )
        return
    try:
        yield None
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    with filler.open("ab", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 512)
    return filler


def margin_monitor(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The installed console script ``margin-monitor`` run with ``args`` (the developer's
    ``MARGIN_MONITOR_*`` variables left out, ``env`` added), its output captured."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MARGIN_MONITOR_")}
    return subprocess.run(
        [str(Path(sys.executable).with_name("margin-monitor")), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**environ, "COLUMNS": "100", **(env or {})},
        check=False,
    )


def write_state(state_dir: Path, now: datetime) -> Path:
    """A state database as a daemon leaves it: DU1 sampled a minute ago (NLV 100,000, EL
    18,000, cushion 18%), a cushion warning firing since ten minutes, notified then, one
    notification pending after 3 failed attempts, a peak of 120,000 and the gateway link
    recorded connected. Returns the database path."""
    from monitor.notifier import Notification
    from monitor.store import Store
    from rules.lifecycle import AlertState
    from rules.model import Severity

    path = state_dir / "monitor.sqlite3"
    with Store(path) as store:
        store.record_sample(
            "DU1",
            now - timedelta(minutes=1),
            {
                "net_liquidation": 100_000.0,
                "excess_liquidity": 18_000.0,
                "cushion": 0.18,
                "leverage": 1.5,
                "margin_loan": 20_000.0,
                "extra": {"base_currency": "USD", "net_leverage": 1.25},
            },
        )
        store.update_peak("DU1", 120_000.0)
        since = now - timedelta(minutes=10)
        store.save_alert_state(
            AlertState(
                "DU1", "cushion", Severity.WARNING, since, Severity.WARNING, since, 0.18, 1
            )
        )
        note = Notification(
            "DU1:cushion:1:abc", "DU1", "cushion", "warning", "fired",
            "[WARNING] DU1 cushion", "Cushion 18% is below the warning level 20%", since,
        )  # fmt: skip
        store.enqueue(note, {"t-1": "phone"}, now=since)
        for attempt in range(3):
            retry = now + timedelta(minutes=attempt + 1)
            store.mark_failed(note.id, "t-1", since, "HTTP 500", retry)
        store.record_daemon_state(
            "gateway",
            {
                "endpoint": "127.0.0.1:4001",
                "connected": True,
                "live": True,
                "since": (now - timedelta(hours=2)).isoformat(),
                "last_error": None,
            },
            now - timedelta(hours=2),
        )
    return path


def examples(thorough: int) -> int:
    """How many examples a property test draws: all of them in `make test`, a tenth in the
    edit loop (`make test-fast` sets MARGIN_MONITOR_QUICK_PROPERTIES) so it stays quick."""
    if os.environ.get("MARGIN_MONITOR_QUICK_PROPERTIES"):
        return max(10, thorough // 10)
    return thorough
