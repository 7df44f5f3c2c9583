"""The composition root: every command builds its parts here, from ``Settings``, the same way.

One builder per part, each taking the settings plus only what a caller may need to override:

- :func:`build_store` the SQLite state (``in_memory`` for commands that must not create it),
- :func:`build_connector` the read-only gateway link (``client_id`` for a command that runs
  beside the daemon), with the reconnect and probe settings,
- :func:`build_notifier` the Apprise targets with the outbox, quiet hours and maximum age
  (``quiet_hours=False`` for a message the user asks for on the command line),
- :func:`build_service` the service around those (a store or a connector passed in instead),
- :func:`build_scheduler` the daemon's jobs, :func:`build_metrics_server` the endpoint,
  :func:`build_web_server` the status page (its libraries imported only when it is on),
- :func:`build_daemon` all of it as a runnable :class:`~monitor.daemon.Daemon`,
- :func:`run_daemon` the ``run`` command: the state directory's lock, the state file opened
  (a damaged one moved aside and announced), the daemon built and run.

A variation of the whole set (the demo's simulated gateway and own state directory) is a
variation of the settings, passed to the same builders.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.clock import Clock, Monotonic, utc_now
from monitor.daemon import Daemon, schedule_jobs
from monitor.gateway import CLIENT_ID_ADVICE, BenchmarkSpec, GatewayConnector
from monitor.metrics import Metrics, MetricsServer
from monitor.notifier import (
    Notifier,
    QuietHours,
    Target,
    apprise_config_targets,
    state_reset_notice,
)
from monitor.service import AccountView, MonitorService
from monitor.settings import Settings
from monitor.store import IN_MEMORY, StateLock, Store, StoreError, open_state
from rules.clock import parse_window, zone

if TYPE_CHECKING:
    from monitor.web import WebServer

EvaluatedHook = Callable[[str, AccountView], None]

log = structlog.get_logger("monitor.app")


def build_store(settings: Settings, *, in_memory: bool = False) -> Store:
    """The state database at ``settings.monitor.database_path`` (created when missing), or a
    private in-memory one that leaves no file behind. A state directory or file that cannot
    be used is a :class:`~monitor.store.StateDirError` (a damaged file is left as it is: only
    the daemon moves it aside)."""
    if in_memory:
        return Store(IN_MEMORY)
    store, _ = open_state(settings.monitor.database_path, utc_now())
    return store


def build_targets(settings: Settings) -> list[Target]:
    """The notification targets from ``[notify] urls``, ``[[notify.targets]]`` and the
    Apprise configuration file of ``[notify] config`` (routed by its tags)."""
    targets = [
        Target.from_url(entry.url.get_secret_value(), index, entry.severities, entry.name)
        for index, entry in enumerate(settings.notify.all_targets(), start=1)
    ]
    if settings.notify.config is not None:
        targets += apprise_config_targets(settings.notify.config, len(targets) + 1)[0]
    return targets


def build_quiet_hours(settings: Settings) -> QuietHours | None:
    """``[notify] quiet_hours`` on its clock (``quiet_hours_timezone``, else ``[monitor]
    timezone``, else the machine's), or ``None`` when not set."""
    notify = settings.notify
    if not notify.quiet_hours:
        return None
    start, end = parse_window(notify.quiet_hours)
    name = notify.quiet_hours_timezone or settings.monitor.timezone
    return QuietHours(start, end, zone(name) if name else None)


def build_notifier(
    settings: Settings,
    store: Store,
    *,
    clock: Clock = utc_now,
    metrics: Metrics | None = None,
    quiet_hours: bool = True,
) -> Notifier:
    """The notifier over ``store``'s outbox, with the configured targets, maximum age and
    (unless ``quiet_hours`` is False) quiet hours; delivery outcomes counted in ``metrics``."""
    return Notifier(
        build_targets(settings),
        store,
        clock=clock,
        max_age=timedelta(hours=settings.notify.max_age_hours),
        quiet_hours=build_quiet_hours(settings) if quiet_hours else None,
        send_timeout=settings.notify.send_timeout_seconds,
        on_result=metrics.count_notification if metrics is not None else None,
    )


def build_connector(
    settings: Settings,
    *,
    clock: Clock = utc_now,
    monotonic: Monotonic = time.monotonic,
    client_id: int | None = None,
    client_id_advice: str | None = None,
) -> GatewayConnector:
    """The read-only gateway connector of ``[ib]`` (``client_id`` overrides its id, and
    ``client_id_advice`` then says how to change it when IB refuses it: error 326), following
    the market benchmark of ``[rules.drawdown]`` when that rule measures one."""
    ib = settings.ib
    return GatewayConnector(
        ib.host,
        ib.port,
        ib.client_id if client_id is None else client_id,
        ib.accounts,
        ib.timeout,
        clock=clock,
        fundamentals=ib.fundamentals,
        reconnect_min=ib.reconnect_min_seconds,
        reconnect_max=ib.reconnect_max_seconds,
        probe_after=ib.probe_after_seconds,
        monotonic=monotonic,
        benchmark=benchmark_spec(settings),
        client_id_advice=client_id_advice or CLIENT_ID_ADVICE,
        price_streams=ib.price_streams,
    )


def benchmark_spec(settings: Settings) -> BenchmarkSpec | None:
    """The benchmark ``[rules.drawdown]`` measures (``None``: disabled, or no benchmark)."""
    rule = settings.rules.drawdown
    if not rule.enabled or not rule.benchmark:
        return None
    return BenchmarkSpec(
        rule.benchmark, rule.benchmark_exchange, rule.benchmark_currency, rule.lookback_days
    )


def build_service(
    settings: Settings,
    *,
    clock: Clock = utc_now,
    monotonic: Monotonic = time.monotonic,
    store: Store | None = None,
    connector: GatewayConnector | None = None,
    on_evaluated: EvaluatedHook | None = None,
) -> MonitorService:
    """The service with its store, connector, notifier and metrics, each built from
    ``settings`` unless given (every part reads the same ``clock`` and ``monotonic``)."""
    store = store if store is not None else build_store(settings)
    metrics = Metrics()
    if connector is None:
        connector = build_connector(settings, clock=clock, monotonic=monotonic)
    return MonitorService(
        settings,
        connector=connector,
        store=store,
        notifier=build_notifier(settings, store, clock=clock, metrics=metrics),
        metrics=metrics,
        clock=clock,
        monotonic=monotonic,
        on_evaluated=on_evaluated,
    )


def build_scheduler(service: MonitorService) -> AsyncIOScheduler:
    """The daemon's scheduler (not started) with the daemon's jobs on it."""
    scheduler = AsyncIOScheduler(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30}
    )
    schedule_jobs(scheduler, service)
    return scheduler


def build_metrics_server(settings: Settings, service: MonitorService) -> MetricsServer | None:
    """The ``/metrics`` and ``/healthz`` endpoint of ``[metrics]``, or ``None`` when off."""
    port = settings.metrics.port
    if port is None:
        return None
    return MetricsServer(service.metrics, service.healthy, settings.metrics.host, port)


def build_web_server(settings: Settings, service: MonitorService) -> WebServer | None:
    """The status page of ``[web]`` over ``service`` (fed by its evaluations), or ``None`` when
    off. aiohttp and Jinja2 are imported here, only when it is on: other commands start
    without them."""
    web = settings.web
    if web.port is None:
        return None
    from monitor.web import WebServer

    token = web.token.get_secret_value() if web.token is not None else None
    server = WebServer(service, web.host, web.port, token=token)
    service.on_evaluated = both(service.on_evaluated, server.evaluated)
    return server


def both(first: EvaluatedHook | None, second: EvaluatedHook) -> EvaluatedHook:
    """One evaluation hook calling ``first`` (when set), then ``second``."""
    if first is None:
        return second

    def hook(account: str, view: AccountView) -> None:
        first(account, view)
        second(account, view)

    return hook


def build_daemon(
    settings: Settings,
    *,
    service: MonitorService | None = None,
    clock: Clock = utc_now,
    on_evaluated: EvaluatedHook | None = None,
) -> Daemon:
    """The daemon around ``service`` (built from ``settings`` with ``clock`` and
    ``on_evaluated`` when not given), its scheduler, its metrics endpoint and status page."""
    if service is None:
        service = build_service(settings, clock=clock, on_evaluated=on_evaluated)
    return Daemon(
        settings,
        service,
        build_scheduler(service),
        build_metrics_server(settings, service),
        web_server=build_web_server(settings, service),
    )


async def run_daemon(
    settings: Settings,
    stop: asyncio.Event | None = None,
    service: MonitorService | None = None,
) -> int:
    """The ``run`` command: run the daemon (around ``service`` when given) until ``stop`` is
    set or SIGINT/SIGTERM arrives; the exit status.

    It first takes the state directory's lock (:class:`~monitor.store.StateLocked` when
    another daemon holds it). Without a ``service`` it then opens the state file, moving a
    damaged one aside and queueing a critical notice about it, and takes back the outbox
    leases of a process that died mid-send, so those rows are retried at once.
    """
    with StateLock(settings.monitor.state_path):
        if service is None:
            service = open_daemon_service(settings)
        return await build_daemon(settings, service=service).run(stop)


def open_daemon_service(settings: Settings) -> MonitorService:
    """The daemon's service on its state file, opened by the one process holding the lock:
    a damaged file is moved aside (and the operator told), orphaned leases are released."""
    now = utc_now()
    store, reset = open_state(settings.monitor.database_path, now, recover=True)
    try:
        released = store.release_orphaned_leases()
    except StoreError:  # a full disk: the service degrades at its first write
        released = 0
    if released:
        log.info("notifications left mid-send by a stopped process are retried", rows=released)
    service = build_service(settings, store=store)
    if reset is not None:
        log.warning(
            "state file was damaged; moved aside and started fresh",
            kept=str(reset.kept),
            reason=reset.reason,
        )
        service.notifier.enqueue(
            state_reset_notice(settings.monitor.database_path, reset.kept, reset.reason, now)
        )
    return service
