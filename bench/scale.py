"""An advisor's book in real time (issue 14): 100 accounts x 200 holdings of 300 contracts,
prices moving at 5,000 updates/s, shared price streams against per-holding ones.

For each way of pricing (``[ib] price_streams``: ``per_contract``, the default, then
``per_holding``, the subscriptions before issue 14) the script starts, each in its own process:

- the simulated gateway (``generated:100x200x300``, the random-walk price process at
  ``--rate`` updates/s, account values pushed every ``--cadence`` s), with a small control
  socket on 127.0.0.1 through which this script asks for probes;
- the daemon (``margin-monitor run``: ib_async, the estimate, the rules, the SQLite outbox,
  Apprise), notifying a local receiver (``json://127.0.0.1``) in this process.

Once every holding is priced (or after ``--warmup`` s when they are not), a shock probe every
``--probe-every`` s picks a random account and makes it buy on margin (at the current price)
enough of its largest holding to take its cushion, as the simulator computes it, to 5%: IB
pushes the position and the account's values at once. The latency is the wall time from the
trade to the ``[CRITICAL] <account> cushion`` notification at the receiver; the probe then
sells back and waits for the recovery. Lost = a probe with no critical notification within
20 s; duplicated = more than one for a probe.

Printed per run: the time from connecting until every holding was priced (the daemon's own
"every holding priced" log line), alert latency p50/p99/max, the daemon's CPU (% of one core,
over the measured window, from /proc), its RSS at the start of that window, its maximum and
at the end, lost and duplicated alerts, and the estimate's error at IB's pushes
(|estimated - reported| ExcessLiquidity as % of NLV, from the daemon's "estimate replaced by
IB's values" lines, probes' own pushes left out); then both runs side by side as ratios.

Targets (per contract): priced <= 15 s, p50 < 150 ms, p99 < 300 ms, CPU < 35% of one core,
RSS < 200 MB and flat, 0 lost, 0 duplicated, error median <= 0.05% of NLV.

    .venv/bin/python bench/scale.py [--seconds 180] [--rate 5000] [--only per_contract]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import cpu_seconds, free_port, machine, median, percentile, rss_mb, verdict

from monitor.sim.receiver import Receiver

MODES = ("per_contract", "per_holding")
PROBE_CUSHION = 0.05
PROBE_TIMEOUT = 20.0
TARGETS = {"priced": 15.0, "p50": 0.150, "p99": 0.300, "cpu": 35.0, "rss": 200.0}
RSS_FLAT_MB = 10.0
#: Seconds of the window in which the RSS settles (the first estimated evaluations, contract
#: details arriving); flat is judged from there to the end. The first is printed too.
RSS_WARMUP_S = 30
ERROR_TARGET = 0.0005


# -- the simulated gateway's process ---------------------------------------------------------


async def serve_gateway(args: argparse.Namespace) -> None:
    """The child: the gateway and a line-based JSON control socket (probe / restore)."""
    from monitor.sim.server import SimulatedGateway

    book = f"generated:{args.accounts}x{args.holdings}x{args.contracts}"
    gateway = SimulatedGateway(
        book,
        "127.0.0.1",
        args.port,
        account_push_interval=args.cadence,
        price_updates_per_second=args.rate,
    )
    await gateway.start()
    held: dict[str, tuple[str, float]] = {}

    def probe(account: str) -> dict[str, Any]:
        """Buy the account's largest holding on margin until its cushion is ~5%."""
        state = gateway.state
        holding = max(
            state.holdings(account), key=lambda h: abs(h.quantity) * state.prices[h.symbol]
        )
        original = holding.quantity
        low, high = original, original * 5000  # a holding is ~1% of a book at cushion ~67%
        for _ in range(30):
            middle = (low + high) / 2
            state.set_quantity(account, holding.symbol, middle, adjust_cash=True)
            cushion = gateway.figures(account).get("Cushion") or 0.0
            low, high = (middle, high) if cushion > PROBE_CUSHION else (low, middle)
        state.set_quantity(account, holding.symbol, original, adjust_cash=True)
        held[account] = (holding.symbol, original)
        at = time.time()
        gateway.set_quantity(account, holding.symbol, round(high))
        return {"at": at, "symbol": holding.symbol, "from": original, "to": round(high)}

    def restore(account: str) -> dict[str, Any]:
        symbol, quantity = held.pop(account)
        gateway.set_quantity(account, symbol, quantity)
        return {"at": time.time()}

    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            request = json.loads(line)
            if "probe" in request:
                answer = probe(request["probe"])
            elif "restore" in request:
                answer = restore(request["restore"])
            else:
                answer = {"updates": gateway.price_updates_applied}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()

    server = await asyncio.start_server(control, "127.0.0.1", args.control)
    print("ready", flush=True)
    async with server:
        await asyncio.Event().wait()


# -- one run -----------------------------------------------------------------------------------


@dataclass
class Run:
    """What one run measured."""

    mode: str
    priced: float | None = None
    progress: str | None = None  # how far pricing got, when it did not finish
    progress_seconds: float = 0.0
    connects: int = 0
    streams: int | None = None
    holdings: int | None = None
    latencies: list[float] = field(default_factory=list)
    lost: int = 0
    duplicated: int = 0
    probes: int = 0
    cpu: float = 0.0
    window: float = 0.0
    rss: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    gateway_cpu: float = 0.0
    updates: float = 0.0
    notes: list[str] = field(default_factory=list)


def log_lines(path: Path, start: int) -> tuple[list[dict[str, Any]], int]:
    """The daemon's JSON log lines from byte ``start`` on, and where they end."""
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            data = handle.read()
    except FileNotFoundError:
        return [], start
    end = data.rfind(b"\n") + 1
    lines = []
    for raw in data[:end].splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return lines, start + end


def write_config(directory: Path, port: int, url: str, mode: str) -> Path:
    """The daemon's configuration for one run."""
    config = directory / "config.toml"
    config.write_text(
        f'[ib]\nhost = "127.0.0.1"\nport = {port}\nclient_id = 21\ntimeout = 30\n'
        f'price_streams = "{mode}"\n'
        f'[notify]\nurls = ["{url}"]\n'
        f'[monitor]\nstate_dir = "{directory / "state"}"\nlog_format = "json"\n'
        f'log_file = "{directory / "daemon.jsonl"}"\n'
        "[summary]\nenabled = false\n"
    )
    config.chmod(0o600)
    return config


class Control:
    """The gateway child's control socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def ask(self, **request: Any) -> dict[str, Any]:
        self.writer.write(json.dumps(request).encode() + b"\n")
        await self.writer.drain()
        answer: dict[str, Any] = json.loads(await self.reader.readline())
        return answer


def is_cushion(title: str, account: str, level: str) -> bool:
    return title.startswith(f"[{level}] {account} cushion")


async def measure(args: argparse.Namespace, mode: str, directory: Path) -> Run:
    """One run: gateway and daemon in their own processes, probes from here."""
    run = Run(mode)
    rng = random.Random(args.seed)
    port, control_port = free_port(), free_port()
    receiver = Receiver().start()
    config = write_config(directory, port, receiver.url, mode)
    log_file = directory / "daemon.jsonl"
    child = [sys.executable, __file__, "--gateway-child", "--port", str(port)]
    child += ["--control", str(control_port), "--rate", str(args.rate)]
    child += ["--cadence", str(args.cadence), "--accounts", str(args.accounts)]
    child += ["--holdings", str(args.holdings), "--contracts", str(args.contracts)]
    gateway = subprocess.Popen(child, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    daemon: subprocess.Popen[str] | None = None
    try:
        assert gateway.stdout is not None
        ready = await asyncio.wait_for(asyncio.to_thread(gateway.stdout.readline), 120)
        if "ready" not in ready:
            raise RuntimeError("the simulated gateway did not start")
        control = Control(*await asyncio.open_connection("127.0.0.1", control_port))
        command = [sys.executable, "-m", "monitor.cli", "run", "--config", str(config)]
        daemon = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.monotonic()
        offset, connected_at, accounts = 0, None, []
        # Until every holding is priced (the daemon says so), or the warm-up is over.
        while time.monotonic() - started < args.warmup + 60:
            lines, offset = log_lines(log_file, offset)
            for line in lines:
                if line.get("event") == "connected":
                    connected_at = time.monotonic()
                    accounts = line.get("accounts") or []
                if line.get("event") == "every holding priced":
                    run.priced = float(line["seconds"])
                    run.streams, run.holdings = line.get("streams"), line.get("holdings")
            if run.priced is not None:
                break
            if connected_at is not None and time.monotonic() - connected_at > args.warmup:
                break
            if daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited ({daemon.returncode}); see {log_file}")
            await asyncio.sleep(0.2)
        if not accounts:
            raise RuntimeError("the daemon did not connect")
        if run.priced is None:
            run.notes.append(f"the window began {args.warmup:g} s after connecting, unpriced")
        # The measured window: probes, CPU, RSS.
        cpu_start, wall_start = cpu_seconds(daemon.pid), time.monotonic()
        gateway_cpu_start = cpu_seconds(gateway.pid)
        updates_start = (await control.ask(stats=True))["updates"]
        end = wall_start + args.seconds
        probe_times: dict[str, list[float]] = {}
        next_probe = wall_start + 2.0
        run.rss.append(rss_mb(daemon.pid))
        last_rss = time.monotonic()
        while time.monotonic() < end:
            now = time.monotonic()
            if now - last_rss >= 1.0:
                run.rss.append(rss_mb(daemon.pid))
                last_rss = now
            if now < next_probe or now + PROBE_TIMEOUT + 5 > end:
                await asyncio.sleep(0.05)
                continue
            next_probe = now + args.probe_every
            account = rng.choice(accounts)
            mark = len(receiver.messages)
            shock = await control.ask(probe=account)
            probe_times.setdefault(account, []).append(time.time())
            run.probes += 1
            deadline = time.monotonic() + PROBE_TIMEOUT
            got = None
            while time.monotonic() < deadline:
                fresh = list(receiver.messages)[mark:]
                got = next((m for m in fresh if is_cushion(m.title, account, "CRITICAL")), None)
                if got is not None:
                    break
                await asyncio.sleep(0.005)
            if got is None:
                run.lost += 1
            else:
                run.latencies.append(got.received_at.timestamp() - shock["at"])
            await control.ask(restore=account)
            probe_times[account].append(time.time())
            recovered = time.monotonic() + PROBE_TIMEOUT
            while time.monotonic() < recovered:
                fresh = list(receiver.messages)[mark:]
                if any(is_cushion(m.title, account, "RESOLVED") for m in fresh):
                    break
                await asyncio.sleep(0.02)
            fresh = list(receiver.messages)[mark:]
            criticals = [m for m in fresh if is_cushion(m.title, account, "CRITICAL")]
            run.duplicated += max(0, len(criticals) - 1)
        wall = time.monotonic() - wall_start
        run.window = wall
        run.cpu = (cpu_seconds(daemon.pid) - cpu_start) / wall * 100
        run.gateway_cpu = (cpu_seconds(gateway.pid) - gateway_cpu_start) / wall * 100
        run.updates = ((await control.ask(stats=True))["updates"] - updates_start) / wall
        run.rss.append(rss_mb(daemon.pid))
        lines, offset = log_lines(log_file, 0)
        for line in lines:
            run.connects += line.get("event") == "connected"
            if line.get("event") == "pricing holdings" and run.priced is None:
                run.progress = (
                    f"{line['streams_heard']:,} of {line['streams']:,} streams heard "
                    f"{line['seconds']:g} s after connecting"
                )
                run.progress_seconds = float(line["seconds"])
            if line.get("event") == "every holding priced" and run.priced is None:
                run.priced = float(line["seconds"])
                run.streams, run.holdings = line.get("streams"), line.get("holdings")
            if line.get("event") != "estimate replaced by IB's values":
                continue
            when = _timestamp(line.get("timestamp"))
            near = probe_times.get(line.get("account", ""), [])
            if when is not None and any(abs(when - t) < 5.0 for t in near):
                continue  # a probe's own push: a trade, not a price move
            if line.get("difference_of_nlv") is not None:
                run.errors.append(abs(float(line["difference_of_nlv"])))
        control.writer.close()
    finally:
        if daemon is not None:
            daemon.terminate()
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.kill()
        gateway.terminate()
        gateway.wait(timeout=20)
        receiver.stop()
    return run


def _timestamp(text: Any) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# -- report ------------------------------------------------------------------------------------


def ms(value: float) -> str:
    return "-" if value != value else f"{value * 1000:.0f} ms"


def report(run: Run, args: argparse.Namespace) -> None:
    """One run's figures, each with its target where it has one."""
    print(f"\n== {run.mode} ==")
    if run.priced is not None:
        print(
            f"every holding priced {run.priced:.1f} s after connecting "
            f"({run.holdings:,} holdings, {run.streams:,} reqPnLSingle streams)"
        )
    elif run.progress:
        print(f"not every holding priced within the run: {run.progress}")
    if run.connects > 1:
        print(
            f"the daemon connected {run.connects} times: the gateway drops a client that falls "
            "32 MB behind, and it starts again (pricing restarts)"
        )
    for note in run.notes:
        print(f"note: {note}")
    lat = run.latencies
    print(
        f"alert latency (trade -> critical at the receiver): p50 {ms(percentile(lat, 0.5))}  "
        f"p99 {ms(percentile(lat, 0.99))}  max {ms(max(lat) if lat else float('nan'))}  "
        f"({len(lat)} of {run.probes} probes)"
    )
    print(f"lost alerts {run.lost}, duplicated {run.duplicated}")
    rss = run.rss
    print(
        f"daemon CPU {run.cpu:.1f}% of one core over {run.window:.0f} s; "
        f"RSS MB start {rss[0]:.0f}, max {max(rss):.0f}, end {rss[-1]:.0f}"
    )
    print(f"RSS MB every 30 s of the window: {' '.join(f'{mb:.0f}' for mb in rss[::30])}")
    print(
        f"gateway: {run.updates:,.0f} price updates/s applied, its CPU {run.gateway_cpu:.0f}% "
        "of one core (its own process)"
    )
    if run.errors:
        print(
            f"estimate error at IB's pushes (|EL estimated - reported| / NLV): median "
            f"{median(run.errors):.4%}, p90 {percentile(run.errors, 0.9):.4%}, max "
            f"{max(run.errors):.4%} (n={len(run.errors)})"
        )
    else:
        print(f"estimate error at IB's pushes: none in the window (cadence {args.cadence:g} s)")
    if run.mode != "per_contract":
        return
    checks = [
        (
            f"every holding priced <= {TARGETS['priced']:g} s",
            run.priced is not None and run.priced <= TARGETS["priced"],
        ),
        (f"alert p50 < {ms(TARGETS['p50'])}", bool(lat) and percentile(lat, 0.5) < TARGETS["p50"]),
        (f"alert p99 < {ms(TARGETS['p99'])}", bool(lat) and percentile(lat, 0.99) < TARGETS["p99"]),
        (f"daemon CPU < {TARGETS['cpu']:g}% of a core", run.cpu < TARGETS["cpu"]),
        (
            f"RSS < {TARGETS['rss']:g} MB, flat after {RSS_WARMUP_S} s (+ < {RSS_FLAT_MB:g} MB)",
            max(rss) < TARGETS["rss"]
            and rss[-1] - rss[min(RSS_WARMUP_S, len(rss) - 1)] < RSS_FLAT_MB,
        ),
        ("0 lost, 0 duplicated", run.lost == 0 and run.duplicated == 0 and run.probes > 0),
        (
            f"estimate error median <= {ERROR_TARGET:.2%} of NLV",
            bool(run.errors) and median(run.errors) <= ERROR_TARGET,
        ),
    ]
    for label, met in checks:
        print(f"{label}: {verdict(met)}")


def ratio(old: float | None, new: float | None) -> str:
    if old is None or new is None or new == 0 or old != old or new != new:
        return "-"
    return f"{old / new:,.1f}x"


def compare(runs: dict[str, Run], args: argparse.Namespace) -> None:
    """Both runs side by side: per holding / per contract."""
    new, old = runs["per_contract"], runs["per_holding"]

    def priced(run: Run) -> str:
        if run.priced is None:
            return f"> {run.progress_seconds:.0f} s"
        return f"{run.priced:.1f} s"

    def p(run: Run, q: float) -> float:
        return percentile(run.latencies, q)

    rows = [
        (
            "every holding priced",
            priced(new),
            priced(old),
            ratio(old.priced or float(args.warmup), new.priced),
        ),
        ("alert p50", ms(p(new, 0.5)), ms(p(old, 0.5)), ratio(p(old, 0.5), p(new, 0.5))),
        ("alert p99", ms(p(new, 0.99)), ms(p(old, 0.99)), ratio(p(old, 0.99), p(new, 0.99))),
        ("daemon CPU", f"{new.cpu:.0f}%", f"{old.cpu:.0f}%", ratio(old.cpu, new.cpu)),
        (
            "RSS max",
            f"{max(new.rss):.0f} MB",
            f"{max(old.rss):.0f} MB",
            ratio(max(old.rss), max(new.rss)),
        ),
        (
            "lost / duplicated",
            f"{new.lost} / {new.duplicated}",
            f"{old.lost} / {old.duplicated}",
            "",
        ),
        (
            "error median",
            f"{median(new.errors):.4%}" if new.errors else "-",
            f"{median(old.errors):.4%}" if old.errors else "-",
            "",
        ),
    ]
    print("\n== side by side (ratio: per holding / per contract) ==")
    print(f"{'':24}{'per contract':>16}{'per holding':>16}{'ratio':>10}")
    for label, a, b, r in rows:
        print(f"{label:24}{a:>16}{b:>16}{r:>10}")


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


async def main_async(args: argparse.Namespace) -> int:
    modes = [args.only] if args.only else list(MODES)
    runs: dict[str, Run] = {}
    for mode in modes:
        print(f"running {mode} ({args.seconds:g} s window)...", flush=True)
        if args.keep:
            directory = Path(args.keep) / mode
            directory.mkdir(parents=True, exist_ok=True)
            runs[mode] = await measure(args, mode, directory)
        else:
            with tempfile.TemporaryDirectory(prefix=f"bench-scale-{mode}-") as temp:
                runs[mode] = await measure(args, mode, Path(temp))
        print(f"load average after it: {load_average()}", flush=True)
    print(f"\nmachine: {machine()}")
    print(
        f"book generated:{args.accounts}x{args.holdings}x{args.contracts}, prices "
        f"{args.rate:,.0f} updates/s, IB account pushes every {args.cadence:g} s (IB: 180), "
        f"a probe every {args.probe_every:g} s, seed {args.seed}; load average now "
        f"{load_average()} (other processes share the CPUs: figures are worse under load)"
    )
    for run in runs.values():
        report(run, args)
    if len(runs) == 2:
        compare(runs, args)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="measured window per run")
    parser.add_argument("--rate", type=float, default=5000.0, help="price updates per second")
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--holdings", type=int, default=200)
    parser.add_argument("--contracts", type=int, default=300)
    parser.add_argument("--cadence", type=float, default=180.0, help="IB account push period, s")
    parser.add_argument("--probe-every", type=float, default=8.0, help="seconds between probes")
    parser.add_argument(
        "--warmup", type=float, default=60.0, help="longest wait for every holding priced, s"
    )
    parser.add_argument("--only", choices=MODES, default=None, help="run one mode only")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--keep", default=None, help="keep each run's config, state and log here")
    parser.add_argument("--gateway-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--control", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gateway_child:
        asyncio.run(serve_gateway(args))
        return 0
    if args.seconds < 30:
        parser.error("--seconds must be at least 30")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
