"""The long-running daemon and the demo: the service plus its scheduled jobs.

APScheduler runs the periodic jobs (the evaluation tick that catches stale data and due
reminders, history pruning, the daily summary); the service reacts to gateway pushes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor.service import MonitorService
from monitor.settings import Settings

log = structlog.get_logger("monitor.daemon")


def summary_trigger(settings: Settings) -> CronTrigger:
    """The daily summary's cron trigger in its configured local time zone (DST-safe)."""
    hour, minute = (int(part) for part in settings.summary.time.split(":"))
    return CronTrigger(
        hour=hour,
        minute=minute,
        day_of_week=settings.summary.days,
        timezone=ZoneInfo(settings.summary.timezone),
    )


def build_scheduler(service: MonitorService) -> AsyncIOScheduler:
    """The scheduler with the daemon's jobs (not started)."""
    settings = service.settings
    scheduler = AsyncIOScheduler(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30}
    )
    scheduler.add_job(
        service.tick,
        IntervalTrigger(seconds=settings.monitor.evaluate_every_seconds),
        id="evaluate",
        name="evaluate every account",
    )
    scheduler.add_job(
        service.prune_history,
        CronTrigger(hour=3, minute=17, timezone=service.zone or None),
        id="prune",
        name="prune history",
    )
    if settings.summary.enabled:
        scheduler.add_job(
            service.send_daily_summary,
            summary_trigger(settings),
            id="summary",
            name="daily summary",
            misfire_grace_time=600,
        )
    return scheduler


async def run_daemon(
    settings: Settings,
    stop: asyncio.Event | None = None,
    service: MonitorService | None = None,
) -> int:
    """Run the monitor until ``stop`` is set (or SIGINT/SIGTERM); returns the exit status."""
    from monitor.cli import install_signal_handlers

    stop = stop or asyncio.Event()
    install_signal_handlers(stop)
    service = service or MonitorService(settings)
    scheduler = build_scheduler(service)
    scheduler.start()
    extras = await service.start_extras(stop)
    try:
        await service.run(stop)
    finally:
        scheduler.shutdown(wait=False)
        for task in extras:
            task.cancel()
        service.close()
    return 0


async def run_demo(settings: Settings, scenario: str, speed: float | None) -> int:
    """Play a scenario on the simulated gateway and run the monitor against it."""
    from monitor.simulator import SimulatedGateway, load_scenario

    loaded = load_scenario(scenario)
    options = {} if speed is None else {"speed": speed}
    gateway = SimulatedGateway(loaded, host="127.0.0.1", port=0, **options)
    port = await gateway.start()
    state_dir = Path(tempfile.mkdtemp(prefix="margin-monitor-demo-"))
    demo_settings = settings.model_copy(
        update={
            "ib": settings.ib.model_copy(
                update={"host": "127.0.0.1", "port": port, "accounts": [], "timeout": 5.0}
            ),
            "notify": settings.notify.model_copy(
                update={"urls": ["console://", *settings.notify.urls], "quiet_hours": None}
            ),
            "monitor": settings.monitor.model_copy(
                update={"state_dir": state_dir, "evaluate_every_seconds": 5.0}
            ),
            "summary": settings.summary.model_copy(update={"enabled": False}),
        }
    )
    print(
        f"Simulated IB Gateway on 127.0.0.1:{port} playing {scenario!r}; "
        "alerts print below as they are sent.",
        flush=True,
    )
    stop = asyncio.Event()
    service = MonitorService(demo_settings)
    daemon = asyncio.create_task(run_daemon(demo_settings, stop, service))
    try:
        await gateway.run_timeline()
        await service.settle(timeout=10.0)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(daemon, 15)
        await gateway.stop()
    fired = [t for t in service.transitions if t.finding.rule == "cushion"]
    print(
        f"\nDemo finished: {len(service.transitions)} notifications sent "
        f"({len(fired)} about the cushion). State kept in {state_dir}."
    )
    orders = len(gateway.orders_received)
    print(f"Orders the monitor sent to the gateway: {orders} (it is read-only).")
    return 0
