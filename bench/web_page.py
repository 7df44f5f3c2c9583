"""The status page under load: 50 accounts x 200 positions (issue 13).

Starts ``margin-monitor simulate-gateway --scenario generated:50x200x300`` in its own process
(prices moving at ``--price-rate`` updates a second, account values pushed every ``--cadence``
seconds) and runs the real daemon in this process with its status page on a free loopback
port. Once every account is evaluated, two clients in their own processes (so their work does
not slow the server's loop) run side by side for ``--seconds``:

- a page kept open: it reads the overview's event stream and, for every card it receives,
  takes the delay from the evaluation the card shows (its ``data-evaluated-at``) to its
  arrival;
- a person reloading: ``--requests`` sequential GETs of the overview (every card, rendered
  from the ``check --json`` entries), then of one account's page (200 positions, the rules,
  the day's chart).

Targets: the overview served in under 100 ms (median), and the stream keeping up with the
evaluations: every evaluated account's latest state reaches the open page, and 95% of the
cards arrive within 1 s of their evaluation. Loopback only; the run is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import logging
import re
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import machine, median, percentile, verdict

OVERVIEW_TARGET = 0.100  # seconds, median
LAG_TARGET = 1.0  # seconds, p95
EVALUATED_AT = re.compile(r'id="card-([^"]+)".*?data-evaluated-at="([^"]*)"', re.DOTALL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the clients (each runs in its own process) -------------------------------------------------


def client_requests(port: int, paths: list[str], count: int) -> dict[str, Any]:
    """``count`` sequential GETs of each path: seconds per request and the body's size."""
    results: dict[str, Any] = {}
    for path in paths:
        timings, size = [], 0
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(count):
            started = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            timings.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"GET {path}: {response.status}")
            size = len(body)
        connection.close()
        results[path] = {"seconds": timings, "bytes": size}
    return results


def client_stream(port: int, seconds: float) -> dict[str, Any]:
    """Read the overview's stream for ``seconds``: each card's delay from its evaluation, and
    the latest evaluation received per account."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/events")
    response = connection.getresponse()
    lags: list[float] = []
    latest: dict[str, str] = {}
    updates = 0
    first = True
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = response.readline()
        if not line:
            break
        if not line.startswith(b"data: "):
            continue
        arrived = time.time()
        updates += 1
        for fragment in json.loads(line[6:])["fragments"]:
            match = EVALUATED_AT.search(fragment["html"])
            if not match or not match.group(2):
                continue
            account, stamp = match.groups()
            latest[account] = stamp
            if not first:  # the first update is the whole page as it was: not a delay
                lags.append(arrived - datetime.fromisoformat(stamp).timestamp())
        first = False
    connection.close()
    return {"lags": lags, "latest": latest, "updates": updates}


# -- the run -------------------------------------------------------------------------------------


async def measure(args: argparse.Namespace) -> int:
    from monitor.app import build_daemon, build_service
    from monitor.logs import configure_logging
    from monitor.settings import Settings

    configure_logging("WARNING", None, "console")
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    book = f"generated:{args.accounts}x{args.holdings}x{args.contracts}"
    port = free_port()
    command = [sys.executable, "-m", "monitor.cli", "simulate-gateway", "--scenario", book]
    command += ["--port", str(port), "--price-rate", str(args.price_rate)]
    command += ["--cadence", str(args.cadence)]
    gateway = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = asyncio.Event()
    try:
        await listening(port, time.monotonic() + 60)
        with tempfile.TemporaryDirectory(prefix="bench-web-") as temp:
            settings = Settings(
                ib={"port": port, "client_id": 31, "timeout": 30, "fundamentals": False},
                monitor={"state_dir": Path(temp), "evaluate_every_seconds": 30},
                summary={"enabled": False},
            )
            settings = settings.model_copy(
                update={"web": settings.web.model_copy(update={"port": 0})}
            )
            service = build_service(settings)
            daemon = build_daemon(settings, service=service)
            assert daemon.web_server is not None
            task = asyncio.create_task(daemon.run(stop))
            started = time.monotonic()
            while not (
                len([v for v in service.views.values() if v.snapshot is not None])
                >= args.accounts
            ):
                if time.monotonic() - started > args.connect_timeout or task.done():
                    raise RuntimeError("the monitor did not evaluate every account in time")
                await asyncio.sleep(0.1)
            positions = sum(
                len(v.snapshot.positions) for v in service.views.values() if v.snapshot
            )
            print(
                f"monitor up with {len(service.views)} accounts, {positions:,} positions "
                f"after {time.monotonic() - started:.1f} s ({book}, prices "
                f"{args.price_rate:g}/s, account values every {args.cadence:g} s)"
            )
            web_port = daemon.web_server.port
            account = sorted(service.views)[0]
            evaluations_before = service.evaluations
            window_started = time.monotonic()
            stream = asyncio.create_task(child("stream", web_port, args.seconds))
            await asyncio.sleep(1.0)  # the page is open before the reloads start
            pages = await child(
                "requests", web_port, args.requests, "/", f"/account/{account}"
            )
            streamed = await stream
            window = time.monotonic() - window_started
            evaluations = service.evaluations - evaluations_before
            final = {
                name: view.evaluated_at.isoformat()
                for name, view in service.views.items()
                if view.evaluated_at is not None
            }
    finally:
        stop.set()
        if "task" in locals():
            await asyncio.wait_for(task, 30)
        gateway.terminate()
        gateway.wait(10)
    return report(args, pages, streamed, evaluations, window, final, account)


async def listening(port: int, deadline: float) -> None:
    """Wait until the simulated gateway accepts connections."""
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def child(role: str, port: int, *values: object) -> dict[str, Any]:
    """Run one client in its own process; its JSON result."""
    command = [sys.executable, __file__, "--client", role, str(port), *map(str, values)]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    output, _ = await asyncio.wait_for(process.communicate(), 300)
    if process.returncode:
        raise RuntimeError(f"the {role} client failed ({process.returncode})")
    return json.loads(output)


def report(
    args: argparse.Namespace,
    pages: dict[str, Any],
    streamed: dict[str, Any],
    evaluations: int,
    window: float,
    final: dict[str, str],
    account: str,
) -> int:
    """Print the figures and the verdicts."""
    overview = pages["/"]["seconds"]
    account_page = pages[f"/account/{account}"]["seconds"]
    lags = streamed["lags"]
    print(f"machine: {machine()}")
    print(
        f"overview ({args.accounts} cards, {pages['/']['bytes'] / 1024:.0f} KB)      "
        f"median {median(overview) * 1000:6.1f} ms   p95 "
        f"{percentile(overview, 0.95) * 1000:6.1f} ms   max {max(overview) * 1000:6.1f} ms"
        f"   (n={len(overview)})"
    )
    print(
        f"account page ({args.holdings} positions, "
        f"{pages[f'/account/{account}']['bytes'] / 1024:.0f} KB)  median "
        f"{median(account_page) * 1000:6.1f} ms   p95 "
        f"{percentile(account_page, 0.95) * 1000:6.1f} ms   (n={len(account_page)})"
    )
    print(
        f"evaluations in the monitor: {evaluations:,} in {window:.1f} s "
        f"({evaluations / window:,.0f}/s)"
    )
    print(
        f"stream: {streamed['updates']:,} updates carrying {len(lags):,} cards "
        f"({len(lags) / args.seconds:,.0f} cards/s)"
    )
    late = sum(1 for lag in lags if lag > LAG_TARGET)
    if lags:
        print(
            f"evaluation -> card on the open page: median {median(lags) * 1000:6.1f} ms   "
            f"p95 {percentile(lags, 0.95) * 1000:6.1f} ms   max {max(lags) * 1000:6.1f} ms   "
            f"later than {LAG_TARGET:g} s: {late}"
        )
    missing = sorted(set(final) - set(streamed["latest"]))
    print(
        f"accounts whose cards reached the page: {len(streamed['latest'])} of {len(final)}"
        f"{'; missing ' + ', '.join(missing[:5]) if missing else ''}"
    )
    overview_met = median(overview) < OVERVIEW_TARGET
    stream_met = bool(lags) and percentile(lags, 0.95) < LAG_TARGET and not missing
    print(f"overview median < {OVERVIEW_TARGET * 1000:.0f} ms: {verdict(overview_met)}")
    print(
        f"stream keeps up (every account reaches the page, 95% within {LAG_TARGET:g} s): "
        f"{verdict(stream_met)}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Measure and print (or, with --client, be one of the clients)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--client"]:
        role, port, *rest = argv[1:]
        if role == "stream":
            result = client_stream(int(port), float(rest[0]))
        else:
            result = client_requests(int(port), rest[1:], int(rest[0]))
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--holdings", type=int, default=200)
    parser.add_argument("--contracts", type=int, default=300)
    parser.add_argument("--price-rate", type=float, default=200.0, help="price updates/s")
    parser.add_argument("--cadence", type=float, default=5.0, help="account values every N s")
    parser.add_argument("--seconds", type=float, default=20.0, help="the open page's window")
    parser.add_argument("--requests", type=int, default=50, help="GETs of each page")
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    print("web_page: the status page with a generated advisor book")
    try:
        return asyncio.run(measure(args))
    except Exception as error:
        print(f"web_page failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
