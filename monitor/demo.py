"""``margin-monitor demo``: the real daemon against the built-in simulated gateway.

The demo's settings are the user's (or the defaults) pointed at a simulated gateway on a free
loopback port, with a fresh state directory, notifications printed on the console, the status
page on (``[web] port``, else a free port; its address is printed) and, for a scenario played
fast, a clock accelerated alike; the daemon itself is built by the same builders as ``run``
(:mod:`monitor.app`). Run from a terminal, the demo keeps the page up after the scenario
until Enter or Ctrl-C.

The demo talks while it plays: what the scenario will show (its ``expect`` line: the alerts
to look for, or why none come), one progress line per timeline step (what just happened and
the time left) between the alerts, and at the end what was sent, or again why nothing was.
A scenario's ``[demo_rules.<id>]`` (three_fund's allocation targets) apply where the
configuration leaves that rule at its defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta
from datetime import time as dt_time
from pathlib import Path

from monitor.app import build_daemon, build_service
from monitor.clock import Clock, utc_now
from monitor.daemon import daily_summary
from monitor.settings import Settings
from monitor.sim.scenarios import Scenario, ScenarioError, Step, load_scenario
from monitor.sim.server import SimulatedGateway
from rules import RulesConfig
from rules.catalog import CATALOG
from rules.clock import zone

# An illustrative benchmark for the simulated demo only; a real configuration must set its own.
DEMO_BENCHMARK = 0.0433

#: From this speed on, a scenario runs on a clock accelerated alike (a session in minutes).
ACCELERATED_SPEED = 10


def accelerated_clock(start: datetime, speed: float) -> Clock:
    """A clock that starts at ``start`` and runs ``speed`` times faster than the wall clock."""
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=(time.monotonic() - origin) * speed)


def session_open(zone_name: str = "America/New_York") -> datetime:
    """Today's 09:30 in ``zone_name``, where an accelerated trading-day scenario starts."""
    today = datetime.now(zone(zone_name)).date()
    return datetime.combine(today, dt_time(9, 30), tzinfo=zone(zone_name))


def demo_rules(
    rules: RulesConfig, accelerated: bool, instruments: frozenset[str] = frozenset()
) -> RulesConfig:
    """The rules as configured, with a benchmark rate so the demo's loan has a cost, the
    account's own drawdown measured when the scenario serves no market benchmark (rather than
    IB's "no security definition" on the console), and (when accelerated: ten scenario minutes
    pass in a wall second) staleness judged in session time."""
    drawdown = rules.drawdown
    if drawdown.benchmark and drawdown.benchmark not in instruments:
        rules = replace(rules, drawdown=replace(drawdown, benchmark=""))
    if rules.financing_cost.benchmark_rate is None:
        rules = replace(
            rules, financing_cost=replace(rules.financing_cost, benchmark_rate=DEMO_BENCHMARK)
        )
    if accelerated:
        rules = replace(
            rules, stale_data=replace(rules.stale_data, stale_minutes=60.0, blind_minutes=30.0)
        )
    return rules


def scenario_rules(rules: RulesConfig, scenario: Scenario) -> RulesConfig:
    """``rules`` with the scenario's ``[demo_rules.<id>]`` for each rule the configuration
    leaves at its defaults (a configured rule is the user's: kept); :class:`ScenarioError`
    when a table is not valid settings of its rule."""
    from pydantic import TypeAdapter, ValidationError

    defaults = {entry.id: entry.config() for entry in CATALOG}
    try:
        wanted = TypeAdapter(RulesConfig).validate_python(scenario.demo_rules)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ScenarioError(
            f"scenario {scenario.name!r}: demo_rules.{where}: {first['msg']}"
        ) from None
    chosen = {
        rule: getattr(wanted, rule)
        for rule in scenario.demo_rules
        if getattr(rules, rule) == defaults[rule]
    }
    return replace(rules, **chosen) if chosen else rules


def clock_text(seconds: float) -> str:
    """Scenario time as ``0:40`` or ``6:30:00``."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(step: Step, scenario: Scenario, speed: float, session: Clock | None) -> str:
    """One step as the demo prints it: when in the scenario (and in the session, when
    accelerated), what happened, and the wall-clock time left."""
    left = max(0.0, (scenario.duration - step.at) / speed)
    happened = step.note or f"{step.action} {step.value}"
    when = f"{clock_text(step.at)} of {clock_text(scenario.duration)}"
    if session is not None:
        when += f", {session().astimezone(zone('America/New_York')):%H:%M} New York"
    return f"-- [{when}] {happened}; {left:.0f} s left"


def demo_settings(
    settings: Settings,
    port: int,
    state_dir: Path,
    accelerated: bool,
    instruments: frozenset[str] = frozenset(),
) -> Settings:
    """``settings`` pointed at the simulated gateway on ``port`` with ``state_dir``, printing
    notifications on the console (quiet hours off), the status page on (a free port unless
    ``[web] port`` is set) and no scheduled summary."""
    return settings.model_copy(
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
            "web": settings.web.model_copy(update={"port": settings.web.port or 0}),
            "rules": demo_rules(settings.rules, accelerated, instruments),
        }
    )


async def until_enter(stop: asyncio.Event) -> None:
    """Wait until a line arrives on standard input (or ``stop`` is set: Ctrl-C sets it)."""
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), entered.set)
    try:
        waits = [asyncio.ensure_future(entered.wait()), asyncio.ensure_future(stop.wait())]
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
    finally:
        loop.remove_reader(sys.stdin.fileno())
        if entered.is_set():
            sys.stdin.readline()


async def run_demo(
    settings: Settings, scenario: str, speed: float | None, state_dir: Path | None = None
) -> int:
    """Play a scenario on the simulated gateway and run the monitor against it.

    A scenario played fast (speed 10 or more, e.g. ``trading_day``) runs the monitor on a clock
    accelerated alike, starting at 09:30 New York time, so alerts, history and the daily summary
    printed at the end carry session times.
    """
    loaded = load_scenario(scenario)
    settings = settings.model_copy(update={"rules": scenario_rules(settings.rules, loaded)})
    gateway = SimulatedGateway(loaded, host="127.0.0.1", port=0, speed=speed)
    port = await gateway.start()
    accelerated = gateway.speed >= ACCELERATED_SPEED
    clock = accelerated_clock(session_open(), gateway.speed) if accelerated else utc_now
    state_dir = state_dir or Path(tempfile.mkdtemp(prefix="margin-monitor-demo-"))
    configured = demo_settings(
        settings, port, state_dir, accelerated, frozenset(loaded.resolved_instruments)
    )
    print(
        f"Simulated IB Gateway on 127.0.0.1:{port} playing {loaded.name!r} "
        f"at {gateway.speed:g}x for {loaded.duration / gateway.speed:.0f} s: "
        f"{loaded.description or 'no description'}.\n"
        "Alerts print below as they are sent, between progress lines (-- [scenario time] "
        "what happened). Financing costs assume a "
        f"{configured.rules.financing_cost.benchmark_rate:.2%} benchmark unless your config "
        "sets one.",
        flush=True,
    )
    if loaded.expect:
        print(f"What to expect: {loaded.expect}", flush=True)
    session = clock if accelerated else None
    gateway.on_step = lambda step: print(
        progress_line(step, loaded, gateway.speed, session), flush=True
    )
    stop = asyncio.Event()
    service = build_service(configured, clock=clock)
    built = build_daemon(configured, service=service)
    daemon = asyncio.create_task(built.run(stop))
    try:
        await gateway.wait_for_clients(1, timeout=15)
        if built.web_server is not None:  # bound before the monitor connects
            print(f"Status page: {built.web_server.url}", flush=True)
        await gateway.run_timeline()
        await service.settle(timeout=10.0)
        if accelerated:
            markdown = await daily_summary(service)
            await service.settle(timeout=10.0)
        if built.web_server is not None and sys.stdin.isatty():
            print(
                f"Scenario over. The status page stays up at {built.web_server.url}: "
                "press Enter (or Ctrl-C) to stop.",
                flush=True,
            )
            await until_enter(stop)
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
    if not service.transitions:
        why = loaded.expect or "every rule stayed within its levels."
        print(f"No alerts were sent. What this scenario shows: {why}")
    if accelerated:
        print(f"Daily summary saved as {markdown} (charts beside it).")
    print(f"Orders the monitor sent to the gateway: {len(gateway.orders_received)} (read-only).")
    return 0
