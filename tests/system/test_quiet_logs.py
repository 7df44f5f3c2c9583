"""Quiet, single logs: the real daemon as a child process, its console log read back.

The simulated gateway serves the ``healthy`` book (ETFs and two stocks, fundamentals
entitled) with cushion thresholds set above its cushions, so alerts fire and go to a receiver
that refuses them; then the gateway goes away and the daemon retries. Every event of that run
is one line: no ib_async or Apprise line doubles the monitor's own, no fundamentals request is
made for an ETF, the metrics URL is shown as it is, and a world-readable configuration file
holding no secret gets no "insecure" warning.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections import Counter
from pathlib import Path

import pytest
from support import free_port, start_daemon, until, write_config

from monitor.sim.receiver import Receiver

ETFS = {"VTI", "VXUS", "BND", "VYM", "SCHD"}


def lines_of(log: Path) -> list[str]:
    """The console lines written so far."""
    return log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []


def events(lines: list[str], event: str) -> list[str]:
    """The lines of one event (the console renderer pads the event name after the level)."""
    pattern = re.compile(rf"\] {re.escape(event)}\s+\[")
    return [line for line in lines if pattern.search(line)]


@pytest.mark.slow
def test_each_event_is_logged_once(simulated_gateway, tmp_path):
    """Connect, alerts refused by the target, a lost gateway and its retries: one line each."""
    log = tmp_path / "daemon.log"
    metrics_port = free_port()

    async def scenario() -> tuple[list[str], list[str], str]:
        with Receiver() as receiver, Receiver() as pings:
            receiver.set_failing(True)
            async with simulated_gateway("healthy") as gateway:
                config = write_config(
                    tmp_path,
                    gateway.port,
                    [receiver.url],
                    notify={"heartbeat_url": f"{pings.http_url}ping/4f2a-uuid"},
                    metrics={"port": metrics_port},
                    rules={"cushion": {"warning": 0.95, "critical": 0.9}},
                )
                config.chmod(0o644)  # readable by all, but it holds no secret
                daemon = await start_daemon(config, log)
                try:
                    await until(
                        lambda: len(events(lines_of(log), "notification failed")) >= 2,
                        30,
                        "alerts refused by the target",
                    )
                    await until(
                        lambda: bool(events(lines_of(log), "heartbeat")), 10, "the heartbeat"
                    )
                    await gateway.stop()
                    await until(
                        lambda: len(events(lines_of(log), "gateway unavailable")) >= 2,
                        30,
                        "two attempts to reconnect",
                    )
                finally:
                    daemon.send_signal(signal.SIGINT)
                    await asyncio.wait_for(daemon.wait(), 30)
                return lines_of(log), list(gateway.fundamentals_requested), receiver.http_url

    lines, fundamentals, _ = asyncio.run(scenario())
    text = "\n".join(lines)
    assert "Traceback" not in text

    # One line per event.
    for event in ("monitor started", "connected", "disconnected from gateway", "heartbeat"):
        assert len(events(lines, event)) == 1, (event, text)
    failed = events(lines, "notification failed")
    keys = Counter(
        (
            re.search(r"notification_id=(\S+)", line).group(1),
            re.search(r"attempt=(\d+)", line).group(1),
        )  # type: ignore[union-attr]
        for line in failed
    )
    assert keys and max(keys.values()) == 1, "each refused attempt is said once"
    assert "HTTP" in failed[0] or "500" in failed[0] or "error=" in failed[0]
    # The libraries' doubles are gone: ib_async's errors, refused connections and closed
    # sockets, Apprise's delivery failures.
    for logger in ("[ib_async.wrapper]", "[ib_async.client]", "[apprise]"):
        assert logger not in text, logger
    assert "Error 430" not in text and "code=430" not in text
    assert "code=200" not in text  # the benchmark's unknown symbol is said by its own line
    assert len(events(lines, "benchmark history unavailable")) == 1
    attempts = events(lines, "gateway unavailable")
    assert len(attempts) >= 2 and all("retry_in=" in line for line in attempts)

    # No fundamentals request for an ETF; the stocks are still asked.
    assert fundamentals and not set(fundamentals) & ETFS
    assert set(fundamentals) <= {"AAPL", "MSFT"}

    # The metrics URL is an address, not a secret; the heartbeat shows its host only.
    (endpoint,) = events(lines, "metrics endpoint")
    assert f"url=http://127.0.0.1:{metrics_port}/metrics" in endpoint
    (heartbeat,) = events(lines, "heartbeat")
    assert "4f2a-uuid" not in text and re.search(r"url=http://127\.0\.0\.1:\d+/\*\*\*", heartbeat)

    # World-readable, but no secret in the file: no warning.
    assert "insecure configuration" not in text
