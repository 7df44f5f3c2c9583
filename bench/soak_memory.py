"""Benchmark: an accelerated soak of the real pipeline, then the monitor at rest.

A simulated IB Gateway runs in a child process (this script with ``--child``) serving two
accounts of 40 positions each, pushing account values every 5 s (accelerated from IB's
180 s). It moves prices in a mean-reverting random walk as fast as ``--rate`` allows; every
price change streams a reqPnLSingle update over loopback to the monitor, which runs in this
process as the real daemon (ib_async connector -> estimate -> rules -> alert lifecycle ->
SQLite store). At least 100,000 updates go through. Printed:

- resident memory (VmRSS) of the monitor's process after connecting, at every tenth of the
  run and at the end (target: under 150 MB, and flat: no growth after the warm-up),
- the monitor's CPU use while idle (no price moves) over ``--idle`` seconds (target: under
  1% of one core),
- what went through: updates received, evaluations (how many on estimated figures), and the
  estimate's error at each account push (estimated vs reported ExcessLiquidity, % of NLV).

Run from the repository root::

    .venv/bin/python bench/soak_memory.py [--updates 120000] [--rate 5000] [--idle 31]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import machine, median, rss_mb, verdict

TARGET_RSS_MB = 150.0
TARGET_GROWTH_MB = 5.0
TARGET_IDLE_CPU = 0.01
ACCOUNTS = 2
POSITIONS = 40
CADENCE = 5.0


# -- the child: a simulated gateway that moves prices on command ------------------------------


def soak_scenario(accounts: int, positions: int, cadence: float) -> dict[str, Any]:
    """``accounts`` accounts of ``positions`` distinct names, healthy (cushion about 55%)."""
    instruments = {
        f"N{index:03d}": {
            "price": 20.0 + (index * 37) % 300,
            "maint_rate": (0.25, 0.30, 0.40, 0.50)[index % 4],
            "init_rate": (0.25, 0.30, 0.40, 0.50)[index % 4],
        }
        for index in range(accounts * positions)
    }
    symbols = list(instruments)
    return {
        "name": "soak",
        "gateway": {"account_push_interval": cadence, "pnl_interval": 0},
        "instruments": instruments,
        "accounts": [
            {
                "id": f"DU{8_000_001 + number}",
                "cash": {"USD": -1_500.0 * positions},
                "positions": [
                    {
                        "symbol": symbol,
                        "quantity": max(1, round(5_000 / instruments[symbol]["price"])),
                    }
                    for symbol in symbols[number * positions : (number + 1) * positions]
                ],
            }
            for number in range(accounts)
        ],
    }


async def child_main(args: argparse.Namespace) -> None:
    """Serve the gateway; on ``run TICKS PER_TICK RATE SEED`` move prices, print ``done``."""
    from monitor.sim.server import SimulatedGateway

    gateway = SimulatedGateway(soak_scenario(args.accounts, args.positions, args.cadence))
    await gateway.start()
    print(f"PORT {gateway.port}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    start_prices = {symbol: gateway.price(symbol) for symbol in gateway.state.prices}
    walk = dict.fromkeys(start_prices, 0.0)
    try:
        while True:
            line = (await reader.readline()).decode().split()
            if not line or line[0] == "quit":
                break
            if line[0] != "run":
                continue
            ticks, per_tick, rate, seed = int(line[1]), int(line[2]), float(line[3]), int(line[4])
            rng = random.Random(seed)
            symbols = list(start_prices)
            interval = per_tick / rate
            began = loop.time()
            streamed = 0
            for tick in range(ticks):
                chosen = rng.sample(symbols, per_tick)
                prices = {}
                for symbol in chosen:
                    walk[symbol] = 0.97 * walk[symbol] + rng.gauss(0.0, 0.004)
                    price = round(start_prices[symbol] * math.exp(walk[symbol]), 4)
                    if price == gateway.price(symbol):
                        price = round(price + 0.0001, 4)  # every update is a real change
                    prices[symbol] = price
                gateway.set_prices(prices)
                streamed += len(prices)
                delay = began + (tick + 1) * interval - loop.time()
                await asyncio.sleep(max(0.0, delay))
            print(f"done {streamed} {loop.time() - began:.3f}", flush=True)
    finally:
        await gateway.stop()


# -- the parent: the monitor, measured --------------------------------------------------------


async def read_line(stream: asyncio.StreamReader, timeout: float) -> str:
    """One line from the child, bounded."""
    raw = await asyncio.wait_for(stream.readline(), timeout)
    if not raw:
        raise RuntimeError("the gateway process exited")
    return raw.decode().strip()


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak and the idle measurement; returns the figures."""
    from monitor.app import build_service, run_daemon
    from monitor.service import AccountView
    from monitor.settings import load_settings

    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--accounts",
        str(args.accounts),
        "--positions",
        str(args.positions),
        "--cadence",
        str(args.cadence),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    stop = asyncio.Event()
    daemon: asyncio.Task[int] | None = None
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as temp:
        try:
            port = int((await read_line(child.stdout, 30)).split()[1])
            config = Path(temp) / "config.toml"
            config.write_text(
                f'[ib]\nhost = "127.0.0.1"\nport = {port}\nclient_id = 21\ntimeout = 10\n'
                f'[monitor]\nstate_dir = "{Path(temp) / "state"}"\n'
                "[summary]\nenabled = false\n"
            )
            settings = load_settings(config)
            counts = {"evaluations": 0, "estimated": 0}

            def seen(account: str, view: AccountView) -> None:
                counts["evaluations"] += 1
                if view.snapshot is not None and view.snapshot.estimated:
                    counts["estimated"] += 1

            service = build_service(settings, on_evaluated=seen)
            updates = [0]

            def on_pnl(_: Any) -> None:
                updates[0] += 1

            service.connector.ib.pnlSingleEvent += on_pnl
            errors: list[float] = []
            daemon = asyncio.create_task(run_daemon(settings, stop, service))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while not (service.connector.state.connected and service.connector.ready()):
                if loop.time() > deadline:
                    raise TimeoutError("the monitor did not connect and subscribe in 60 s")
                await asyncio.sleep(0.05)
            await service.settle(10)
            results["rss_connected"] = rss_mb()
            per_tick = args.per_tick
            ticks = math.ceil(args.updates / per_tick)
            expected = ticks * per_tick
            first = updates[0]
            started = time.perf_counter()
            cpu_started = time.process_time()
            assert child.stdin is not None
            child.stdin.write(f"run {ticks} {per_tick} {args.rate} {args.seed}\n".encode())
            await child.stdin.drain()
            checkpoints: list[tuple[int, float]] = []
            next_mark = 1
            finished = asyncio.ensure_future(read_line(child.stdout, expected / args.rate * 3 + 60))
            sent: int | None = None
            budget = loop.time() + expected / args.rate * 3 + 90
            while sent is None or updates[0] - first < sent:
                if loop.time() > budget:
                    raise TimeoutError(
                        f"only {updates[0] - first} of {sent or expected} updates arrived in time"
                    )
                if sent is None and finished.done():
                    fields = finished.result().split()
                    sent, results["send_seconds"] = int(fields[1]), float(fields[2])
                done_share = (updates[0] - first) / expected
                if done_share >= next_mark / 10:
                    checkpoints.append((updates[0] - first, rss_mb()))
                    next_mark += 1
                for account, error in service.estimate_errors.items():
                    errors.append(error)
                    del service.estimate_errors[account]
                    break
                await asyncio.sleep(0.05)
            if len(checkpoints) < 10:
                checkpoints.append((updates[0] - first, rss_mb()))
            await service.settle(10)
            elapsed = time.perf_counter() - started
            results.update(
                updates=updates[0] - first,
                sent=sent,
                seconds=elapsed,
                cpu_busy=time.process_time() - cpu_started,
                checkpoints=checkpoints,
                rss_end=rss_mb(),
                evaluations=counts["evaluations"],
                estimated=counts["estimated"],
                errors=errors + list(service.estimate_errors.values()),
            )
            # idle: let the last cadence push arrive and settle, then measure a quiet stretch
            await asyncio.sleep(args.cadence + 1)
            await service.settle(10)
            evaluations_before = counts["evaluations"]
            idle_cpu = time.process_time()
            idle_wall = time.perf_counter()
            await asyncio.sleep(args.idle)
            results["idle_cpu"] = (time.process_time() - idle_cpu) / (
                time.perf_counter() - idle_wall
            )
            results["idle_evaluations"] = counts["evaluations"] - evaluations_before
            results["rss_idle"] = rss_mb()
        finally:
            stop.set()
            if daemon is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(daemon, 15)
            with contextlib.suppress(Exception):
                child.stdin.write(b"quit\n")
                await child.stdin.drain()
            try:
                await asyncio.wait_for(child.wait(), 10)
            except TimeoutError:
                child.kill()
                await child.wait()
    return results


def main(argv: list[str] | None = None) -> int:
    """Parent: run and print. Child (``--child``): serve the gateway."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=120_000, help="updates to stream")
    parser.add_argument("--rate", type=float, default=5_000.0, help="updates per second")
    parser.add_argument("--per-tick", type=int, default=20, help="prices moved per tick")
    parser.add_argument(
        "--idle", type=float, default=31.0, help="idle seconds measured (one 30 s tick in)"
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--accounts", type=int, default=ACCOUNTS, help=argparse.SUPPRESS)
    parser.add_argument("--positions", type=int, default=POSITIONS, help=argparse.SUPPRESS)
    parser.add_argument("--cadence", type=float, default=CADENCE, help="account push interval")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    if args.child:
        logging.getLogger("monitor.sim").setLevel(logging.WARNING)
        asyncio.run(child_main(args))
        return 0
    if args.per_tick > args.accounts * args.positions:
        parser.error("--per-tick is larger than the number of positions")
    from monitor.logs import configure_logging

    configure_logging("ERROR", None, "console")
    print("soak_memory: accelerated updates through the real pipeline, then idle")
    print(f"machine: {machine()}")
    print(
        f"{args.accounts} accounts x {args.positions} positions, account push every "
        f"{args.cadence:g} s, {args.updates:,} updates at up to {args.rate:,.0f}/s, "
        f"{args.idle:g} s idle",
        flush=True,
    )
    try:
        results = asyncio.run(soak(args))
    except Exception as error:
        print(f"soak_memory failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(
        f"updates received: {results['updates']:,} (sent {results['sent']:,}) in "
        f"{results['seconds']:.1f} s = {results['updates'] / results['seconds']:,.0f}/s (the "
        f"gateway took {results['send_seconds']:.1f} s to send them); "
        f"CPU {results['cpu_busy']:.1f} s"
    )
    print(
        f"evaluations: {results['evaluations']:,}, of which on estimated figures: "
        f"{results['estimated']:,}"
    )
    errors = [abs(e) for e in results["errors"]]
    if errors:
        print(
            f"estimate error at {len(errors)} account pushes (|estimated - reported| EL, % of "
            f"NLV): median {median(errors):.4%}, max {max(errors):.4%}"
        )
    marks = "  ".join(f"{count // 1000}k:{rss:.1f}" for count, rss in results["checkpoints"])
    print(f"RSS MB after connecting {results['rss_connected']:.1f}; by updates: {marks}")
    start = results["checkpoints"][0][1] if results["checkpoints"] else results["rss_connected"]
    growth = results["rss_end"] - start
    peak = max([results["rss_end"], *(rss for _, rss in results["checkpoints"])])
    print(
        f"RSS MB at the end {results['rss_end']:.1f} (after idle {results['rss_idle']:.1f}); "
        f"growth after the first tenth {growth:+.1f} MB"
    )
    print(f"memory under {TARGET_RSS_MB:g} MB (peak {peak:.1f}): {verdict(peak < TARGET_RSS_MB)}")
    print(f"memory flat (growth < {TARGET_GROWTH_MB:g} MB): {verdict(growth < TARGET_GROWTH_MB)}")
    print(
        f"idle CPU {results['idle_cpu']:.3%} of a core over {args.idle:g} s "
        f"({results['idle_evaluations']} evaluations): "
        f"{verdict(results['idle_cpu'] < TARGET_IDLE_CPU)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
