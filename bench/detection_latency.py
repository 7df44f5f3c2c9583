"""Benchmark: time from a price shock to the critical notification, estimate on and off.

IB pushes account values (ExcessLiquidity, Cushion) only every 180 s; positions' values stream
about once a second. Each trial runs its own simulated IB Gateway pushing account values at
that cadence, its own monitor (the real daemon: ib_async over loopback, rules, lifecycle,
SQLite outbox, Apprise) and its own notification receiver (``json://127.0.0.1``). Once the
monitor is connected, a gap-down that breaches the critical cushion is applied at a random
moment of the cadence; the latency is the wall time from the shock to the arrival of the
``[CRITICAL] <account> cushion`` notification at the receiver. Half the trials run with the
estimate on (``[monitor] estimate = true``, the default), half with it off; all run at once, so
the whole benchmark takes about one cadence.

Targets (issue 6): median under 1 s with the estimate on, and at least 100 times faster than
with it off.

The shock: by default the built-in ``selloff`` scenario's leveraged account (cushion 30%),
every price of which gaps down at once by the fall that takes its cushion (as the simulator
computes it) to 5%. ``--scenario FILE`` plays another scenario: when its timeline breaches the
critical cushion of an account, the step that breaches it is the shock (earlier steps are
applied as soon as the monitor is connected, and the breaching step lands at the random
moment); otherwise the computed gap-down is applied to its first account (or ``--account``).

Run from the repository root (reported figures use IB's real cadence, 180 s)::

    .venv/bin/python bench/detection_latency.py [--trials 10] [--cadence 180] [--seed N]
                                    [--scenario FILE] [--account ID] [--shock auto|gap|timeline]

``--cadence 20`` gives a quick run (the ratio then shrinks with the cadence).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import logging
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import machine, median, percentile, verdict

from monitor.app import build_service, run_daemon
from monitor.logs import configure_logging
from monitor.settings import Settings, load_settings
from monitor.sim.receiver import ReceivedMessage, Receiver
from monitor.sim.scenarios import MovesStep, Scenario, Step, load_scenario
from monitor.sim.server import SimulatedGateway
from rules.checks.cushion import CushionConfig

TARGET_MEDIAN_SECONDS = 1.0
TARGET_RATIO = 100.0
READY_MARGIN = 3.0
"""The shock lands no earlier than this many seconds into the cadence (the monitor connects)."""
SHOCK_CUSHION = 0.05
"""The computed gap-down takes the cushion to this level (critical is below 10%)."""
DEFAULT_SCENARIO = "selloff"
STATE_ACTIONS = {
    "prices",
    "moves",
    "set_values",
    "clear_values",
    "set_quantity",
    "set_cash",
    "set_fx",
}


@dataclass
class Plan:
    """What every trial does: the scenario, the account, steps before and the shock."""

    scenario: Scenario
    account: str
    before: list[Step]
    shock: Step
    description: str


@dataclass
class Trial:
    """One monitor against one gateway; filled in as it runs."""

    estimate: bool
    offset: float
    latency: float | None = None
    estimated_finding: bool | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def breached(gateway: SimulatedGateway, account: str, config: CushionConfig) -> bool:
    """True when the simulator's own figures put the account's cushion at critical."""
    figures = gateway.figures(account)
    cushion = figures.get("Cushion")
    excess, maint = figures.get("ExcessLiquidity"), figures.get("MaintMarginReq")
    below = cushion is not None and cushion < config.critical
    at_line = excess is not None and maint is not None and excess <= config.ib_warning_line * maint
    return below or at_line


async def gap_down_for(scenario: Scenario, account: str, target: float) -> float:
    """The uniform fall of every price that takes ``account``'s cushion to ``target``."""
    low, high = 0.0, 0.95
    for _ in range(40):
        middle = (low + high) / 2
        probe = SimulatedGateway(scenario)
        probe.move_prices({"all": -middle})
        cushion = probe.figures(account).get("Cushion")
        if cushion is None:
            raise ValueError(f"{account}: the simulator reports no cushion")
        if cushion > target:
            low = middle
        else:
            high = middle
    return round(high, 4)


async def make_plan(
    source: str, account: str | None, use_timeline: bool, config: CushionConfig
) -> Plan:
    """Find the shock: a breaching step of the scenario's timeline, or a computed gap-down."""
    scenario = load_scenario(source)
    if account is not None and account not in scenario.account_ids:
        raise ValueError(f"account {account} is not in scenario {scenario.name}")
    candidates = [account] if account else scenario.account_ids
    dry = SimulatedGateway(scenario)
    already = {a for a in candidates if breached(dry, a, config)}
    if already:
        raise ValueError(f"{', '.join(sorted(already))}: already critical before any shock")
    applied: list[Step] = []
    for step in scenario.steps if use_timeline else ():
        if step.action not in STATE_ACTIONS:
            continue
        await dry.apply_step(step)
        hit = [a for a in candidates if breached(dry, a, config)]
        if hit:
            description = (
                f"scenario {scenario.name!r}, account {hit[0]}: timeline step at "
                f"{step.at:g}s ({step.action} {step.value}) breaches the critical cushion; "
                f"{len(applied)} earlier step(s) applied after connecting"
            )
            return Plan(scenario, hit[0], applied, step, description)
        applied.append(step)
    chosen = account or scenario.account_ids[0]
    fall = await gap_down_for(scenario, chosen, SHOCK_CUSHION)
    if fall >= 0.95:
        raise ValueError(f"{chosen}: no uniform gap-down breaches its cushion")
    base = SimulatedGateway(scenario)
    before = base.figures(chosen).get("Cushion")
    shock = MovesStep(at=0.0, moves={"all": -fall}, note="gap-down")
    base.move_prices({"all": -fall})
    after = base.figures(chosen).get("Cushion")
    description = (
        f"scenario {scenario.name!r}, account {chosen}: every price gaps down {fall:.1%}, "
        f"cushion {before:.1%} -> {after:.1%} (critical below {config.critical:.0%})"
    )
    return Plan(scenario, chosen, [], shock, description)


def settings_for(directory: Path, port: int, url: str, estimate: bool) -> Settings:
    """The daemon's settings for one trial (state in ``directory``)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.toml"
    config.write_text(
        f'[ib]\nhost = "127.0.0.1"\nport = {port}\nclient_id = 11\ntimeout = 10\n'
        f'[notify]\nurls = ["{url}"]\n'
        f'[monitor]\nstate_dir = "{directory / "state"}"\n'
        f"estimate = {'true' if estimate else 'false'}\n"
        "[summary]\nenabled = false\n"
    )
    config.chmod(0o600)
    return load_settings(config)


def is_critical(message: ReceivedMessage, account: str) -> bool:
    """The critical cushion notification of ``account`` (fired or escalated)."""
    return message.title.startswith(f"[CRITICAL] {account} cushion")


async def poll(condition: Any, deadline: float, what: str) -> None:
    """Wait (polling every 20 ms) until ``condition()`` holds; TimeoutError at ``deadline``."""
    loop = asyncio.get_running_loop()
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.02)


async def run_trial(trial: Trial, plan: Plan, cadence: float, directory: Path) -> None:
    """One gateway + monitor + receiver: shock at ``trial.offset`` into the cadence."""
    loop = asyncio.get_running_loop()
    receiver = Receiver().start()
    gateway = SimulatedGateway(plan.scenario, account_push_interval=cadence)
    daemon: asyncio.Task[int] | None = None
    stop = asyncio.Event()
    try:
        await gateway.start()
        cadence_start = loop.time()  # the gateway's first push is one cadence from here
        settings = settings_for(directory, gateway.port, receiver.url, trial.estimate)
        service = build_service(settings)
        daemon = asyncio.create_task(run_daemon(settings, stop, service))
        await poll(
            lambda: plan.account in service.views and service.connector.ready(),
            cadence_start + max(READY_MARGIN, trial.offset) + 30,
            "the monitor did not connect",
        )
        for step in plan.before:
            await gateway.apply_step(step)
        if loop.time() > cadence_start + trial.offset:
            trial.notes.append("connected late: shock moved later")
        await asyncio.sleep(max(0.0, cadence_start + trial.offset - loop.time()))
        if receiver.messages and any(is_critical(m, plan.account) for m in receiver.messages):
            raise RuntimeError("critical before the shock")
        if gateway.cadence_ticks:
            raise RuntimeError("the shock came after the first cadence push")
        shocked_at = time.time()
        await gateway.apply_step(plan.shock)
        await poll(
            lambda: any(is_critical(m, plan.account) for m in receiver.messages),
            loop.time() + cadence + 30,
            "no critical notification",
        )
        first = next(m for m in receiver.messages if is_critical(m, plan.account))
        trial.latency = first.received_at.timestamp() - shocked_at
        trial.estimated_finding = "estimated from streaming prices" in first.message
    except Exception as error:
        trial.error = f"{type(error).__name__}: {error}"
    finally:
        stop.set()
        if daemon is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(daemon, 15)
        await gateway.stop()
        receiver.stop()


async def run_all(args: argparse.Namespace) -> tuple[Plan, list[Trial]]:
    """Plan the shock, then run every trial at once under the overall timeout."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=64))
    use_timeline = args.shock == "timeline" or (args.shock == "auto" and args.scenario is not None)
    plan = await make_plan(
        args.scenario or DEFAULT_SCENARIO, args.account, use_timeline, CushionConfig()
    )
    rng = random.Random(args.seed)
    latest = max(READY_MARGIN + 0.5, args.cadence - 0.5)
    trials = [
        Trial(estimate=estimate, offset=rng.uniform(READY_MARGIN, latest))
        for estimate in (True, False)
        for _ in range(args.trials)
    ]
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as temp:
        tasks = [
            asyncio.create_task(run_trial(trial, plan, args.cadence, Path(temp) / f"trial{index}"))
            for index, trial in enumerate(trials)
        ]
        _, pending = await asyncio.wait(tasks, timeout=args.cadence + 90)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=20)
            for trial in trials:
                if trial.latency is None and trial.error is None:
                    trial.error = "overall timeout"
    return plan, trials


def summary(latencies: list[float]) -> str:
    """Median, p90 and count of a list of seconds."""
    if not latencies:
        return "no results"
    return (
        f"median {median(latencies):8.3f} s   p90 {percentile(latencies, 0.9):8.3f} s   "
        f"min {min(latencies):7.3f} s   max {max(latencies):8.3f} s   n={len(latencies)}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run, print the figures and whether the targets were met."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per mode (default 10)")
    parser.add_argument(
        "--cadence", type=float, default=180.0, help="account push interval, s (IB: 180)"
    )
    parser.add_argument(
        "--scenario", default=None, help=f"built-in name or TOML file (default {DEFAULT_SCENARIO})"
    )
    parser.add_argument(
        "--shock",
        choices=["auto", "gap", "timeline"],
        default="auto",
        help="gap: computed uniform gap-down; timeline: the scenario's breaching step; "
        "auto (default): timeline when --scenario is given and breaches, else gap",
    )
    parser.add_argument("--account", default=None, help="the account to shock")
    parser.add_argument("--seed", type=int, default=None, help="random seed of the offsets")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    if args.cadence < READY_MARGIN + 1:
        parser.error(f"--cadence must be at least {READY_MARGIN + 1:g} s")
    configure_logging("ERROR", None, "console")
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)

    print("detection_latency: price shock -> critical notification at a local receiver")
    print(f"machine: {machine()}")
    print(
        f"cadence {args.cadence:g} s (IB's real one: 180 s); {args.trials} trials with the "
        f"estimate on and {args.trials} off, run at once; shocks at random moments "
        f"{READY_MARGIN:g}-{args.cadence:g} s into the cadence (seed {args.seed})",
        flush=True,
    )
    started = time.monotonic()
    try:
        plan, trials = asyncio.run(run_all(args))
    except Exception as error:
        print(f"detection_latency failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"shock: {plan.description}")
    on = [t.latency for t in trials if t.estimate and t.latency is not None]
    off = [t.latency for t in trials if not t.estimate and t.latency is not None]
    print(f"estimate on:  {summary(on)}")
    print(f"estimate off: {summary(off)}")
    errors = [t for t in trials if t.error]
    for trial in errors:
        mode = "on" if trial.estimate else "off"
        print(f"  trial (estimate {mode}, shock at {trial.offset:.1f} s) failed: {trial.error}")
    for trial in trials:
        for note in trial.notes:
            print(f"  note: {note}")
    marked = sum(1 for t in trials if t.estimate and t.estimated_finding)
    print(f"critical alerts made on the estimate (marked estimated): {marked} of {len(on)}")
    if on and off:
        ratio = median(off) / median(on)
        met_median = median(on) < TARGET_MEDIAN_SECONDS
        met_ratio = ratio >= TARGET_RATIO
        print(f"ratio of medians (off / on): {ratio:,.0f}x")
        print(f"median with the estimate < {TARGET_MEDIAN_SECONDS:g} s: {verdict(met_median)}")
        print(f"ratio >= {TARGET_RATIO:g}: {verdict(met_ratio)}")
        if args.cadence != 180:
            print("(quick run: the reported figures use --cadence 180)")
    print(f"wall time: {time.monotonic() - started:.0f} s")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
