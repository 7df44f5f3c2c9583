"""The process shell around the service: signals, systemd, heartbeat, metrics, scheduler.

:class:`Daemon` runs one :class:`~monitor.service.MonitorService` until SIGINT/SIGTERM (or a
``stop`` event): it starts the scheduler with the jobs of :func:`schedule_jobs` (history
pruning and :func:`daily_summary`, both at wall-clock times people chose; the evaluation tick
is the service's own, on the monotonic clock), the metrics endpoint, the status page, the
heartbeat to a dead man's switch and the systemd watchdog, tells systemd READY and STOPPING,
and closes the store at the end. It builds none of these: :mod:`monitor.app` does.

A metrics port that cannot be bound is a configuration error (one line, exit 2); a listener
bound beyond loopback is logged as a warning naming the risk. A stop completes within a few
seconds whatever the targets or the heartbeat endpoint do: every send runs in a daemon thread
with a deadline, never in an executor the interpreter would wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from monitor.heartbeat import Heartbeat
from monitor.logs import redactor
from monitor.metrics import MetricsServer
from monitor.service import MonitorService
from monitor.settings import ConfigError, Settings, is_loopback
from monitor.summary import send_daily_summary
from monitor.systemd import feed_watchdog
from monitor.systemd import notify as sd_notify
from rules.clock import parse_hhmm, zone

if TYPE_CHECKING:
    from monitor.web import WebServer

log = structlog.get_logger("monitor.daemon")


def warn_if_exposed(host: str, listener: str) -> None:
    """Log a warning naming the risk when ``listener`` is bound beyond loopback."""
    if not is_loopback(host):
        log.warning(
            f"{listener} listens beyond loopback",
            host=host,
            risk="anyone who can reach this port reads every account's figures (net "
            "liquidation, cushion, alerts) without authentication; bind 127.0.0.1 and "
            "publish the port to trusted clients only",
        )


class _Listener(Protocol):
    host: str
    port: int

    async def start(self) -> None: ...


async def bind(server: _Listener, section: str) -> None:
    """Start listening; a port that cannot be bound is a configuration error naming it."""
    try:
        await server.start()
    except OSError as error:
        raise ConfigError(
            f"[{section}] port {server.port} on {server.host} cannot be bound: "
            f"{error.strerror or error} (is another process using it? choose another port)"
        ) from None


def install_signal_handlers(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT and SIGTERM."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)


async def daily_summary(service: MonitorService, day: date | None = None) -> Path:
    """The scheduled daily summary of the service's store, sent through its notifier;
    ``day`` defaults to today by the service's clock. Returns the Markdown file."""
    return await send_daily_summary(
        service.store, service.notifier, service.settings, service.clock(), day
    )


def schedule_jobs(scheduler: AsyncIOScheduler, service: MonitorService) -> None:
    """The daemon's wall-clock jobs: history pruning at 03:17 and the daily summary when
    enabled (the evaluation tick runs in the service, on the monotonic clock)."""
    settings = service.settings
    scheduler.add_job(
        service.prune_history,
        CronTrigger(hour=3, minute=17, timezone=service.zone),
        id="prune",
        name="prune history",
    )
    if settings.summary.enabled:
        scheduler.add_job(
            daily_summary,
            summary_trigger(settings),
            args=[service],
            id="summary",
            name="daily summary",
            misfire_grace_time=600,
        )


def summary_trigger(settings: Settings) -> CronTrigger:
    """The daily summary's cron trigger in its configured local time zone (DST-safe)."""
    at = parse_hhmm(settings.summary.time)
    return CronTrigger(
        hour=at.hour,
        minute=at.minute,
        day_of_week=settings.summary.days,
        timezone=zone(settings.summary.timezone),
    )


class Daemon:
    """Runs the service with its companions until stopped; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        service: MonitorService,
        scheduler: AsyncIOScheduler,
        metrics_server: MetricsServer | None = None,
        *,
        web_server: WebServer | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.scheduler = scheduler
        self.metrics_server = metrics_server
        self.web_server = web_server

    async def run(self, stop: asyncio.Event | None = None) -> int:
        """Run until ``stop`` is set (or SIGINT/SIGTERM); the exit status (1 when a task of
        the service died, so systemd restarts the daemon)."""
        stop = stop or asyncio.Event()
        install_signal_handlers(stop)
        companions: list[asyncio.Task[None]] = []
        self.scheduler.start()
        try:
            companions = await self._start_companions(stop)
            sd_notify("READY=1")
            await self.service.run(stop)
        finally:
            self.scheduler.shutdown(wait=False)
            for task in companions:
                task.cancel()
            sd_notify("STOPPING=1")
            self.service.store.close()
        return 1 if self.service.failed_task else 0

    async def _start_companions(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        """The metrics endpoint (bound first: a port in use fails before anything runs), the
        watchdog and the heartbeat."""
        tasks = []
        if self.metrics_server is not None:
            server = self.metrics_server
            await bind(server, "metrics")
            redactor.allow(server.url)  # an address the monitor publishes, nothing secret
            log.info("metrics endpoint", url=server.url)
            warn_if_exposed(server.host, "metrics endpoint")
            tasks.append(asyncio.create_task(self.metrics_server.serve(stop), name="metrics"))
        if self.web_server is not None:
            await bind(self.web_server, "web")
            tasks.append(asyncio.create_task(self.web_server.serve(stop), name="web"))
            announce_web_server(self.web_server)
        tasks.append(asyncio.create_task(feed_watchdog(stop), name="watchdog"))
        if self.settings.notify.heartbeat_url is not None:
            tasks.append(asyncio.create_task(self._heartbeat(stop), name="heartbeat"))
        return tasks

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        """``/start``, then the dead man's switch every ``heartbeat_seconds``: ``<url>`` while
        healthy, ``<url>/fail`` while blind (:mod:`monitor.heartbeat`)."""
        secret = self.settings.notify.heartbeat_url
        if secret is None:
            return
        heartbeat = Heartbeat(secret.get_secret_value())
        await heartbeat.run(self.service.healthy, self.settings.notify.heartbeat_seconds, stop)


def announce_web_server(server: WebServer) -> None:
    """Log where the status page is; beyond loopback, a warning that says the token guards it."""
    redactor.allow(server.url)  # never carries the token
    if is_loopback(server.host):
        log.info("status page", url=server.url, token_required=server.protected)
    else:
        log.warning(
            "status page listening beyond loopback: every request needs [web] token; "
            "serve it behind TLS so the token does not cross the network in clear",
            url=server.url,
        )
