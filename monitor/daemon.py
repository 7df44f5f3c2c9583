"""The long-running daemon and the demo: the service plus its scheduled jobs.

APScheduler runs the periodic jobs (the evaluation tick that catches stale data and due
reminders, history pruning, the daily summary); the service reacts to gateway pushes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor.service import MonitorService, utc_now
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
    return 1 if service.failed_task else 0


# An illustrative benchmark for the simulated demo only; a real configuration must set its own.
DEMO_BENCHMARK = 0.0433


def accelerated_clock(start: datetime, speed: float) -> Callable[[], datetime]:
    """A clock that starts at ``start`` and runs ``speed`` times faster than the wall clock."""
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=(time.monotonic() - origin) * speed)


def session_open(zone: str = "America/New_York") -> datetime:
    """Today's 09:30 in ``zone``, where an accelerated trading-day scenario starts."""
    today = datetime.now(ZoneInfo(zone)).date()
    return datetime.combine(today, dt_time(9, 30), tzinfo=ZoneInfo(zone))


async def run_demo(
    settings: Settings, scenario: str, speed: float | None, state_dir: Path | None = None
) -> int:
    """Play a scenario on the simulated gateway and run the monitor against it.

    A scenario played fast (speed 10 or more, e.g. ``trading_day``) runs the monitor on a clock
    accelerated alike, starting at 09:30 New York time, so alerts, history and the daily summary
    printed at the end carry session times.
    """
    from monitor.sim.scenarios import load_scenario
    from monitor.sim.server import SimulatedGateway

    loaded = load_scenario(scenario)
    options = {} if speed is None else {"speed": speed}
    gateway = SimulatedGateway(loaded, host="127.0.0.1", port=0, **options)
    port = await gateway.start()
    accelerated = gateway.speed >= 10
    clock = accelerated_clock(session_open(), gateway.speed) if accelerated else utc_now
    state_dir = state_dir or Path(tempfile.mkdtemp(prefix="margin-monitor-demo-"))
    rules = settings.rules
    if rules.financing_cost.benchmark_rate is None:  # the demo's loan needs a rate to cost it
        rules = replace(
            rules, financing_cost=replace(rules.financing_cost, benchmark_rate=DEMO_BENCHMARK)
        )
    if accelerated:  # ten scenario minutes pass in a wall second: judge staleness in session time
        rules = replace(
            rules, stale_data=replace(rules.stale_data, stale_minutes=60.0, blind_minutes=30.0)
        )
    demo_settings = settings.model_copy(
        update={
            "ib": settings.ib.model_copy(
                update={
                    "host": "127.0.0.1",
                    "port": port,
                    "accounts": [],
                    "timeout": 5.0,
                    "reconnect_min_seconds": 0.2,
                }
            ),
            "notify": settings.notify.model_copy(
                update={"urls": ["console://", *settings.notify.urls], "quiet_hours": None}
            ),
            "monitor": settings.monitor.model_copy(
                update={"state_dir": state_dir, "evaluate_every_seconds": 5.0}
            ),
            "summary": settings.summary.model_copy(update={"enabled": False}),
            "rules": rules,
        }
    )
    print(
        f"Simulated IB Gateway on 127.0.0.1:{port} playing {loaded.name!r} "
        f"at {gateway.speed:g}x; alerts print below as they are sent. (Financing costs assume a "
        f"{rules.financing_cost.benchmark_rate:.2%} benchmark unless your config sets one.)",
        flush=True,
    )
    stop = asyncio.Event()
    service = MonitorService(demo_settings, clock=clock)
    daemon = asyncio.create_task(run_daemon(demo_settings, stop, service))
    try:
        await gateway.wait_for_clients(1, timeout=15)
        await gateway.run_timeline()
        await service.settle(timeout=10.0)
        if accelerated:
            markdown = await service.send_daily_summary()
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
    if accelerated:
        print(f"Daily summary saved as {markdown} (charts beside it).")
    print(f"Orders the monitor sent to the gateway: {len(gateway.orders_received)} (read-only).")
    return 0
