"""Benchmark: how fast the command line answers, as process wall time.

Targets (issue 12): ``margin-monitor --version`` under 0.3 s and ``margin-monitor check``
against the simulated gateway under 1 s, the median of 10 runs each. Each run is a new
process of the installed console script, timed from its start to its exit; the check runs
against ``margin-monitor simulate-gateway`` (its own process, on a free loopback port,
already serving), with a configuration of its own (no state file: ``check`` then judges
without history) and no notification URL; the same with one URL (Apprise then loads its
plugins to judge it), ``--help``, ``status`` and ``config show`` are timed too (information).

Run from the repository root::

    .venv/bin/python bench/cli_start.py [--runs 10] [--scenario healthy]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import machine, median, percentile, verdict

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("margin-monitor")
TARGETS = {"--version": 0.3, "check": 1.0}
STARTUP_TIMEOUT = 30.0


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall time of one process of the console script, and its exit status."""
    start = time.perf_counter()
    done = subprocess.run(
        [str(SCRIPT), *argv], env=env, capture_output=True, timeout=60, check=False
    )
    return time.perf_counter() - start, done.returncode


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    """Until the simulated gateway accepts connections (bounded)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the simulated gateway exited before listening")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit("the simulated gateway did not listen in time")


def line(name: str, times: list[float], statuses: set[int]) -> str:
    shown = (
        f"{name:<22} median {median(times):6.3f} s   p90 {percentile(times, 0.9):6.3f} s   "
        f"min {min(times):6.3f} s   max {max(times):6.3f} s   n={len(times)}   "
        f"exit {sorted(statuses)}"
    )
    target = TARGETS.get(name.split()[0])
    if target is not None:
        shown += f"   target < {target:g} s: {verdict(median(times) < target)}"
    return shown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="processes per command (10)")
    parser.add_argument("--scenario", default="healthy", help="the gateway's scenario")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    print(f"taken:   {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.runs} runs each")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARGIN_MONITOR_")}
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="cli-start-") as directory:
        config = Path(directory) / "config.toml"
        base = f'[ib]\nport = {port}\ntimeout = 5\n[monitor]\nstate_dir = "{directory}/state"\n'
        config.write_text(base, encoding="utf-8")
        with_url = Path(directory) / "with-url.toml"  # Apprise then judges the URL at start
        with_url.write_text(base + '[notify]\nurls = ["json://127.0.0.1:9/hook"]\n', "utf-8")
        gateway = subprocess.Popen(
            [str(SCRIPT), "simulate-gateway", "--port", str(port), "--scenario", args.scenario],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening(port, gateway)
            commands = {
                "--version": ["--version"],
                "--help": ["--help"],
                "config show": ["config", "show", "--config", str(config)],
                "status (no state)": ["status", "--config", str(config)],
                "check": ["check", "--config", str(config)],
                "check (with a URL)": ["check", "--config", str(with_url)],
            }
            timed(["check", "--config", str(config)], env)  # the gateway's first client
            for name, argv in commands.items():
                results = [timed(argv, env) for _ in range(args.runs)]
                times = [seconds for seconds, _ in results]
                print(line(name, times, {status for _, status in results}))
        finally:
            gateway.terminate()
            gateway.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
