"""Reliability (issue 4): alerts never lost, never repeated, a monitor that survives its gateway.

Everything is real: the unmodified ib_async talks to the simulated gateway over loopback, Apprise
posts to a local :class:`~monitor.sim.receiver.Receiver`, the state is a SQLite file in ``tmp_path``
and one test runs the daemon as a real subprocess and kills it with SIGKILL. Nothing sleeps for
luck: every wait is a condition with a deadline. Where minutes must pass (the "monitor blind"
alert, the restart window) the service gets a clock the test moves forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import (
    CLIENT_ID,
    Recorder,
    SteppingClock,
    daemon,
    has,
    make_settings,
    start_daemon,
    titles,
    until,
    write_config,
)

from monitor.gateway import GatewayConnector, GatewayError
from monitor.notifier import Notification, Notifier, Target
from monitor.service import MonitorService
from monitor.sim.receiver import ReceivedMessage, Receiver
from monitor.sim.server import GARBAGE_KINDS, SimulatedGateway
from monitor.store import Store
from rules.model import Severity

ACCOUNT = "DU1000001"  # the leveraged account of the built-in sell-off scenario
QUIET = "DU1000002"  # its unleveraged neighbour (never alerts)
CRASH = {"all": -0.32, "VTI": 0.0, "BND": 0.0}  # DU1000001: cushion 30% -> about 5%


# -- helpers -----------------------------------------------------------------------------------


def assert_each_id_once(receiver: Receiver) -> None:
    """No notification id was delivered twice."""
    ids = receiver.ids()
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"delivered more than once: {duplicates}"


def severity(service: MonitorService, account: str, rule: str) -> Severity:
    """The alert level currently held for (account, rule)."""
    state = service.states.get((account, rule))
    return state.severity if state is not None else Severity.OK


async def evaluated_with_data(
    service: MonitorService, recorder: Recorder, account: str, mark: int, timeout: float = 10
) -> Any:
    """Wait for an evaluation after ``mark`` whose cushion finding has real data."""
    await until(
        lambda: any(not f.data_missing for f in recorder.since(mark, account, "cushion")),
        timeout,
        f"{account} is evaluated with live data",
    )
    return next(f for f in recorder.since(mark, account, "cushion") if not f.data_missing)


CRITICAL = f"[CRITICAL] {ACCOUNT} cushion"
RESOLVED = f"[RESOLVED] {ACCOUNT} cushion (was critical)"


async def breach(gateway: SimulatedGateway, receiver: Receiver) -> None:
    """Crash DU1000001's cushion and wait until its critical alert is delivered."""
    gateway.move_prices(CRASH)
    await receiver.wait_until_async(has(CRITICAL), timeout=10)


# -- 1. the gateway drops and restarts in the middle of a breach -------------------------------


@pytest.mark.slow
def test_drop_and_restart_mid_breach_fire_once_hold_and_recover_once(simulated_gateway, tmp_path):
    """A breach fires once; a dropped connection and a gateway restart during it neither
    repeat it nor resolve it (the findings say the data is missing); the recovery after the
    reconnect is notified once."""

    async def scenario() -> tuple[list[ReceivedMessage], Recorder, int]:
        with Receiver() as receiver:
            async with simulated_gateway("selloff") as gateway:
                initial = dict(gateway.state.prices)
                settings = make_settings(tmp_path, gateway.port, [receiver.url])
                async with daemon(settings) as (service, recorder):
                    await gateway.wait_for_clients(1, timeout=10)
                    await breach(gateway, receiver)

                    connections = gateway.connections_accepted
                    mark = len(recorder.views)
                    await gateway.drop_clients()
                    await gateway.wait_until(
                        lambda: gateway.connections_accepted > connections and gateway.clients,
                        timeout=10,
                    )
                    finding = await evaluated_with_data(service, recorder, ACCOUNT, mark)
                    assert finding.severity == Severity.CRITICAL

                    connections = gateway.connections_accepted
                    restart = asyncio.create_task(gateway.restart(1.0))
                    await until(
                        lambda: not service.connector.state.connected, 5, "the link is seen down"
                    )
                    mark = len(recorder.views)
                    await until(
                        lambda: any(
                            f.data_missing for f in recorder.since(mark, ACCOUNT, "cushion")
                        ),
                        5,
                        "an evaluation during the outage",
                    )
                    await restart
                    await gateway.wait_until(
                        lambda: gateway.connections_accepted > connections and gateway.clients,
                        timeout=10,
                    )
                    mark = len(recorder.views)
                    finding = await evaluated_with_data(service, recorder, ACCOUNT, mark)
                    assert finding.severity == Severity.CRITICAL
                    assert severity(service, ACCOUNT, "cushion") == Severity.CRITICAL

                    gateway.set_prices(initial)
                    await receiver.wait_until_async(has(RESOLVED), timeout=10)
                    await service.settle(timeout=5)
                    return receiver.messages, recorder, service.connector.state.reconnects

    messages, recorder, reconnects = asyncio.run(scenario())
    assert titles(messages, ACCOUNT, "cushion") == [CRITICAL, RESOLVED]
    outage = [f for f in recorder.findings(ACCOUNT, "cushion") if f.data_missing]
    assert outage and all(f.severity == Severity.UNKNOWN for f in outage)
    assert any("disconnected" in f.message for f in outage)
    assert reconnects >= 2
    assert not [m for m in messages if QUIET in m.title]
    ids = [m.notification_id for m in messages]
    assert len(ids) == len(set(ids))


@pytest.mark.slow
def test_a_long_outage_alerts_monitor_blind_once_then_recovers(simulated_gateway, tmp_path):
    """Disconnected longer than blind_minutes: one critical "monitor blind" alert (no repeat
    while it lasts), then a recovery message once data flows again."""
    clock = SteppingClock()

    async def scenario() -> list[ReceivedMessage]:
        with Receiver() as receiver:
            async with simulated_gateway("selloff") as gateway:
                settings = make_settings(
                    tmp_path, gateway.port, [receiver.url], ib={"accounts": [ACCOUNT]}
                )
                async with daemon(settings, clock) as (service, recorder):
                    await gateway.wait_for_clients(1, timeout=10)
                    await evaluated_with_data(service, recorder, ACCOUNT, 0)
                    await gateway.stop()
                    await until(lambda: not service.connector.state.connected, 5, "link down")
                    clock.advance(minutes=4)  # under blind_minutes (5): nothing yet
                    mark = len(recorder.views)
                    await until(
                        lambda: len(recorder.since(mark, ACCOUNT, "stale_data")) >= 2,
                        5,
                        "two evaluations 4 minutes into the outage",
                    )
                    assert severity(service, ACCOUNT, "stale_data") == Severity.OK
                    clock.advance(minutes=2)
                    await receiver.wait_until_async(
                        has(f"[CRITICAL] {ACCOUNT} stale_data"), timeout=10
                    )
                    blind = next(m for m in receiver.messages if "stale_data" in m.title)
                    assert "Monitor blind" in blind.message
                    clock.advance(minutes=20)  # still blind, under the 60-minute reminder
                    mark = len(recorder.views)
                    await until(
                        lambda: len(recorder.since(mark, ACCOUNT, "stale_data")) >= 2,
                        5,
                        "two evaluations 26 minutes into the outage",
                    )
                    await gateway.start()
                    await receiver.wait_until_async(
                        has(f"[RESOLVED] {ACCOUNT} stale_data (was critical)"), timeout=10
                    )
                    await service.settle(timeout=5)
                    return receiver.messages

    messages = asyncio.run(scenario())
    assert titles(messages, ACCOUNT, "stale_data") == [
        f"[CRITICAL] {ACCOUNT} stale_data",
        f"[RESOLVED] {ACCOUNT} stale_data (was critical)",
    ]
    assert not titles(messages, ACCOUNT, "cushion"), "a disconnect is not a margin alert"


@pytest.mark.slow
def test_a_disconnect_inside_the_restart_window_waits_until_it_outlasts_it(
    simulated_gateway, tmp_path
):
    """With ``[ib] restart_window = "23:45-00:15"`` a disconnect at 23:50 is expected: not
    alerted at 00:00 (10 minutes down), alerted once the window is over (00:20)."""
    clock = SteppingClock(datetime(2024, 3, 4, 23, 50, tzinfo=UTC))

    async def scenario() -> tuple[list[ReceivedMessage], list[str]]:
        with Receiver() as receiver:
            async with simulated_gateway("selloff") as gateway:
                settings = make_settings(
                    tmp_path,
                    gateway.port,
                    [receiver.url],
                    ib={"accounts": [ACCOUNT], "restart_window": "23:45-00:15"},
                    monitor={"timezone": "UTC"},
                )
                async with daemon(settings, clock) as (service, recorder):
                    await gateway.wait_for_clients(1, timeout=10)
                    await evaluated_with_data(service, recorder, ACCOUNT, 0)
                    await gateway.stop()
                    await until(lambda: not service.connector.state.connected, 5, "link down")
                    clock.advance(minutes=10)  # 00:00: down 10 min (> 5) but inside the window
                    mark = len(recorder.views)
                    await until(
                        lambda: len(recorder.since(mark, ACCOUNT, "stale_data")) >= 2,
                        5,
                        "two evaluations at midnight",
                    )
                    inside = recorder.since(mark, ACCOUNT, "stale_data")
                    assert all(f.severity == Severity.OK for f in inside)
                    assert "restart window" in inside[-1].message
                    assert not titles(receiver.messages, ACCOUNT, "stale_data")

                    clock.advance(minutes=20)  # 00:20: the window is over, still down
                    await receiver.wait_until_async(
                        has(f"[CRITICAL] {ACCOUNT} stale_data"), timeout=10
                    )
                    await gateway.start()
                    await receiver.wait_until_async(
                        has(f"[RESOLVED] {ACCOUNT} stale_data (was critical)"), timeout=10
                    )
                    return receiver.messages, [f.message for f in inside]

    messages, _ = asyncio.run(scenario())
    assert titles(messages, ACCOUNT, "stale_data") == [
        f"[CRITICAL] {ACCOUNT} stale_data",
        f"[RESOLVED] {ACCOUNT} stale_data (was critical)",
    ]


@pytest.mark.slow
def test_a_blind_alert_raised_before_the_restart_window_is_not_resolved_by_it(
    simulated_gateway, tmp_path
):
    """Down since 23:30, "monitor blind" at 23:36; the window opening at 23:45 excuses new
    disconnects only: the alert neither resolves in the window nor fires again after it, and
    resolves once when the gateway is back."""
    clock = SteppingClock(datetime(2024, 3, 4, 23, 30, tzinfo=UTC))

    async def scenario() -> list[ReceivedMessage]:
        with Receiver() as receiver:
            async with simulated_gateway("selloff") as gateway:
                settings = make_settings(
                    tmp_path,
                    gateway.port,
                    [receiver.url],
                    ib={"accounts": [ACCOUNT], "restart_window": "23:45-00:15"},
                    monitor={"timezone": "UTC"},
                )
                async with daemon(settings, clock) as (service, recorder):
                    await gateway.wait_for_clients(1, timeout=10)
                    await evaluated_with_data(service, recorder, ACCOUNT, 0)
                    await gateway.stop()
                    await until(lambda: not service.connector.state.connected, 5, "link down")
                    clock.advance(minutes=6)
                    await receiver.wait_until_async(
                        has(f"[CRITICAL] {ACCOUNT} stale_data"), timeout=10
                    )
                    for minutes in (14, 30):  # 23:50 inside the window, then 00:20 after it
                        clock.advance(minutes=minutes)
                        mark = len(recorder.views)
                        await until(
                            lambda mark=mark: len(recorder.since(mark, ACCOUNT, "stale_data")) >= 3,
                            5,
                            "evaluations after the clock moved",
                        )
                        await service.settle(timeout=5)
                        assert severity(service, ACCOUNT, "stale_data") == Severity.CRITICAL
                    await gateway.start()
                    await receiver.wait_until_async(
                        has(f"[RESOLVED] {ACCOUNT} stale_data (was critical)"), timeout=10
                    )
                    return receiver.messages

    messages = asyncio.run(scenario())
    assert titles(messages, ACCOUNT, "stale_data") == [
        f"[CRITICAL] {ACCOUNT} stale_data",
        f"[RESOLVED] {ACCOUNT} stale_data (was critical)",
    ]


# -- 2. IB connectivity errors 1100 / 1101 / 1102 ---------------------------------------------


@pytest.mark.slow
def test_1100_holds_the_alert_and_1102_carries_on_with_the_data_kept(simulated_gateway, tmp_path):
    """1100: data marked not live, findings say so and hold the alert even though prices
    recover meanwhile; after stale_minutes of that, a stale-data warning; 1102: no reconnect,
    the changed values flow and both recoveries are notified once."""
    clock = SteppingClock()

    async def scenario() -> tuple[list[ReceivedMessage], list[Any], int, int]:
        with Receiver() as receiver:
            async with simulated_gateway("selloff") as gateway:
                initial = dict(gateway.state.prices)
                settings = make_settings(tmp_path, gateway.port, [receiver.url])
                async with daemon(settings, clock) as (service, recorder):
                    await gateway.wait_for_clients(1, timeout=10)
                    await breach(gateway, receiver)
                    connections = gateway.connections_accepted

                    gateway.send_error(1100)
                    await until(lambda: not service.connector.state.live, 5, "data not live")
                    gateway.set_prices(initial)  # the market recovers while IB is away
                    mark = len(recorder.views)
                    await until(
                        lambda: len(recorder.since(mark, ACCOUNT, "cushion")) >= 3,
                        5,
                        "three evaluations while not live",
                    )
                    held = recorder.since(mark, ACCOUNT, "cushion")
                    assert severity(service, ACCOUNT, "cushion") == Severity.CRITICAL
                    assert service.connector.state.connected

                    clock.advance(minutes=11)  # IB away for longer than stale_minutes (10)
                    await receiver.wait_until_async(
                        has(f"[WARNING] {ACCOUNT} stale_data"), timeout=10
                    )
                    gateway.send_error(1102)
                    await receiver.wait_until_async(has(RESOLVED), timeout=10)
                    await receiver.wait_until_async(
                        has(f"[RESOLVED] {ACCOUNT} stale_data (was warning)"), timeout=10
                    )
                    await service.settle(timeout=5)
                    return receiver.messages, held, connections, gateway.connections_accepted

    messages, held, before, after = asyncio.run(scenario())
    assert all(f.data_missing and f.severity == Severity.UNKNOWN for f in held)
    assert all("1100" in f.message for f in held)
    assert after == before, "1102 keeps the connection"
    assert titles(messages, ACCOUNT, "cushion") == [CRITICAL, RESOLVED]
    assert titles(messages, ACCOUNT, "stale_data") == [
        f"[WARNING] {ACCOUNT} stale_data",
        f"[RESOLVED] {ACCOUNT} stale_data (was warning)",
    ]


def test_1101_resubscribes_and_the_values_flow_again(simulated_gateway, tmp_path):
    """1100 then 1101 (data lost): the connector reconnects, which resubscribes everything;
    until then nothing resolves, afterwards the fresh values resolve the alert once."""

    async def scenario() -> tuple[list[ReceivedMessage], int, int, list[Any]]:
        with Receiver() as receiver:
            async with simulated_gateway("selloff") as gateway:
                initial = dict(gateway.state.prices)
                settings = make_settings(tmp_path, gateway.port, [receiver.url])
                async with daemon(settings) as (service, recorder):
                    await gateway.wait_for_clients(1, timeout=10)
                    await breach(gateway, receiver)
                    connections = gateway.connections_accepted
                    gateway.send_error(1100)
                    await until(lambda: not service.connector.state.live, 5, "data not live")
                    gateway.set_prices(initial)
                    mark = len(recorder.views)
                    gateway.send_error(1101)
                    await receiver.wait_until_async(has(RESOLVED), timeout=10)
                    await service.settle(timeout=5)
                    return (
                        receiver.messages,
                        connections,
                        gateway.connections_accepted,
                        recorder.since(mark, ACCOUNT, "cushion"),
                    )

    messages, before, after, findings = asyncio.run(scenario())
    assert after > before, "1101 makes the connector reconnect (resubscribe)"
    live = [f for f in findings if not f.data_missing]
    assert live and live[-1].severity == Severity.OK
    assert all(f.severity != Severity.OK for f in findings[: findings.index(live[0])])
    assert titles(messages, ACCOUNT, "cushion") == [CRITICAL, RESOLVED]


def test_a_burst_of_connectivity_errors_while_healthy_sends_nothing(simulated_gateway, tmp_path):
    """1100 / 1102 / 1100 / 1101 while nothing changes: no new notification (the sell-off
    account's standing margin_utilization warning is not repeated), the link ends up live."""

    async def scenario() -> tuple[list[ReceivedMessage], list[ReceivedMessage], bool]:
        with Receiver() as receiver:
            async with simulated_gateway("selloff") as gateway:
                settings = make_settings(tmp_path, gateway.port, [receiver.url])
                async with daemon(settings) as (service, recorder):
                    await gateway.wait_for_clients(1, timeout=10)
                    await evaluated_with_data(service, recorder, ACCOUNT, 0)
                    await service.settle(timeout=5)
                    before = receiver.messages
                    for code in (1100, 1102, 1100, 1101):
                        gateway.send_error(code)
                    connections = gateway.connections_accepted
                    await gateway.wait_until(
                        lambda: gateway.connections_accepted > connections, timeout=10
                    )
                    mark = len(recorder.views)
                    await evaluated_with_data(service, recorder, ACCOUNT, mark)
                    await service.settle(timeout=5)
                    state = service.connector.state
                    return before, receiver.messages, state.connected and state.live

    before, after, live = asyncio.run(scenario())
    assert after == before
    assert not titles(after, ACCOUNT, "cushion")
    assert live


# -- 3. error 326 -------------------------------------------------------------------------------


def test_a_second_monitor_with_the_same_client_id_gets_a_clear_message(simulated_gateway):
    """IB error 326: the second connection is refused with advice naming [ib] client_id, and
    a daemon in that situation keeps retrying with that message as its last error."""

    async def scenario() -> tuple[str, str | None, bool]:
        async with simulated_gateway("selloff") as gateway:
            first = GatewayConnector("127.0.0.1", gateway.port, CLIENT_ID, timeout=5)
            await first.connect()
            try:
                second = GatewayConnector("127.0.0.1", gateway.port, CLIENT_ID, timeout=5)
                with pytest.raises(GatewayError) as refused:
                    await second.connect()
                third = GatewayConnector(
                    "127.0.0.1", gateway.port, CLIENT_ID, timeout=5, reconnect_min=0.05
                )
                stop = asyncio.Event()
                running = asyncio.create_task(third.run(stop))
                await until(lambda: third.state.last_error is not None, 10, "a failed attempt")
                stop.set()
                await asyncio.wait_for(running, 10)
                return str(refused.value), third.state.last_error, first.ib.isConnected()
            finally:
                await first.disconnect()

    message, daemon_error, first_still_connected = asyncio.run(scenario())
    assert f"client id {CLIENT_ID} is already in use" in message
    assert "326" in message and "[ib] client_id" in message
    assert daemon_error == message
    assert first_still_connected, "the refused second client does not disturb the first"


# -- 4. a notification endpoint that fails, then recovers ---------------------------------------


@pytest.mark.slow
def test_an_endpoint_answering_500_loses_nothing_and_delivers_each_id_once(
    simulated_gateway, tmp_path
):
    """The receiver answers HTTP 500 while the breach fires and escalates: every notification
    is retried and, once it recovers, delivered exactly once by id; the outbox ends empty."""

    async def scenario() -> tuple[list[ReceivedMessage], int, list[Any], list[Any]]:
        with Receiver() as receiver:
            async with simulated_gateway("selloff") as gateway:
                initial = dict(gateway.state.prices)
                settings = make_settings(tmp_path, gateway.port, [receiver.url])
                async with daemon(settings) as (service, recorder):
                    await gateway.wait_for_clients(1, timeout=10)
                    await evaluated_with_data(service, recorder, ACCOUNT, 0)
                    await service.settle(timeout=5)
                    before = receiver.messages  # the standing margin_utilization warning
                    receiver.set_failing(True)
                    gateway.move_prices(CRASH)
                    await until(
                        lambda: severity(service, ACCOUNT, "cushion") == Severity.CRITICAL,
                        10,
                        "the breach is seen",
                    )
                    gateway.set_prices(initial)
                    await until(
                        lambda: severity(service, ACCOUNT, "cushion") == Severity.OK,
                        10,
                        "the recovery is seen",
                    )
                    await until(lambda: receiver.rejected >= 4, 10, "several rejected attempts")
                    assert receiver.messages == before
                    receiver.set_failing(False)
                    await receiver.wait_until_async(has(RESOLVED), timeout=10)
                    await until(lambda: service.store.pending_count() == 0, 10, "the outbox drains")
                    return (
                        receiver.messages,
                        receiver.rejected,
                        service.store.outbox(),
                        service.store.deliveries(outcome="failed"),
                    )

    messages, rejected, outbox, failures = asyncio.run(scenario())
    assert titles(messages, ACCOUNT, "cushion") == [CRITICAL, RESOLVED]
    delivered = [m.notification_id for m in messages]
    assert sorted(delivered) == sorted(row.notification_id for row in outbox)
    assert len(delivered) == len(set(delivered))
    assert all(row.status == "sent" for row in outbox)
    assert rejected >= 4 and len(failures) >= 4


@pytest.mark.slow
def test_a_receiver_that_is_down_for_a_while_loses_nothing(simulated_gateway, tmp_path):
    """The endpoint is gone (connection refused) during the breach and comes back on the same
    port: every notification is delivered once, in order."""

    async def scenario() -> tuple[list[ReceivedMessage], list[Any]]:
        first = Receiver().start()
        port = first.port
        async with simulated_gateway("selloff") as gateway:
            settings = make_settings(tmp_path, gateway.port, [first.url])
            async with daemon(settings) as (service, recorder):
                await gateway.wait_for_clients(1, timeout=10)
                await evaluated_with_data(service, recorder, ACCOUNT, 0)
                await service.settle(timeout=5)
                first.stop()
                gateway.move_prices(CRASH)
                await until(
                    lambda: any(
                        row.attempts >= 2 and row.last_error
                        for row in service.store.outbox("pending")
                    ),
                    10,
                    "deliveries fail while the endpoint is down",
                )
                with Receiver(port=port) as second:
                    await second.wait_until_async(has(CRITICAL), timeout=10)
                    await until(lambda: service.store.pending_count() == 0, 10, "the outbox drains")
                    return first.messages + second.messages, service.store.outbox()

    messages, outbox = asyncio.run(scenario())
    assert titles(messages, ACCOUNT, "cushion") == [CRITICAL]
    delivered = [m.notification_id for m in messages]
    assert sorted(delivered) == sorted(row.notification_id for row in outbox)
    assert len(delivered) == len(set(delivered))
    assert all(row.status == "sent" for row in outbox)


def test_a_send_cut_short_by_a_stop_hands_its_row_back(tmp_path):
    """Stopping while a target hangs mid-send releases the row's lease: the next start sends
    it at once instead of waiting for the lease (send timeout + 10 s) to lapse."""

    async def scenario() -> tuple[Any, Any, list[ReceivedMessage]]:
        with Receiver(hang_limit=10) as receiver, Store(tmp_path / "outbox.sqlite3") as store:
            notifier = Notifier([Target("json#1", receiver.url)], store)
            now = datetime.now(UTC)
            receiver.set_hanging(True)
            notifier.enqueue(
                Notification(
                    id="DU1:cushion:1:abc",
                    account="DU1",
                    rule="cushion",
                    severity="critical",
                    kind="fired",
                    title="[CRITICAL] DU1 cushion",
                    body="cushion 5%",
                    created_at=now,
                )
            )
            sending = asyncio.create_task(notifier.deliver_due())
            await until(lambda: not store.due(datetime.now(UTC)), 5, "the row is claimed")
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending
            released = store.outbox()[0]
            receiver.set_hanging(False)
            report = await notifier.deliver_due()
            return released, report, receiver.messages

    released, report, messages = asyncio.run(scenario())
    assert released.status == "pending" and released.attempts == 0
    assert report.sent == 1
    assert [m.notification_id for m in messages][-1] == "DU1:cushion:1:abc"


# -- 5. SIGKILL between the outbox write and the send ------------------------------------------


def outbox_rows(state_file: Path) -> list[dict[str, Any]]:
    """The outbox as another process sees it (read-only; empty until the file exists)."""
    if not state_file.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{state_file}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in db.execute("SELECT * FROM outbox")]
        except sqlite3.OperationalError:  # the schema is not there yet
            return []


def alert_events(state_file: Path) -> list[dict[str, Any]]:
    """Every recorded lifecycle transition."""
    with contextlib.closing(sqlite3.connect(f"file:{state_file}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM alert_events ORDER BY id")]


def latest_sample(state_file: Path, account: str) -> str | None:
    """When the daemon last recorded figures for ``account`` (one row per minute, last wins)."""
    if not state_file.exists():
        return None
    with contextlib.closing(sqlite3.connect(f"file:{state_file}?mode=ro", uri=True)) as db:
        try:
            row = db.execute("SELECT MAX(at) FROM samples WHERE account = ?", (account,)).fetchone()
        except sqlite3.OperationalError:
            return None
    return row[0] if row else None


@pytest.mark.slow
def test_sigkill_between_outbox_write_and_send_then_restart_delivers_once(
    simulated_gateway, tmp_path
):
    """The daemon (a real process) queues the breach while the endpoint fails and is killed
    with SIGKILL; the restarted daemon delivers every pending notification exactly once and
    does not announce the breach again. (The kill may land between two transitions of the
    same evaluation: the restarted daemon then makes the missing ones itself, once.)"""
    state_file = tmp_path / "state" / "monitor.sqlite3"
    log = tmp_path / "daemon.log"

    async def scenario() -> tuple[list[ReceivedMessage], list[str], list[dict[str, Any]]]:
        with Receiver() as receiver:
            async with simulated_gateway("selloff") as gateway:
                config = write_config(tmp_path, gateway.port, [receiver.url])
                receiver.set_failing(True)
                first = await start_daemon(config, log)
                try:
                    await gateway.wait_for_clients(1, timeout=20)
                    await until(
                        lambda: latest_sample(state_file, ACCOUNT) is not None,
                        20,
                        "the first evaluation",
                    )
                    gateway.move_prices(CRASH)

                    def queued_and_idle() -> bool:
                        # queued, tried and failed once, and not in the middle of a send
                        # (the notifier holds a failing target's other rows back unattempted)
                        rows = outbox_rows(state_file)
                        return (
                            any(r["rule"] == "cushion" for r in rows)
                            and any(r["attempts"] >= 1 for r in rows)
                            and all(
                                r["status"] == "pending" and r["lease_until"] is None for r in rows
                            )
                        )

                    await until(queued_and_idle, 20, "the breach is queued and has failed once")
                    os.kill(first.pid, signal.SIGKILL)
                    assert await asyncio.wait_for(first.wait(), 10) == -signal.SIGKILL
                finally:
                    if first.returncode is None:
                        first.kill()
                        await first.wait()
                pending = sorted({r["notification_id"] for r in outbox_rows(state_file)})
                assert receiver.messages == []

                receiver.set_failing(False)
                killed_at = latest_sample(state_file, ACCOUNT) or ""
                second = await start_daemon(config, log)
                try:
                    await receiver.wait_until_async(
                        lambda got: set(pending) <= {m.notification_id for m in got},
                        timeout=30,
                    )
                    await until(
                        lambda: all(r["status"] == "sent" for r in outbox_rows(state_file)),
                        20,
                        "the outbox is drained",
                    )
                    await until(
                        lambda: (latest_sample(state_file, ACCOUNT) or "") > killed_at,
                        20,
                        "the restarted daemon evaluates the breached account",
                    )
                    second.send_signal(signal.SIGTERM)
                    assert await asyncio.wait_for(second.wait(), 20) == 0
                finally:
                    if second.returncode is None:
                        second.kill()
                        await second.wait()
                return receiver.messages, pending, alert_events(state_file)

    messages, pending, events = asyncio.run(scenario())
    delivered = [m.notification_id for m in messages]
    assert set(pending) <= set(delivered), log.read_text()[-3000:]
    assert len(delivered) == len(set(delivered)), "each delivered once"
    assert titles(messages, ACCOUNT, "cushion") == [CRITICAL]
    fired = [e for e in events if e["rule"] == "cushion"]
    assert [e["kind"] for e in fired] == ["fired"], "the restart did not announce it again"
    assert {e["notification_id"] for e in events} == set(delivered)


# -- 6. a clean restart of the daemon during a breach -------------------------------------------


@pytest.mark.slow
def test_a_restart_during_a_breach_sends_nothing_new(simulated_gateway, tmp_path):
    """Stop and start the daemon (same state directory) while the cushion is critical: the
    new process resumes the stored alert states and sends nothing."""

    async def scenario() -> tuple[list[ReceivedMessage], list[ReceivedMessage], list[Any], Any]:
        with Receiver() as receiver:
            async with simulated_gateway("selloff") as gateway:
                settings = make_settings(tmp_path, gateway.port, [receiver.url])
                async with daemon(settings) as (service, _):
                    await gateway.wait_for_clients(1, timeout=10)
                    await breach(gateway, receiver)
                    await service.settle(timeout=5)
                before = receiver.messages
                await gateway.wait_for_clients(0, timeout=10)
                async with daemon(settings) as (service, recorder):
                    await gateway.wait_for_clients(1, timeout=10)
                    finding = await evaluated_with_data(service, recorder, ACCOUNT, 0)
                    mark = len(recorder.views)
                    await until(
                        lambda: len(recorder.since(mark, ACCOUNT, "cushion")) >= 3,
                        5,
                        "a few more evaluations",
                    )
                    await service.settle(timeout=5)
                    return before, receiver.messages, service.transitions, finding

    before, after, transitions, finding = asyncio.run(scenario())
    assert CRITICAL in [m.title for m in before]
    assert finding.severity == Severity.CRITICAL
    assert list(transitions) == []
    assert after == before


# -- 7. bad input ------------------------------------------------------------------------------


@pytest.mark.slow
def test_garbage_frames_do_not_crash_the_monitor(simulated_gateway, tmp_path):
    """Each kind of malformed frame (wrong field count, non-numeric number, truncated frame,
    unknown message id) mid-breach: no crash, no repeat, the monitor keeps working and
    still notices the recovery."""

    async def scenario() -> list[ReceivedMessage]:
        with Receiver() as receiver:
            async with simulated_gateway("selloff") as gateway:
                initial = dict(gateway.state.prices)
                settings = make_settings(tmp_path, gateway.port, [receiver.url])
                async with daemon(settings) as (service, recorder):
                    await gateway.wait_for_clients(1, timeout=10)
                    await breach(gateway, receiver)
                    for kind in GARBAGE_KINDS:
                        assert await gateway.send_garbage(kind) == 1
                        await gateway.wait_for_clients(1, timeout=10)
                        gateway.move_prices({"all": -0.001})  # something new to evaluate
                        mark = len(recorder.views)
                        finding = await evaluated_with_data(service, recorder, ACCOUNT, mark)
                        assert finding.severity == Severity.CRITICAL, kind
                    gateway.set_prices(initial)
                    await receiver.wait_until_async(has(RESOLVED), timeout=10)
                    await service.settle(timeout=5)
                    return receiver.messages

    messages = asyncio.run(scenario())
    assert titles(messages, ACCOUNT, "cushion") == [CRITICAL, RESOLVED]


@pytest.mark.parametrize(
    "values",
    [
        {"NetLiquidation": ""},
        {"NetLiquidation": "1.7976931348623157E308"},
        {"NetLiquidation": "NaN"},
        {"NetLiquidation": "0"},
        {"NetLiquidation": "-2500.00"},
        {"Cushion": "", "ExcessLiquidity": "", "EquityWithLoanValue": ""},
        {"Cushion": "nan", "ExcessLiquidity": "1.7976931348623157E308"},
    ],
    ids=["empty", "sentinel", "nan", "zero-nlv", "negative-nlv", "empty-el", "nan-el"],
)
@pytest.mark.slow
def test_missing_or_absurd_values_never_resolve_a_firing_alert(simulated_gateway, tmp_path, values):
    """While the cushion is critical, IB sends unusable values and prices recover: the
    finding says the data is missing and the alert holds; real values then resolve it once."""

    async def scenario() -> tuple[list[ReceivedMessage], list[Any]]:
        with Receiver() as receiver:
            async with simulated_gateway("selloff") as gateway:
                initial = dict(gateway.state.prices)
                settings = make_settings(tmp_path, gateway.port, [receiver.url])
                async with daemon(settings) as (service, recorder):
                    await gateway.wait_for_clients(1, timeout=10)
                    await breach(gateway, receiver)
                    gateway.set_values(ACCOUNT, values)
                    gateway.set_prices(initial)
                    mark = len(recorder.views)
                    await until(
                        lambda: len(recorder.since(mark, ACCOUNT, "cushion")) >= 4,
                        5,
                        "evaluations of the unusable values",
                    )
                    bad = recorder.since(mark, ACCOUNT, "cushion")[-1]
                    assert severity(service, ACCOUNT, "cushion") == Severity.CRITICAL
                    assert RESOLVED not in [m.title for m in receiver.messages]
                    gateway.clear_values(ACCOUNT)
                    await receiver.wait_until_async(has(RESOLVED), timeout=10)
                    await service.settle(timeout=5)
                    return receiver.messages, [bad]

    messages, (bad,) = asyncio.run(scenario())
    assert bad.data_missing and bad.severity == Severity.UNKNOWN
    assert "missing" in bad.message
    assert titles(messages, ACCOUNT, "cushion") == [CRITICAL, RESOLVED]


@pytest.mark.slow
def test_an_account_that_leaves_the_managed_list_holds_its_alerts(simulated_gateway, tmp_path):
    """DU1000001 disappears from managedAccounts (reconnect): its findings say the data is
    missing and its alert holds; when it comes back still breached nothing repeats, and the
    recovery is notified once."""

    async def scenario() -> tuple[list[ReceivedMessage], list[Any], list[str]]:
        with Receiver() as receiver:
            async with simulated_gateway("selloff") as gateway:
                initial = dict(gateway.state.prices)
                settings = make_settings(tmp_path, gateway.port, [receiver.url])
                async with daemon(settings) as (service, recorder):
                    await gateway.wait_for_clients(1, timeout=10)
                    await breach(gateway, receiver)

                    gateway.set_managed_accounts([QUIET])
                    await gateway.drop_clients()
                    await until(
                        lambda: (
                            service.connector.state.connected
                            and service.connector.accounts() == [QUIET]
                        ),
                        10,
                        "reconnected without the account",
                    )
                    mark = len(recorder.views)
                    await until(
                        lambda: len(recorder.since(mark, ACCOUNT, "cushion")) >= 2,
                        5,
                        "the missing account is still evaluated",
                    )
                    gone = recorder.since(mark, ACCOUNT, "cushion")
                    watched = service.connector.accounts()

                    gateway.set_managed_accounts(None)
                    await gateway.drop_clients()
                    await until(
                        lambda: ACCOUNT in service.connector.accounts(), 10, "the account is back"
                    )
                    mark = len(recorder.views)
                    back = await evaluated_with_data(service, recorder, ACCOUNT, mark)
                    assert back.severity == Severity.CRITICAL
                    gateway.set_prices(initial)
                    await receiver.wait_until_async(has(RESOLVED), timeout=10)
                    await service.settle(timeout=5)
                    return receiver.messages, gone, watched

    messages, gone, watched = asyncio.run(scenario())
    assert watched == [QUIET]
    assert all(f.data_missing and f.severity == Severity.UNKNOWN for f in gone)
    assert "not in the managed accounts list" in gone[-1].message
    assert titles(messages, ACCOUNT, "cushion") == [CRITICAL, RESOLVED]


# -- 10. the dead man's switch -----------------------------------------------------------------


@pytest.mark.slow
def test_the_heartbeat_starts_pings_while_healthy_and_fails_while_blind(
    simulated_gateway, tmp_path
):
    """``[notify] heartbeat_url`` the healthchecks.io way, to a real local receiver: ``/start``
    first, ``<url>`` every ``heartbeat_seconds`` while healthy, ``<url>/fail`` while the
    gateway is down, plain pings again once it is back."""

    async def scenario() -> list[str]:
        with Receiver() as pings:
            url = f"{pings.http_url}ping/0f1e2d3c-uuid"
            async with simulated_gateway("selloff") as gateway:
                settings = make_settings(
                    tmp_path,
                    gateway.port,
                    [],
                    notify={"heartbeat_url": url, "heartbeat_seconds": 0.05},
                )
                async with daemon(settings):
                    await gateway.wait_for_clients(1, timeout=10)
                    await pings.wait_for_pings_async(
                        lambda got: [p.signal for p in got].count("ok") >= 3, 10
                    )
                    await gateway.stop()
                    await pings.wait_for_pings_async(
                        lambda got: [p.signal for p in got].count("fail") >= 3, 10
                    )
                    await gateway.start()
                    await pings.wait_for_pings_async(
                        lambda got: [p.signal for p in got][-3:] == ["ok"] * 3, 10
                    )
            assert all(p.path.startswith("/ping/0f1e2d3c-uuid") for p in pings.pings)
            return [p.signal for p in pings.pings]

    signals = asyncio.run(scenario())
    assert signals[0] == "start" and signals.count("start") == 1
    first_fail = signals.index("fail")
    last_fail = len(signals) - 1 - signals[::-1].index("fail")
    assert signals[1:first_fail].count("ok") >= 3, "pinged while healthy"
    # While blind: /fail only (one ping at a time, so they arrive in the order judged).
    assert signals[first_fail : last_fail + 1].count("ok") == 0
    assert signals[last_fail + 1 :].count("ok") >= 3
