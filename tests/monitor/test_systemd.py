"""sd_notify and the watchdog against a real AF_UNIX datagram socket (what systemd listens on)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.systemd import feed_watchdog, notify, watchdog_interval


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing in for systemd's $NOTIFY_SOCKET, and its path.

    In tmp_path when the path fits a socket address (108 bytes), else in a short temporary
    directory (pytest's base directory can be long, e.g. on macOS).
    """
    path = tmp_path / "notify"
    short = None
    if len(os.fsencode(path)) >= 100:
        short = Path(tempfile.mkdtemp(prefix="mm-sd-"))
        path = short / "notify"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(5)
    try:
        yield server, str(path)
    finally:
        server.close()
        if short is not None:
            path.unlink(missing_ok=True)
            short.rmdir()


def test_notify_sends_ready_to_the_socket(notify_socket):
    """READY=1 arrives as one datagram."""
    server, path = notify_socket
    assert notify("READY=1", {"NOTIFY_SOCKET": path}) is True
    assert server.recv(256) == b"READY=1"


def test_notify_reaches_an_abstract_namespace_socket():
    """systemd may hand out '@name' (Linux abstract namespace): '@' becomes a NUL byte."""
    name = f"margin-monitor-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(5)
        assert notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name}) is True
        assert server.recv(256) == b"STOPPING=1"


def test_notify_outside_systemd_or_with_nobody_listening_is_false(tmp_path):
    """No $NOTIFY_SOCKET, or a socket nobody listens on: False, never an exception."""
    assert notify("READY=1", {}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent")}) is False


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),  # WatchdogSec=60: ping every 30 s
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),  # not us
        ({"WATCHDOG_USEC": "200000"}, 0.5),  # floor: never a busy loop
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(environ, expected):
    assert watchdog_interval(environ) == expected


def test_feed_watchdog_pings_and_stops_on_the_event(notify_socket):
    """The first WATCHDOG=1 is sent at once; setting ``stop`` ends the task without waiting
    out the (here five-minute) interval."""
    server, path = notify_socket
    server.setblocking(False)
    environ = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000000"}

    async def scenario() -> bytes:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        task = asyncio.create_task(feed_watchdog(stop, environ))
        datagram = await asyncio.wait_for(loop.sock_recv(server, 256), 5)
        stop.set()
        await asyncio.wait_for(task, 5)
        return datagram

    assert asyncio.run(scenario()) == b"WATCHDOG=1"


def test_feed_watchdog_returns_at_once_without_a_watchdog():
    """Not under a systemd watchdog: the task ends immediately, stop never set."""

    async def scenario() -> None:
        await asyncio.wait_for(feed_watchdog(asyncio.Event(), {}), 5)

    asyncio.run(scenario())


@pytest.mark.slow
def test_the_daemon_speaks_the_notify_protocol(notify_socket, tmp_path):
    """``margin-monitor run`` as systemd starts it (Type=notify, WatchdogSec): READY=1 and a
    first WATCHDOG=1 arrive although no gateway answers; SIGTERM ends it with STOPPING=1 and
    status 0. The gateway port is a closed loopback port, so the monitor only retries."""
    server, path = notify_socket
    with socket.socket() as probe:  # a free loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config = tmp_path / "config.toml"
    config.write_text(
        f'[ib]\nport = {closed_port}\ntimeout = 2.0\n[monitor]\nstate_dir = "{tmp_path / "s"}"\n',
        encoding="utf-8",
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MARGIN_MONITOR_")}
    environ.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="600000000", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "monitor.cli", "run", "--no-notify", "--config", str(config)]
    process = subprocess.Popen(
        command, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        server.settimeout(30)  # a bound on start-up, not a timing assertion
        received = set()
        while not {b"READY=1", b"WATCHDOG=1"} <= received:
            received.add(server.recv(256))
        process.send_signal(signal.SIGTERM)
        while server.recv(256) != b"STOPPING=1":
            pass
        _, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0, errors.decode(errors="replace")[-2000:]
