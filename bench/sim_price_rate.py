"""How fast the simulated gateway streams a generated advisor book's prices (issue 14).

Starts ``margin-monitor simulate-gateway --scenario generated:AxHxC --price-rate N`` in its own
process, connects one raw TWS client (cheap, so the client is never the bottleneck), learns
every position with reqPositions and subscribes reqPnLSingle once per distinct contract (the
monitor's shared streams: ~300) or, with ``--per-holding``, once per (account, holding)
(today's monitor: ~20,000). It then counts pnlSingle messages for ``--seconds`` and reads the
simulator's CPU time from /proc. Prints updates/s applied (the simulator's own log line),
messages/s received, and the simulator's CPU as % of one core.

Target: 5,000 price updates/s to ~300 subscriptions with the simulator under 50% of a core
(so it is not the bottleneck on 2 CPUs beside the monitor it feeds).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import struct
import subprocess
import sys
import time

from _common import cpu_seconds, free_port, machine, rss_mb, verdict

from monitor.sim.protocol import frame

REPORT = re.compile(r"price process: (\d+) updates/s applied, (\d+) messages/s sent")
CPU_TARGET = 50.0


class Client:
    """A minimal TWS client on asyncio streams that counts what it receives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.counts: dict[str, int] = {}

    @classmethod
    async def connect(cls, port: int, deadline: float) -> Client:
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        client = cls(reader, writer)
        writer.write(b"API\0" + struct.pack(">I", 9) + b"v100..176")
        await client.read()  # server version, connection time
        client.send(71, 2, 1, "")
        while (await client.read())[0] != "9":
            pass
        return client

    def send(self, *fields: object) -> None:
        self.writer.write(frame(list(fields)))

    async def read(self) -> list[str]:
        size = struct.unpack(">I", await self.reader.readexactly(4))[0]
        fields = (await self.reader.readexactly(size)).split(b"\0")[:-1]
        return [field.decode() for field in fields]

    async def count_for(self, seconds: float) -> None:
        """Read everything for ``seconds``, counting messages by id."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            try:
                fields = await asyncio.wait_for(self.read(), left)
            except TimeoutError:
                return
            self.counts[fields[0]] = self.counts.get(fields[0], 0) + 1


async def measure(args: argparse.Namespace) -> int:
    port = free_port()
    book = f"generated:{args.accounts}x{args.holdings}x{args.contracts}"
    command = [sys.executable, "-m", "monitor.cli", "simulate-gateway", "--scenario", book]
    command += ["--port", str(port), "--price-rate", str(args.rate), "--cadence", "180"]
    started = time.monotonic()
    gateway = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    try:
        client = await Client.connect(port, time.monotonic() + 60)
        print(f"gateway up after {time.monotonic() - started:.1f} s ({book}, {args.rate:g}/s)")
        client.send(61, 1)  # reqPositions: every account's holdings
        holders: dict[str, list[str]] = {}
        while (fields := await client.read())[0] != "62":
            if fields[0] == "61" and float(fields[15]):
                holders.setdefault(fields[3], []).append(fields[2])
        pairs = [(accounts[0], con) for con, accounts in holders.items()]
        if args.per_holding:
            pairs = [(account, con) for con, accounts in holders.items() for account in accounts]
        for req_id, (account, con_id) in enumerate(pairs, 1000):
            client.send(94, req_id, account, "", con_id)
        await client.count_for(2.0)  # the first values and the start-up transient
        client.counts.clear()
        cpu_start, wall_start = cpu_seconds(gateway.pid), time.monotonic()
        await client.count_for(args.seconds)
        wall = time.monotonic() - wall_start
        cpu = (cpu_seconds(gateway.pid) - cpu_start) / wall * 100
        rss = rss_mb(gateway.pid)
        client.writer.close()
    finally:
        gateway.terminate()
        _, err = gateway.communicate(timeout=10)
        lines = err.splitlines()
    applied = [REPORT.search(line) for line in lines]
    reports = [(int(m.group(1)), int(m.group(2))) for m in applied if m]
    received = client.counts.get("95", 0) / wall
    print(machine())
    kind = "per holding" if args.per_holding else "one per contract"
    print(f"subscriptions: {len(pairs)} reqPnLSingle ({kind})")
    if reports:
        updates, sent = reports[-1]
        print(f"price updates applied: {updates:,}/s (asked {args.rate:,.0f}/s)")
        print(f"messages sent by the simulator: {sent:,}/s")
    print(f"pnlSingle received: {received:,.0f}/s over {wall:.1f} s")
    print(f"simulator CPU: {cpu:.1f}% of one core; RSS {rss:.0f} MB")
    if not args.per_holding:
        met = cpu < CPU_TARGET and bool(reports) and reports[-1][0] >= 0.95 * args.rate
        print(f"{args.rate:,.0f} updates/s under {CPU_TARGET:.0f}% of a core: {verdict(met)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--holdings", type=int, default=200)
    parser.add_argument("--contracts", type=int, default=300)
    parser.add_argument("--rate", type=float, default=5000.0, help="price updates per second")
    parser.add_argument("--seconds", type=float, default=21.0, help="measured time (>= 10)")
    parser.add_argument("--per-holding", action="store_true", help="one subscription per holding")
    return asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
