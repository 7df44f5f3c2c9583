"""The daemon with its status page on a free loopback port, against a simulated gateway: shared
by the page's HTTP tests and its browser test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from support import make_settings, until

from monitor.app import build_daemon, build_service
from monitor.cli import run_check
from monitor.service import MonitorService
from monitor.settings import Settings
from monitor.sim.server import SimulatedGateway
from monitor.web import WebServer

#: The check's own client id, so it can run beside the daemon's connection.
CHECK_CLIENT_ID = 99


@dataclass
class Page:
    """A running daemon and its page."""

    gateway: SimulatedGateway
    service: MonitorService
    server: WebServer
    settings: Settings
    stop: asyncio.Event
    daemon: asyncio.Task[int]

    @property
    def url(self) -> str:
        return self.server.url

    async def check_json(self) -> dict[str, Any]:
        """What ``margin-monitor check --json`` prints now (its own connection)."""
        ib = self.settings.ib.model_copy(update={"client_id": CHECK_CLIENT_ID})
        return await run_check(self.settings.model_copy(update={"ib": ib}))


def with_page(settings: Settings, token: str | None = None) -> Settings:
    """``settings`` with the status page on a free port (0) of 127.0.0.1."""
    web = settings.web.model_copy(
        update={"port": 0, "token": SecretStr(token) if token else None}
    )
    return settings.model_copy(update={"web": web})


@contextlib.asynccontextmanager
async def running_page(
    gateway: SimulatedGateway, tmp_path: Path, *, token: str | None = None, **sections: Any
) -> AsyncIterator[Page]:
    """The daemon (page on) connected to ``gateway``, every account evaluated with values.

    It evaluates on every push from the gateway (and on a 5 s tick, not the tests' usual 50
    ms, so a stream carries what changed rather than a constant flow)."""
    sections["monitor"] = {"evaluate_every_seconds": 5, **sections.get("monitor", {})}
    settings = with_page(make_settings(tmp_path, gateway.port, [], **sections), token)
    service = build_service(settings)
    daemon = build_daemon(settings, service=service)
    assert daemon.web_server is not None
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        await gateway.wait_for_clients(1, timeout=10)

        def evaluated() -> bool:
            views = [service.views.get(account) for account in gateway.accounts]
            return all(view is not None and view.snapshot is not None for view in views)

        await until(evaluated, 10, "every account is evaluated with IB's values")
        yield Page(gateway, service, daemon.web_server, settings, stop, task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
