"""The Grafana dashboard in ``deploy/`` asks only for series the monitor exports.

The real daemon runs on the simulated gateway (a sell-off, so alerts fire and notifications
are counted) with its metrics endpoint on; its ``/metrics`` is scraped over loopback and every
metric name in every PromQL expression of the dashboard (panels and template variables) must be
one of the scrape's series, by the names each family's type gives it (a counter's ``_total``,
a histogram's ``_bucket``/``_sum``/``_count``, an info's ``_info``).
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import daemon, free_port, make_settings

from monitor.sim.receiver import Receiver

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"
#: A metric name in PromQL: the monitor's prefix and what follows (functions, labels and
#: keywords never start with it).
METRIC = re.compile(r"\bmargin_monitor_[a-zA-Z0-9_]+")
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "info": ("_info",),
    "gauge": ("",),
}


def expressions(node: Any) -> Iterator[str]:
    """Every PromQL text of a dashboard: each ``expr``, each variable's query."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, str | dict):
                yield value if isinstance(value, str) else str(value.get("query", ""))
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def exported_names(text: str) -> tuple[set[str], set[str]]:
    """The series names a scrape declares (by each family's type) and those with samples."""
    declared, sampled = set(), set()
    for family in text_string_to_metric_families(text):
        declared.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        sampled.update(sample.name for sample in family.samples)
    return declared, sampled


@pytest.mark.slow
def test_every_dashboard_query_names_an_exported_series(simulated_gateway, tmp_path):
    """Scrape a running monitor; match every metric name of every dashboard query."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [text for text in expressions(dashboard) if METRIC.search(text)]
    assert len(queries) >= 15, "the dashboard's panels and its account variable"
    port = free_port()

    async def scenario() -> str:
        with Receiver() as receiver:
            async with simulated_gateway("selloff") as gateway:
                settings = make_settings(
                    tmp_path, gateway.port, [receiver.url], metrics={"port": port}
                )
                async with daemon(settings) as (service, _):
                    await gateway.wait_for_clients(1, timeout=10)
                    gateway.move_prices({"all": -0.32})
                    await receiver.wait_for_async(1, timeout=15)
                    await service.settle(timeout=10)
                    url = f"http://127.0.0.1:{port}/metrics"
                    return await asyncio.to_thread(
                        lambda: urllib.request.urlopen(url, timeout=5).read().decode()
                    )

    declared, sampled = exported_names(asyncio.run(scenario()))
    named = {name for text in queries for name in METRIC.findall(text)}
    assert named - declared == set(), "the dashboard asks for series the monitor does not export"
    # Not only declared: the series a monitor on a live gateway always has are there.
    for name in (
        "margin_monitor_cushion_ratio",
        "margin_monitor_last_update_timestamp_seconds",
        "margin_monitor_notifications_total",
        "margin_monitor_reconnects_total",
        "margin_monitor_outbox_pending",
        "margin_monitor_build_info",
        "margin_monitor_evaluation_duration_seconds_bucket",
    ):
        assert name in sampled and name in named, name
