"""Benchmark: alert latency at a healthy target while another target hangs (issue 11).

The real daemon (ib_async over loopback, rules, lifecycle, SQLite outbox, Apprise) watches the
simulated gateway's ``selloff`` account while it flips critical/ok every ``--every`` seconds
for ``--minutes``. Two targets receive every alert: a healthy local receiver and one that
accepts each request and never answers (``--bad dribble``: answers a byte every 2 s instead).
For every cushion notification the healthy target receives, two latencies are taken: from the
price move that caused it, and from the moment the monitor decided it (its transition), to its
arrival. Also printed: the most sending threads alive at once, the process's thread count, the
attempts the bad target swallowed, and how long the daemon took to stop at the end.

Target: median and max latency at the healthy target under 1 s, over 10 minutes.

Run from the repository root (reported figures: the defaults, 10 minutes)::

    .venv/bin/python bench/fault_delivery.py [--minutes 10] [--every 20] [--bad hang|dribble]

``--minutes 1`` gives a quick run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import threading
import time
from pathlib import Path

from _common import machine, median, percentile, verdict

from monitor.app import build_service, run_daemon
from monitor.logs import configure_logging
from monitor.settings import Settings, load_settings
from monitor.sim.receiver import Receiver
from monitor.sim.server import SimulatedGateway

ACCOUNT = "DU1000001"
CRASH = {"all": -0.32, "VTI": 0.0, "BND": 0.0}  # cushion 30% -> about 5%
TARGET_SECONDS = 1.0


def settings_for(port: int, urls: list[str], state: Path) -> Settings:
    """The daemon's settings: the simulated gateway, both targets, a state directory."""
    config = state / "config.toml"
    listed = ", ".join(f'"{url}"' for url in urls)
    config.write_text(
        f'[ib]\nport = {port}\naccounts = ["{ACCOUNT}"]\n'
        f"[notify]\nurls = [{listed}]\nreminder_critical_minutes = 0\n"
        f'[monitor]\nstate_dir = "{state}"\n[summary]\nenabled = false\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    return load_settings(config)


def sending_threads() -> int:
    """Threads sending a notification right now."""
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("notify "))


async def run(minutes: float, every: float, bad: str) -> bool:
    """Flip the account for ``minutes``; print the figures; True when the target is met."""
    with (
        tempfile.TemporaryDirectory(prefix="fault-delivery-") as folder,
        Receiver() as healthy,
        Receiver(behaviour=bad, dribble_interval=2.0, hang_limit=3600) as broken,
    ):
        gateway = SimulatedGateway("selloff", host="127.0.0.1", port=0)
        await gateway.start()
        initial = dict(gateway.state.prices)
        settings = settings_for(gateway.port, [broken.url, healthy.url], Path(folder))
        service = build_service(settings)
        stop = asyncio.Event()
        daemon = asyncio.create_task(run_daemon(settings, stop, service))
        moved: dict[str, float] = {}  # "critical"/"resolved" move number -> wall time
        peak_sending = peak_threads = 0
        try:
            await gateway.wait_for_clients(1, timeout=15)
            await service.settle(timeout=10)
            deadline = time.monotonic() + minutes * 60
            flips = 0
            while time.monotonic() < deadline:
                critical = flips % 2 == 0
                moved[f"{'fired' if critical else 'resolved'}:{flips // 2}"] = time.time()
                gateway.move_prices(CRASH) if critical else gateway.set_prices(initial)
                flips += 1
                until = time.monotonic() + every
                while time.monotonic() < until:
                    peak_sending = max(peak_sending, sending_threads())
                    peak_threads = max(peak_threads, threading.active_count())
                    await asyncio.sleep(0.25)
            await service.settle(timeout=10)
        finally:
            stop.set()
            started = time.monotonic()
            status = await asyncio.wait_for(daemon, 60)
            stopping = time.monotonic() - started
            await gateway.stop()
        decided: dict[str, tuple[float, str]] = {}  # id -> (decision time, move key)
        seen: dict[str, int] = {}
        for transition in service.transitions:
            if transition.finding.rule == "cushion":
                number = seen.get(transition.kind, 0)
                seen[transition.kind] = number + 1
                decided[transition.notification_id] = (
                    transition.now.timestamp(),
                    f"{transition.kind}:{number}",
                )
        from_move, from_decision = [], []
        arrived = 0
        for message in healthy.messages:
            if message.notification_id not in decided:
                continue
            arrived += 1
            at, key = decided[message.notification_id]
            from_decision.append(message.received_at.timestamp() - at)
            if key in moved:
                from_move.append(message.received_at.timestamp() - moved[key])

    print(f"machine: {machine()}")
    print(
        f"{minutes:g} min, the account flipped every {every:g} s ({flips} moves); targets: "
        f"a healthy receiver and one that {'never answers' if bad == 'hang' else 'dribbles'}"
    )
    print(
        f"healthy target: {arrived} of {len(decided)} cushion notifications received"
    )
    for name, values in (("from the price move", from_move), ("from the decision", from_decision)):
        print(
            f"latency {name:<20} median {median(values):6.3f} s   p90 "
            f"{percentile(values, 0.9):6.3f} s   max {max(values, default=float('nan')):6.3f} s"
            f"   n={len(values)}"
        )
    print(
        f"bad target: {broken.accepted} requests accepted, {broken.completed} answered in full; "
        f"sending threads at most {peak_sending} at once; process threads at most "
        f"{peak_threads}"
    )
    print(f"stop: {stopping:.2f} s (exit status {status})")
    met = (
        arrived == len(decided) > 0
        and median(from_move) < TARGET_SECONDS
        and max(from_move) < TARGET_SECONDS
    )
    print(f"median and max under {TARGET_SECONDS:g} s, nothing missing: {verdict(met)}")
    return met


def main() -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--every", type=float, default=20.0, help="seconds between flips")
    parser.add_argument("--bad", choices=["hang", "dribble"], default="hang")
    args = parser.parse_args()
    configure_logging("ERROR", None, "console")
    for noisy in ("ib_async", "apprise"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    asyncio.run(run(args.minutes, args.every, args.bad))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
