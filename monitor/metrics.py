"""Prometheus metrics and a health endpoint, served from the event loop on 127.0.0.1.

``/metrics`` exposes the last evaluated figures per account, the age of IB's last update, the
connection state, notifications by severity and result, evaluation duration and the estimate's
error; ``/healthz`` answers 200 only while the data is fresh (503 otherwise), so a container
orchestrator or an uptime checker can tell a blind monitor from a healthy one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from monitor.service import MonitorService

PREFIX = "margin_monitor"
log = structlog.get_logger("monitor.metrics")


class Metrics:
    """The service's metrics on a private registry (one per service, so tests stay apart)."""

    def __init__(self) -> None:
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

    def attach(self, service: MonitorService) -> None:
        """Register the collector that reads the service's state at scrape time."""
        self.registry.register(_ServiceCollector(service))

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)


class _ServiceCollector(Collector):
    def __init__(self, service: MonitorService) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        service = self.service
        now = service.clock()
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
        for account, view in list(service.views.items()):
            snapshot = view.snapshot
            if snapshot is not None:
                values = {
                    "net_liquidation": snapshot.net_liquidation,
                    "excess_liquidity": snapshot.excess_liquidity,
                    "cushion": snapshot.cushion,
                    "leverage": snapshot.leverage,
                }
                for name, value in values.items():
                    if value is not None:
                        families[name].add_metric([account, snapshot.base_currency], value)
                estimated.add_metric([account], 1.0 if snapshot.estimated else 0.0)
            seen = service.connector.last_values_at(account)
            if seen is not None:
                age.add_metric([account], max(0.0, (now - seen).total_seconds()))
        for account, value in list(service.estimate_errors.items()):
            error.add_metric([account], value)
        levels = {"ok": 0.0, "unknown": 0.0, "warning": 1.0, "critical": 2.0}
        for (account, rule), state in list(service.states.items()):
            severity.add_metric([account, rule], levels.get(str(state.severity), 0.0))
        link = service.connector.state
        connected = GaugeMetricFamily(f"{PREFIX}_connected", "1 while connected to the gateway")
        connected.add_metric([], 1.0 if link.connected else 0.0)
        live = GaugeMetricFamily(f"{PREFIX}_data_live", "0 after IB error 1100 until restored")
        live.add_metric([], 1.0 if link.connected and link.live else 0.0)
        reconnects = GaugeMetricFamily(f"{PREFIX}_reconnects", "Reconnection attempts since start")
        reconnects.add_metric([], float(link.reconnects))
        healthy = GaugeMetricFamily(f"{PREFIX}_healthy", "1 while data is fresh")
        healthy.add_metric([], 1.0 if service.healthy() else 0.0)
        yield from families.values()
        yield from (estimated, age, error, severity, connected, live, reconnects, healthy)


async def serve_metrics(
    service: MonitorService,
    host: str,
    port: int,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve ``/metrics`` and ``/healthz`` until ``stop`` is set (HTTP/1.0, one request each).

    ``host`` should stay ``127.0.0.1`` (the default of ``[metrics] host``) unless something
    else must scrape it, e.g. inside a container whose port is published on loopback only.
    ``port`` 0 picks a free port; the bound one is in ``service.metrics_port`` once ``ready``
    is set. A slow or malformed client gets no answer and never disturbs the loop.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            path = await asyncio.wait_for(_read_request(reader), REQUEST_TIMEOUT)
            try:
                status, body, kind = _route(service, path)
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

    server = await asyncio.start_server(handle, host, port, limit=MAX_LINE)
    service.metrics_port = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready.set()
    async with server:
        await stop.wait()


REQUEST_TIMEOUT = 5.0
MAX_LINE = 8192
MAX_HEADERS = 100


async def _read_request(reader: asyncio.StreamReader) -> str:
    """The path of one HTTP request (headers read and ignored, bounded in count and size)."""
    request = await reader.readline()
    for _ in range(MAX_HEADERS):
        if (await reader.readline()) in (b"\r\n", b"\n", b""):
            break
    else:
        raise ValueError("too many header lines")
    parts = request.decode("latin-1").split()
    return parts[1].split("?", 1)[0] if len(parts) >= 2 else "/"


def _route(service: MonitorService, path: str) -> tuple[str, bytes, str]:
    if path == "/metrics":
        return "200 OK", service.metrics.render(), "text/plain; version=0.0.4; charset=utf-8"
    if path == "/healthz":
        if service.healthy():
            return "200 OK", b"ok\n", "text/plain"
        return "503 Service Unavailable", b"stale or disconnected\n", "text/plain"
    return "404 Not Found", b"not found\n", "text/plain"


def describe(service: Any) -> str:
    """Where the endpoint listens, for the start-up log."""
    port = getattr(service, "metrics_port", None)
    return f"http://{service.settings.metrics.host}:{port}/metrics" if port else "off"
