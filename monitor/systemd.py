"""systemd readiness and watchdog notifications (``Type=notify``), without a dependency.

The watchdog is fed from a task on the event loop: if the loop hangs, the pings stop and
systemd restarts the service. It is deliberately not tied to the IB connection, whose outages
the monitor reports itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket


def notify(message: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``) to ``$NOTIFY_SOCKET``; False when not under systemd."""
    address = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        # Called on the event loop: never block it for long if systemd's queue is full.
        sock.settimeout(1.0)
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError:
            return False
    return True


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, or None when no watchdog is configured for us."""
    env = environ if environ is not None else os.environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        microseconds = int(usec)
    except ValueError:
        return None
    if microseconds <= 0:
        return None
    return max(microseconds / 2_000_000, 0.5)


async def feed_watchdog(stop: asyncio.Event, environ: dict[str, str] | None = None) -> None:
    """Ping ``WATCHDOG=1`` at half the configured interval while the loop runs."""
    interval = watchdog_interval(environ)
    if interval is None:
        return
    while not stop.is_set():
        notify("WATCHDOG=1", environ)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
