"""The Prometheus endpoint and /healthz, scraped over 127.0.0.1 with urllib.

The service is real (built by ``monitor.app`` on a SQLite file in tmp_path, its notifier posting
to a local ``Receiver``) but not run: the account's last evaluation is set by hand as an
``AccountView``, the gateway link is described through the connector's state, and time is an
injected clock, so "stale" is reached by moving the clock, not by waiting.
"""

from __future__ import annotations

import asyncio
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import free_port, until

from monitor.app import build_daemon, build_service
from monitor.metrics import MetricsServer
from monitor.notifier import Notification
from monitor.service import AccountView, MonitorService
from monitor.settings import load_settings
from monitor.sim.receiver import Receiver
from rules.model import AccountSnapshot, Position

T0 = datetime(2026, 6, 15, 18, 0, tzinfo=UTC)
ACCOUNT = "DU123"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """No MARGIN_MONITOR_* variable from the developer's shell changes the settings."""
    for name in list(os.environ):
        if name.startswith("MARGIN_MONITOR_"):
            monkeypatch.delenv(name)


class Clock:
    """A wall clock the test moves by hand, and the monotonic clock that moves with it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return 1_000.0 + (self.now - T0).total_seconds()


def snapshot() -> AccountSnapshot:
    """NLV 450,000, EL 170,000, GPV 700,000: cushion 37.8%, leverage 1.556x."""
    return AccountSnapshot(
        account=ACCOUNT,
        base_currency="USD",
        as_of=T0,
        net_liquidation=450_000.0,
        equity_with_loan=450_000.0,
        gross_position_value=700_000.0,
        maint_margin_req=280_000.0,
        excess_liquidity=170_000.0,
        cushion=170_000.0 / 450_000.0,
        cash_balance=-250_000.0,
        positions=(Position("VOO", 1, "STK", 700.0, "USD", 1_000.0, 700_000.0, 700_000.0),),
    )


def make_service(tmp_path: Path, receiver: Receiver, clock: Clock) -> MonitorService:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[monitor]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[notify]\nurls = ["{receiver.url}"]\nreminder_critical_minutes = 0\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    return build_service(load_settings(config), clock=clock, monotonic=clock.monotonic)


def run_on_a_service(
    tmp_path: Path,
    body: Callable[[MonitorService, Receiver, Clock], Coroutine[Any, Any, None]],
) -> None:
    """Run ``body`` on a service built by :func:`make_service` beside a local receiver, on a
    clock at T0, and close the service's state file after."""
    clock = Clock(T0)
    with Receiver() as receiver:
        service = make_service(tmp_path, receiver, clock)
        try:
            asyncio.run(body(service, receiver, clock))
        finally:
            service.store.close()


def link_up(service: MonitorService, clock: Clock, last_values: datetime) -> None:
    """What the connector records once connected and IB has pushed values for the account."""
    connector = service.connector
    connector.state.connected = True
    connector.state.live = True
    connector.state.disconnected_since = None
    connector._accounts = [ACCOUNT]
    values_arrive(service, clock, last_values)


def values_arrive(service: MonitorService, clock: Clock, at: datetime) -> None:
    """IB pushed the account's values at ``at``; the link has been read just now (a probe)."""
    connector = service.connector
    connector._last_values[ACCOUNT] = at
    connector._values_seen[ACCOUNT] = clock.monotonic() - (clock.now - at).total_seconds()
    connector._last_read = clock.monotonic()


def get(url: str) -> tuple[int, str]:
    """HTTP GET (blocking; run it in a thread): status and body."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape keyed by (name, labels), parsed by prometheus_client."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: dict, name: str, **labels: str) -> float:
    return scrape[(name, frozenset(labels.items()))]


async def serving(
    service: MonitorService, host: str
) -> tuple[MetricsServer, asyncio.Event, asyncio.Task]:
    """The service's endpoint bound to a free port of ``host``, served until the event is set."""
    server = MetricsServer(service.metrics, service.healthy, host, 0)
    await server.start()
    stop = asyncio.Event()
    return server, stop, asyncio.create_task(server.serve(stop))


def test_the_endpoint_binds_loopback_by_default():
    """``[metrics] host`` defaults to 127.0.0.1 and the port is off until configured."""
    settings = load_settings(None)
    assert settings.metrics.host == "127.0.0.1"
    assert settings.metrics.port is None


def test_metrics_and_health_over_loopback(tmp_path):
    """The listed series with their values; /healthz follows freshness and the link."""
    run_on_a_service(tmp_path, scenario)


async def scenario(service: MonitorService, receiver: Receiver, clock: Clock) -> None:
    # One real evaluation (the gateway has sent nothing, so its findings say "no data") for
    # the duration histogram; then the view the series are read from.
    await service.evaluate_account(ACCOUNT)
    service.views[ACCOUNT] = AccountView(snapshot(), [], T0)
    link_up(service, clock, last_values=T0 - timedelta(minutes=2))

    # Notifications counted by severity and result: one delivered, one refused by the target.
    note = Notification("n1", ACCOUNT, "cushion", "warning", "fired", "t", "b", T0)
    await service.notifier.submit(note)
    receiver.fail_next(1)
    await service.notifier.submit(
        Notification("n2", ACCOUNT, "cushion", "critical", "fired", "t", "b", T0)
    )

    host = service.settings.metrics.host
    server, stop, task = await serving(service, host)
    base = f"http://127.0.0.1:{server.port}"
    try:
        status, text = await asyncio.to_thread(get, base + "/metrics")
        assert status == 200
        scrape = samples(text)
        usd = {"account": ACCOUNT, "currency": "USD"}
        assert value(scrape, "margin_monitor_net_liquidation", **usd) == 450_000
        assert value(scrape, "margin_monitor_excess_liquidity", **usd) == 170_000
        assert value(scrape, "margin_monitor_cushion_ratio", **usd) == pytest.approx(170 / 450)
        assert value(scrape, "margin_monitor_leverage_ratio", **usd) == pytest.approx(700 / 450)
        assert value(scrape, "margin_monitor_estimated", account=ACCOUNT) == 0
        assert value(scrape, "margin_monitor_last_update_age_seconds", account=ACCOUNT) == 120
        assert value(scrape, "margin_monitor_connected") == 1
        assert value(scrape, "margin_monitor_data_live") == 1
        assert value(scrape, "margin_monitor_healthy") == 1
        sent = {"severity": "warning", "result": "sent"}
        failed = {"severity": "critical", "result": "failed"}
        assert value(scrape, "margin_monitor_notifications_total", **sent) == 1
        assert value(scrape, "margin_monitor_notifications_total", **failed) == 1
        assert value(scrape, "margin_monitor_evaluation_duration_seconds_count") == 1
        assert value(scrape, "margin_monitor_evaluation_duration_seconds_sum") >= 0
        assert len(receiver.messages) == 1 and receiver.rejected == 1

        assert await asyncio.to_thread(get, base + "/healthz") == (200, "ok\n")

        # Ten minutes is the stale limit: at 11 minutes since IB's last values, unhealthy.
        clock.now = T0 + timedelta(minutes=9)
        status, _ = await asyncio.to_thread(get, base + "/healthz")
        assert status == 503
        scrape = samples((await asyncio.to_thread(get, base + "/metrics"))[1])
        assert value(scrape, "margin_monitor_last_update_age_seconds", account=ACCOUNT) == 660
        assert value(scrape, "margin_monitor_healthy") == 0

        # Fresh values again: healthy; then the gateway link drops: unhealthy at once.
        values_arrive(service, clock, clock.now)
        assert (await asyncio.to_thread(get, base + "/healthz"))[0] == 200
        service.connector.state.connected = False
        service.connector.state.live = False
        assert (await asyncio.to_thread(get, base + "/healthz"))[0] == 503
        scrape = samples((await asyncio.to_thread(get, base + "/metrics"))[1])
        assert value(scrape, "margin_monitor_connected") == 0
        assert value(scrape, "margin_monitor_data_live") == 0

        # Connected but IB lost its own connection (error 1100): not live, not healthy.
        service.connector.state.connected = True
        assert (await asyncio.to_thread(get, base + "/healthz"))[0] == 503

        assert (await asyncio.to_thread(get, base + "/nothing-here"))[0] == 404
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def test_a_malformed_client_does_not_stop_the_endpoint(tmp_path):
    """A request line far over the size limit, or a client that hangs up, gets dropped; a
    failing collector gets a 500; the next scrape is served."""
    run_on_a_service(tmp_path, lambda service, receiver, clock: malformed(service))


async def malformed(service: MonitorService) -> None:
    server, stop, task = await serving(service, "127.0.0.1")
    port = server.port
    try:

        def abuse() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(b"GET /" + b"x" * 100_000 + b" HTTP/1.0\r\n\r\n")
                chunks = []
                try:
                    while chunk := client.recv(4096):
                        chunks.append(chunk)
                except ConnectionResetError:
                    pass
                return b"".join(chunks)

        assert await asyncio.to_thread(abuse) == b""  # no answer, connection closed

        def hang_up() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(b"GET /metrics HTTP/1.0\r\n")

        await asyncio.to_thread(hang_up)
        status, text = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "margin_monitor_connected" in text

        # A collector that fails (here: a corrupt view) answers 500; the endpoint lives on.
        service.connector._accounts = ["DU666"]
        service.views["DU666"] = "not a view"  # type: ignore[assignment]
        assert (await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics"))[0] == 500
        del service.views["DU666"]
        assert (await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics"))[0] == 200
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def test_the_daemon_serves_the_endpoint_while_it_runs(tmp_path):
    """With ``[metrics] port`` set, the daemon built by ``monitor.app`` answers /metrics and
    /healthz on it while it runs (503: no gateway answers, so nothing is fresh) and stops
    listening when it stops."""
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f"[ib]\nport = {free_port()}\ntimeout = 1\n"
        f'[monitor]\nstate_dir = "{tmp_path / "state"}"\n'
        f"[metrics]\nport = {port}\n[summary]\nenabled = false\n",
        encoding="utf-8",
    )
    base = f"http://127.0.0.1:{port}"

    async def scenario() -> tuple[int, str, int]:
        stop = asyncio.Event()
        daemon = build_daemon(load_settings(config))
        task = asyncio.create_task(daemon.run(stop))
        assert daemon.metrics_server is not None
        server = daemon.metrics_server
        await until(lambda: server.listening, 5, "the endpoint listens")
        status, text = await asyncio.to_thread(get, base + "/metrics")
        health, _ = await asyncio.to_thread(get, base + "/healthz")
        stop.set()
        assert await asyncio.wait_for(task, 15) == 0
        assert not server.listening
        return status, text, health

    status, text, health = asyncio.run(scenario())
    assert status == 200
    assert value(samples(text), "margin_monitor_connected") == 0
    assert health == 503
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_prometheus_conventions_and_openmetrics(tmp_path):
    """Counters end in ``_total`` (reconnections too), no ``_created`` series, the outbox's
    pending rows, ``build_info``, IB's last update as a timestamp in seconds; an account that
    left the managed list takes its series along (an open alert on it stays); a scrape that
    asks for OpenMetrics gets it."""
    run_on_a_service(tmp_path, conventions)


def get_as(url: str, accept: str) -> tuple[str, str]:
    """HTTP GET with an ``Accept`` header: the content type and body."""
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.headers["Content-Type"], response.read().decode()


async def conventions(service: MonitorService, receiver: Receiver, clock: Clock) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

    from rules.lifecycle import AlertState
    from rules.model import Severity

    service.views[ACCOUNT] = AccountView(snapshot(), [], T0)
    service.views["DU999"] = AccountView(replace(snapshot(), account="DU999"), [], T0)
    link_up(service, clock, last_values=T0 - timedelta(minutes=2))
    service.connector.state.reconnects = 3
    for account, severity in ((ACCOUNT, Severity.OK), ("DU999", Severity.OK)):
        service.states[(account, "cushion")] = AlertState(account, "cushion", severity)
    service.states[("DU998", "cushion")] = AlertState("DU998", "cushion", Severity.CRITICAL)
    receiver.set_failing(True)  # a row stays pending in the outbox
    service.notifier.enqueue(
        Notification("n1", ACCOUNT, "cushion", "warning", "fired", "t", "b", T0)
    )

    server, stop, task = await serving(service, "127.0.0.1")
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        kind, text = await asyncio.to_thread(get_as, url, "text/plain")
        assert kind.startswith("text/plain")
        scrape = samples(text)
        names = {name for name, _ in scrape}
        assert not [name for name in names if name.endswith("_created")]
        assert "margin_monitor_reconnects" not in names
        assert value(scrape, "margin_monitor_reconnects_total") == 3
        assert value(scrape, "margin_monitor_outbox_pending") == 1
        assert (
            value(scrape, "margin_monitor_last_update_timestamp_seconds", account=ACCOUNT)
            == (T0 - timedelta(minutes=2)).timestamp()
        )
        build = [labels for name, labels in scrape if name == "margin_monitor_build_info"]
        assert len(build) == 1
        assert {key for key, _ in build[0]} == {"version", "python", "ib_async"}
        # DU999 is not managed (only DU123 is): its figures and its "ok" alert level are gone;
        # DU998 left with a critical alert open, which stays visible.
        assert not [labels for _, labels in scrape if ("account", "DU999") in labels]
        assert value(scrape, "margin_monitor_alert_severity", account="DU998", rule="cushion") == 2
        assert value(scrape, "margin_monitor_net_liquidation", account=ACCOUNT, currency="USD")

        kind, text = await asyncio.to_thread(get_as, url, "application/openmetrics-text")
        assert kind.startswith("application/openmetrics-text")
        assert text.rstrip().endswith("# EOF")
        families = {family.name: family for family in om_parse(text)}
        assert families["margin_monitor_reconnects"].type == "counter"
        assert families["margin_monitor_build"].type == "info"
        assert families["margin_monitor_notifications"].type == "counter"
        assert "_created" not in text
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
