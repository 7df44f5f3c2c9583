"""Prometheus metrics and a health endpoint, served from the event loop on 127.0.0.1.

``/metrics`` exposes the last evaluated figures per account, when IB last updated them (a
timestamp in seconds, and its age), the connection state, reconnections, notifications by
severity and result, the outbox's pending rows, evaluation duration, the estimate's error and
a ``build_info``, by Prometheus conventions: counters end in ``_total``, no ``_created``
series, units in the name; the series of an account that left the managed list go with it
(its alert levels stay while an alert on it is open). A scrape asking for OpenMetrics (``Accept:
application/openmetrics-text``) gets that exposition, any other the classic text format.
``/healthz`` answers 200 only while the monitor is reading the gateway and the data is
fresh (503 otherwise: disconnected, a wedged link, values older than the stale limit), so a
container orchestrator or an uptime checker can tell a blind or deaf monitor from a healthy one.
The ``healthy`` gauge says the same.

The collector reads a :class:`MetricsSource` at scrape time: the service provides one, but this
module knows it only by that protocol (the service imports this module, not the reverse).
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Protocol

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from monitor import DISTRIBUTION, installed_version
from rules.lifecycle import AlertState
from rules.model import AccountSnapshot

PREFIX = "margin_monitor"
log = structlog.get_logger("monitor.metrics")


class _View(Protocol):
    @property
    def snapshot(self) -> AccountSnapshot | None: ...


class _Link(Protocol):
    @property
    def connected(self) -> bool: ...
    @property
    def live(self) -> bool: ...
    @property
    def reconnects(self) -> int: ...


class _Connector(Protocol):
    @property
    def state(self) -> _Link: ...
    def values_age(self, account: str) -> float | None: ...
    def last_values_at(self, account: str) -> datetime | None: ...
    def accounts(self) -> list[str]: ...
    @property
    def link_account(self) -> str: ...


class MetricsSource(Protocol):
    """What the collector reads at scrape time (``monitor.service.MonitorService``)."""

    @property
    def views(self) -> Mapping[str, _View]: ...
    @property
    def estimate_errors(self) -> Mapping[str, float]: ...
    @property
    def states(self) -> Mapping[tuple[str, str], AlertState]: ...
    @property
    def connector(self) -> _Connector: ...
    def clock(self) -> datetime: ...
    def healthy(self) -> bool: ...
    def outbox_pending(self) -> int | None: ...


def build_labels() -> dict[str, str]:
    """``build_info``'s labels: the monitor's version, Python's and ib_async's (read from the
    installed distributions' metadata, without importing anything)."""

    return {
        "version": installed_version(DISTRIBUTION),
        "python": platform.python_version(),
        "ib_async": installed_version("ib_async"),
    }


class Metrics:
    """The service's metrics on a private registry (one per service, so tests stay apart)."""

    def __init__(self) -> None:
        disable_created_metrics()  # before any metric exists: no ``*_created`` series
        self.registry = CollectorRegistry(auto_describe=True)
        self.notifications = Counter(
            f"{PREFIX}_notifications",
            "Notification delivery attempts by severity and result",
            ["severity", "result"],
            registry=self.registry,
        )
        self.evaluation_seconds = Histogram(
            f"{PREFIX}_evaluation_duration_seconds",
            "Time to evaluate the rules on one account",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )

    def count_notification(self, severity: str, result: str) -> None:
        """One delivery attempt's outcome (the notifier's ``on_result`` hook)."""
        self.notifications.labels(severity, result).inc()

    def attach(self, source: MetricsSource) -> None:
        """Register the collector that reads ``source`` at scrape time."""
        self.registry.register(_SourceCollector(source))

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition the ``Accept`` header asks for (OpenMetrics or the classic text
        format) and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


class _SourceCollector(Collector):
    def __init__(self, source: MetricsSource) -> None:
        self.source = source
        self.build = build_labels()

    def collect(self) -> Iterator[Metric]:
        service = self.source
        connector = service.connector
        families = {
            "net_liquidation": GaugeMetricFamily(
                f"{PREFIX}_net_liquidation",
                "Net liquidation value (base currency)",
                labels=["account", "currency"],
            ),
            "excess_liquidity": GaugeMetricFamily(
                f"{PREFIX}_excess_liquidity",
                "Excess liquidity (base currency)",
                labels=["account", "currency"],
            ),
            "cushion": GaugeMetricFamily(
                f"{PREFIX}_cushion_ratio",
                "Excess liquidity / net liquidation",
                labels=["account", "currency"],
            ),
            "leverage": GaugeMetricFamily(
                f"{PREFIX}_leverage_ratio",
                "Gross position value / net liquidation",
                labels=["account", "currency"],
            ),
        }
        estimated = GaugeMetricFamily(
            f"{PREFIX}_estimated",
            "1 when the figures are an estimate between IB updates",
            labels=["account"],
        )
        stamp = GaugeMetricFamily(
            f"{PREFIX}_last_update_timestamp_seconds",
            "When IB last pushed account values (Unix time)",
            labels=["account"],
        )
        age = GaugeMetricFamily(
            f"{PREFIX}_last_update_age_seconds",
            "Seconds since IB last pushed account values",
            labels=["account"],
        )
        error = GaugeMetricFamily(
            f"{PREFIX}_estimate_error_ratio",
            "Last (estimated - reported) excess liquidity, as a fraction of NLV",
            labels=["account"],
        )
        severity = GaugeMetricFamily(
            f"{PREFIX}_alert_severity",
            "Current alert level per rule (0 ok, 1 warning, 2 critical)",
            labels=["account", "rule"],
        )
        managed = set(connector.accounts())
        for account, view in list(service.views.items()):
            if account not in managed:
                continue  # an account that left: its figures go with it
            snapshot = view.snapshot
            if snapshot is not None:
                values = {
                    "net_liquidation": snapshot.net_liquidation,
                    "excess_liquidity": snapshot.excess_liquidity,
                    "cushion": snapshot.measured_cushion,
                    "leverage": snapshot.leverage,
                }
                for name, value in values.items():
                    if value is not None:
                        families[name].add_metric([account, snapshot.base_currency], value)
                estimated.add_metric([account], 1.0 if snapshot.estimated else 0.0)
            seconds = connector.values_age(account)
            if seconds is not None:
                age.add_metric([account], seconds)
            at = connector.last_values_at(account)
            if at is not None:
                stamp.add_metric([account], at.timestamp())
        for account, value in list(service.estimate_errors.items()):
            if account in managed:
                error.add_metric([account], value)
        levels = {"ok": 0.0, "unknown": 0.0, "warning": 1.0, "critical": 2.0}
        for (account, rule), state in list(service.states.items()):
            level = levels.get(str(state.severity), 0.0)
            if account in managed or account == connector.link_account or level:
                severity.add_metric([account, rule], level)
        link = connector.state
        connected = GaugeMetricFamily(f"{PREFIX}_connected", "1 while connected to the gateway")
        connected.add_metric([], 1.0 if link.connected else 0.0)
        live = GaugeMetricFamily(f"{PREFIX}_data_live", "0 after IB error 1100 until restored")
        live.add_metric([], 1.0 if link.connected and link.live else 0.0)
        reconnects = CounterMetricFamily(
            f"{PREFIX}_reconnects", "Reconnection attempts to the gateway since start"
        )
        reconnects.add_metric([], float(link.reconnects))
        healthy = GaugeMetricFamily(
            f"{PREFIX}_healthy", "1 while the gateway is being read and the data is fresh"
        )
        healthy.add_metric([], 1.0 if service.healthy() else 0.0)
        yield from families.values()
        yield from (estimated, stamp, age, error, severity, connected, live, reconnects, healthy)
        pending = service.outbox_pending()
        if pending is not None:  # None: the state file cannot be read now
            outbox = GaugeMetricFamily(
                f"{PREFIX}_outbox_pending",
                "Notifications (one per target) waiting in the outbox for delivery",
            )
            outbox.add_metric([], float(pending))
            yield outbox
        yield InfoMetricFamily(
            f"{PREFIX}_build", "The monitor's version, Python's and ib_async's", value=self.build
        )


REQUEST_TIMEOUT = 5.0
MAX_LINE = 8192
MAX_HEADERS = 100


class MetricsServer:
    """``/metrics`` and ``/healthz`` over HTTP/1.0, one request per connection.

    ``host`` should stay ``127.0.0.1`` (the default of ``[metrics] host``) unless something
    else must scrape it, e.g. inside a container whose port is published on loopback only.
    ``port`` 0 picks a free port; the bound one is in :attr:`port` after :meth:`start`. A slow
    or malformed client gets no answer and never disturbs the loop.
    """

    def __init__(
        self, metrics: Metrics, healthy: Callable[[], bool], host: str, port: int
    ) -> None:
        self.metrics = metrics
        self.healthy = healthy
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    @property
    def listening(self) -> bool:
        """True from :meth:`start` to :meth:`close`."""
        return self._server is not None

    @property
    def url(self) -> str:
        """Where the metrics are served, for the start-up log."""
        return f"http://{self.host}:{self.port}/metrics"

    async def start(self) -> None:
        """Bind and start accepting (an ``OSError`` when the port cannot be bound)."""
        server = await asyncio.start_server(self._handle, self.host, self.port, limit=MAX_LINE)
        self._server = server
        self.port = server.sockets[0].getsockname()[1]

    async def serve(self, stop: asyncio.Event) -> None:
        """Start (unless started) and serve until ``stop`` is set, then close."""
        if self._server is None:
            await self.start()
        try:
            await stop.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            path, accept = await asyncio.wait_for(_read_request(reader), REQUEST_TIMEOUT)
            try:
                status, body, kind = self._route(path, accept)
            except Exception:  # a scrape must never take the endpoint (or the loop) down
                log.exception("metrics request failed", path=path)
                status, body, kind = "500 Internal Server Error", b"error\n", "text/plain"
            header = (
                f"HTTP/1.0 {status}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(header.encode() + body)
            await writer.drain()
        except (
            TimeoutError,
            ConnectionError,
            UnicodeError,
            ValueError,
            asyncio.IncompleteReadError,
        ):
            pass  # a client that is too slow, too big or gone: drop it
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _route(self, path: str, accept: str = "") -> tuple[str, bytes, str]:
        if path == "/metrics":
            body, kind = self.metrics.render(accept)
            return "200 OK", body, kind
        if path == "/healthz":
            if self.healthy():
                return "200 OK", b"ok\n", "text/plain"
            return "503 Service Unavailable", b"not reading fresh data\n", "text/plain"
        return "404 Not Found", b"not found\n", "text/plain"


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """The path of one HTTP request and its ``Accept`` header (the other headers read and
    ignored, bounded in count and size)."""
    request = await reader.readline()
    accept = ""
    for _ in range(MAX_HEADERS):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "accept":
            accept = value.strip()
    else:
        raise ValueError("too many header lines")
    parts = request.decode("latin-1").split()
    return (parts[1].split("?", 1)[0] if len(parts) >= 2 else "/"), accept
