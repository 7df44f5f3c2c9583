"""Shared pytest fixtures.

Simulated gateway: tests run their async code with ``asyncio.run`` (no pytest-asyncio), so a
gateway must be started inside that loop. ``simulated_gateway`` hands out a factory whose
result is an async context manager listening on a free 127.0.0.1 port::

    async with simulated_gateway("selloff", account_push_interval=0) as gateway:
        ib = IB()
        await ib.connectAsync("127.0.0.1", gateway.port, clientId=1, readonly=True)

``scenario_file`` writes a scenario TOML text into the test's temporary directory;
``clean_environment`` removes the developer's ``MARGIN_MONITOR_*`` variables for a test.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from monitor.sim.scenarios import Scenario
from monitor.sim.server import SimulatedGateway

# The exchange calendar's sessions cache (monitor/trading_calendar.py) goes to a directory of
# this run, inherited by every command the tests start, never the developer's ~/.cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="margin-monitor-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)


@pytest.fixture
def scenario_file(tmp_path: Path) -> Callable[..., Path]:
    """Write scenario TOML (dedented) to ``tmp_path/<name>.toml`` and return the path."""
    written: list[Path] = []

    def write(text: str, name: str | None = None) -> Path:
        path = tmp_path / f"{name or f'scenario{len(written)}'}.toml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        written.append(path)
        return path

    return write


@pytest.fixture
def simulated_gateway() -> Callable[..., SimulatedGateway]:
    """Factory of simulated gateways on a free loopback port (use with ``async with``)."""

    def make(
        scenario: Scenario | str | Path | Mapping[str, Any], **options: Any
    ) -> SimulatedGateway:
        options.setdefault("host", "127.0.0.1")
        options.setdefault("port", 0)
        return SimulatedGateway(scenario, **options)

    return make


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MARGIN_MONITOR_* variable from the developer's shell changes the settings."""
    for name in list(os.environ):
        if name.startswith("MARGIN_MONITOR_"):
            monkeypatch.delenv(name)
