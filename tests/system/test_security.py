"""Security (issue 4): read-only by construction, secrets never leave, loopback by default.

- The simulated gateway records every order message a client sends: after a full sell-off run
  the monitor has sent none (and a control client shows the recording works).
- No module of the product refers to an order method, and every ``connectAsync`` is read-only.
- A run whose Apprise and heartbeat URLs carry credentials and tokens, with failing deliveries
  so that errors are produced, leaves no trace of them in the logs (console and JSON file), the
  outbox, the delivery log or the state file itself.
- What listens binds 127.0.0.1 by default (simulator, metrics endpoint, receiver).

The warning for a configuration file readable by others is tested in ``test_settings.py``.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import inspect
import ipaddress
import json
import logging
import socket
import struct
from pathlib import Path

import pytest
from ib_async import IB
from support import until

from monitor.app import build_service, run_daemon
from monitor.cli import build_parser, prepare
from monitor.metrics import MetricsServer
from monitor.settings import MetricsSettings, load_settings
from monitor.sim.receiver import Receiver
from monitor.sim.server import SimulatedGateway, serve

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = sorted([*(ROOT / "monitor").rglob("*.py"), *(ROOT / "rules").rglob("*.py")])
ORDER_METHODS = frozenset(
    {
        "placeOrder",
        "cancelOrder",
        "reqGlobalCancel",
        "exerciseOptions",
        "reqAutoOpenOrders",
        "whatIfOrder",
        "whatIfOrderAsync",
        "bracketOrder",
        "oneCancelsAll",
    }
)


# -- the connection is read-only ---------------------------------------------------------------


@pytest.mark.slow
def test_a_full_selloff_run_sends_no_order_message(simulated_gateway, tmp_path):
    """The whole scripted sell-off through the daemon: the gateway received no order message.
    A control client that does send one shows that the gateway would have recorded it."""

    async def scenario() -> tuple[list[list[str]], int, list[list[str]]]:
        with Receiver() as receiver:
            async with simulated_gateway("selloff", speed=10) as gateway:
                config = tmp_path / "config.toml"
                config.write_text(
                    f"[ib]\nport = {gateway.port}\nclient_id = 7\ntimeout = 5\n"
                    f'[notify]\nurls = ["{receiver.url}"]\n'
                    f'[monitor]\nstate_dir = "{tmp_path / "state"}"\n'
                    "[summary]\nenabled = false\n"
                )
                settings = load_settings(config)
                stop = asyncio.Event()
                daemon = asyncio.create_task(run_daemon(settings, stop))
                await gateway.wait_for_clients(1, timeout=10)
                await gateway.run_timeline()
                await receiver.wait_until_async(
                    lambda got: any("RESOLVED" in m.title and "cushion" in m.title for m in got),
                    timeout=15,
                )
                stop.set()
                await asyncio.wait_for(daemon, 15)
                from_monitor = list(gateway.orders_received)

                control = IB()
                await control.connectAsync("127.0.0.1", gateway.port, clientId=99, timeout=5)
                control.reqGlobalCancel()
                await gateway.wait_until(lambda: bool(gateway.orders_received), timeout=5)
                control.disconnect()
                return from_monitor, len(receiver.messages), list(gateway.orders_received)

    from_monitor, notified, after_control = asyncio.run(scenario())
    assert notified >= 3, "the run did exercise the alert path"
    assert from_monitor == []
    assert len(after_control) == 1, "the gateway records order messages"


def _product_trees() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), filename=str(path))) for path in PRODUCT]


@pytest.mark.slow
def test_no_product_module_refers_to_an_order_method():
    """No attribute access or name in monitor/ or rules/ is an order method (strings such as
    the simulator's table of message names are fine: they are not calls)."""
    offences = []
    for path, tree in _product_trees():
        for node in ast.walk(tree):
            name = (
                node.attr
                if isinstance(node, ast.Attribute)
                else node.id
                if isinstance(node, ast.Name)
                else None
            )
            if name in ORDER_METHODS:
                offences.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert not offences, offences


@pytest.mark.slow
def test_every_connect_call_is_read_only():
    """Each ``connectAsync``/``connect`` on an IB object in the product passes readonly=True."""
    calls = []
    for path, tree in _product_trees():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "connectAsync"
            ):
                readonly = {k.arg: k.value for k in node.keywords}.get("readonly")
                calls.append(
                    (
                        f"{path.relative_to(ROOT)}:{node.lineno}",
                        isinstance(readonly, ast.Constant) and readonly.value is True,
                    )
                )
    assert calls, "the connector connects somewhere"
    assert all(ok for _, ok in calls), [where for where, ok in calls if not ok]


# -- secrets never reach a log, an error or the state file -------------------------------------

USER = "alice"
PASSWORD = "Pa55w0rd-xyzzy"
TOKEN = "tok-9f8e7d6c5b4a3f2e"
HEARTBEAT_TOKEN = "hb-1c2d3e4f-5a6b-7c8d"
SECRETS = (PASSWORD, TOKEN, HEARTBEAT_TOKEN)


@pytest.mark.slow
def test_secrets_never_reach_logs_errors_or_the_state_file(simulated_gateway, tmp_path, capfd):
    """Notify URL ``json://alice:<password>@127.0.0.1:PORT/hooks/<token>`` and a heartbeat URL
    with a token, DEBUG logging to the console and a JSON file, deliveries that fail before
    they succeed: no secret appears anywhere the monitor writes."""
    log_file = tmp_path / "logs" / "monitor.jsonl"
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level

    async def scenario(config: Path, receiver: Receiver, gateway: SimulatedGateway) -> list:
        settings = prepare(argparse.Namespace(config=str(config)))
        service = build_service(settings)
        service.notifier.backoff_base = service.notifier.backoff_base / 50
        stop = asyncio.Event()
        daemon = asyncio.create_task(run_daemon(settings, stop, service))
        await gateway.wait_for_clients(1, timeout=10)
        receiver.set_failing(True)
        gateway.move_prices({"all": -0.32})
        await until(
            lambda: bool(service.store.deliveries(outcome="failed")), 10, "a delivery failed"
        )
        receiver.set_failing(False)
        await receiver.wait_until_async(
            lambda got: any("CRITICAL" in m.title and "cushion" in m.title for m in got), 10
        )
        await service.settle(timeout=10)
        errors = [
            *(row.last_error for row in service.store.outbox()),
            *(row["error"] for row in service.store.deliveries()),
            repr(service.notifier.targets),
            str(service.connector.state),
        ]
        stop.set()
        await asyncio.wait_for(daemon, 15)
        return errors

    async def run() -> list:
        with Receiver() as receiver:
            async with simulated_gateway("selloff") as gateway:
                url = f"json://{USER}:{PASSWORD}@127.0.0.1:{receiver.port}/hooks/{TOKEN}"
                heartbeat = f"http://127.0.0.1:{_closed_port()}/ping/{HEARTBEAT_TOKEN}"
                config = tmp_path / "config.toml"
                config.write_text(
                    f"[ib]\nport = {gateway.port}\nclient_id = 7\ntimeout = 5\n"
                    f"[notify]\nurls = [{json.dumps(url)}]\n"
                    f"heartbeat_url = {json.dumps(heartbeat)}\nheartbeat_seconds = 0.1\n"
                    f'[monitor]\nstate_dir = "{tmp_path / "state"}"\n'
                    f'log_file = "{log_file}"\nlog_level = "DEBUG"\n'
                    "evaluate_every_seconds = 0.2\n[summary]\nenabled = false\n"
                )
                config.chmod(0o600)
                errors = await scenario(config, receiver, gateway)
                assert receiver.messages[0].path == f"/hooks/{TOKEN}", "the URL was really used"
                return errors

    try:
        errors = asyncio.run(run())
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
    console = capfd.readouterr()
    written = log_file.read_text()
    state = b"".join(path.read_bytes() for path in (tmp_path / "state").iterdir())
    assert '"notification failed"' in written or "notification failed" in written
    assert any(errors), "failures left error texts to inspect"
    for secret in SECRETS:
        assert secret not in written
        assert secret not in console.out and secret not in console.err
        assert secret.encode() not in state
        assert all(secret not in (text or "") for text in errors)


def _closed_port() -> int:
    """A loopback port nothing listens on (the heartbeat fails, so its error is logged)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- listening sockets bind 127.0.0.1 by default -----------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """Addresses with a socket listening on TCP ``port``, from /proc/net/tcp and tcp6."""
    found = set()
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(address)
            if family == 4:
                found.add(str(ipaddress.IPv4Address(raw[::-1])))
            else:
                words = struct.unpack("<4I", raw)
                found.add(str(ipaddress.IPv6Address(struct.pack(">4I", *words))))
    return found


needs_proc = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc/net/tcp"
)


def test_listeners_default_to_loopback_in_their_signatures():
    """Every listener's host parameter defaults to 127.0.0.1."""
    assert inspect.signature(SimulatedGateway).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(Receiver).parameters["host"].default == "127.0.0.1"
    assert MetricsSettings().host == "127.0.0.1"
    simulate = build_parser().parse_args(["simulate-gateway"])
    assert simulate.host == "127.0.0.1"


@needs_proc
def test_the_simulator_and_the_metrics_endpoint_listen_on_loopback_only(tmp_path):
    """Started with their defaults, the simulated gateway and the metrics endpoint have a
    listening socket on 127.0.0.1 and none on another address."""

    async def scenario() -> tuple[set[str], set[str]]:
        async with SimulatedGateway("healthy", port=0) as gateway:
            simulator = listening_addresses(gateway.port)
        config = tmp_path / "config.toml"
        config.write_text(f'[monitor]\nstate_dir = "{tmp_path / "state"}"\n')
        settings = load_settings(config)
        service = build_service(settings)
        # [metrics] host at its default, on any free port
        server = MetricsServer(service.metrics, service.healthy, settings.metrics.host, 0)
        await server.start()
        metrics = listening_addresses(server.port)
        await server.close()
        service.store.close()
        return simulator, metrics

    simulator, metrics = asyncio.run(scenario())
    assert simulator == {"127.0.0.1"}
    assert metrics == {"127.0.0.1"}
