"""``check`` and ``status`` beside a running daemon, all real: the daemon is ``margin-monitor
run`` in a child process on the simulated gateway, the check and the status are the console
script, as cron or Nagios would run them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from support import CLIENT_ID, start_daemon, until, write_config

from monitor.sim.receiver import Receiver
from monitor.store import Store


async def margin_monitor(*args: str) -> tuple[int, str, str]:
    """The console script with ``args``; (exit status, stdout, stderr)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MARGIN_MONITOR_")}
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("margin-monitor")),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**environ, "COLUMNS": "100"},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def recorded(database: Path) -> bool:
    """True once the daemon has written both accounts' figures and its gateway link."""
    with Store(database, readonly=True) as store:
        return len(store.latest_samples()) == 2 and store.daemon_state("gateway") is not None


@pytest.mark.slow
def test_check_runs_beside_the_daemon_and_status_reads_its_state(simulated_gateway, tmp_path):
    """With the daemon connected as client 7: ``check`` connects as 8 ([ib] client_id + 1) and
    answers OK (exit 0) while the daemon stays connected; ``check --client-id 7`` collides and
    says so (UNKNOWN, exit 3, IB error 326, naming --client-id and [ib] check_client_id).
    ``status`` shows the daemon running with its PID and the gateway connected, from the
    state file alone; once the daemon is stopped it shows it not running and the link down."""

    async def scenario() -> dict[str, object]:
        seen: dict[str, object] = {}
        with Receiver() as receiver:
            async with simulated_gateway("healthy") as gateway:
                config = write_config(tmp_path, gateway.port, [receiver.url])
                daemon = await start_daemon(config, tmp_path / "daemon.log")
                try:
                    await gateway.wait_for_clients(1, timeout=20)
                    database = tmp_path / "state" / "monitor.sqlite3"
                    await until(database.exists, 20, "the daemon created its state")
                    seen["check"] = await margin_monitor("check", "--config", str(config))
                    seen["clients after check"] = len(gateway.clients)
                    seen["collision"] = await margin_monitor(
                        "check", "--client-id", str(CLIENT_ID), "--config", str(config)
                    )
                    await until(
                        lambda: recorded(database), 20, "the daemon recorded its link and figures"
                    )
                    result = await margin_monitor("status", "--json", "--config", str(config))
                    seen["status"] = json.loads(result[1])
                    seen["status text"] = await margin_monitor("status", "--config", str(config))
                    seen["pid"] = daemon.pid
                finally:
                    daemon.send_signal(signal.SIGTERM)
                    seen["daemon exit"] = await asyncio.wait_for(daemon.wait(), 30)
                seen["after"] = json.loads(
                    (await margin_monitor("status", "--json", "--config", str(config)))[1]
                )
        return seen

    seen = asyncio.run(scenario())
    status, out, err = seen["check"]  # type: ignore[misc]
    assert status == 0, (out, err)
    assert out.startswith("MARGIN OK - 2 accounts ok")
    assert seen["clients after check"] == 1, "the daemon stays connected"

    status, out, err = seen["collision"]  # type: ignore[misc]
    assert status == 3
    assert out.startswith(f"MARGIN UNKNOWN - client id {CLIENT_ID} is already in use")
    assert "(IB error 326)" in out and "--client-id" in out and "check_client_id" in out

    state = seen["status"]
    assert state["daemon"] == {"running": True, "pid": seen["pid"]}  # type: ignore[index]
    gateway = state["gateway"]  # type: ignore[index]
    assert gateway["connected"] is True and gateway["live"] is True
    assert {a["account"] for a in state["accounts"]} == {"DU2000001", "DU2000002"}  # type: ignore[index]
    _, text, _ = seen["status text"]  # type: ignore[misc]
    assert f"Daemon: running (PID {seen['pid']})" in text
    assert "Gateway, as last recorded: connected to 127.0.0.1:" in text

    assert seen["daemon exit"] == 0
    after = seen["after"]
    assert after["daemon"]["running"] is False  # type: ignore[index]
    assert after["gateway"]["connected"] is False  # type: ignore[index]
