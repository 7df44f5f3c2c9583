"""The heartbeat the healthchecks.io way, against a real local receiver on 127.0.0.1.

- A heartbeat URL that is not http(s) stops ``run`` and ``config validate`` at once: one
  message naming ``notify.heartbeat_url``, exit 2, the URL itself not repeated.
- ``notify-test`` pings the URL (the plain ping) beside the test notification.
- A heartbeat endpoint that holds every ping unanswered never delays an alert: the daemon on
  the simulated gateway delivers the critical alert while a ping is held, logs the failing
  heartbeat once, and stops within seconds.

``/start``, the pings while healthy and ``/fail`` while blind are tested in
``test_reliability.py``.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from support import daemon, make_settings, margin_monitor, write_config

from monitor.heartbeat import ping_url, shown_url
from monitor.sim.receiver import Receiver

UUID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"


def test_ping_addresses_and_how_the_url_is_shown():
    """The suffix goes at the end of the path, before a query; the log shows the host only."""
    url = f"https://user:pw@hc-ping.com/{UUID}?rid=1"
    assert ping_url(url, "start") == f"https://user:pw@hc-ping.com/{UUID}/start?rid=1"
    assert ping_url(f"https://hc-ping.com/{UUID}/", "fail") == f"https://hc-ping.com/{UUID}/fail"
    assert ping_url(url, "ok") == url
    assert shown_url(url) == "https://hc-ping.com/***"
    assert shown_url("http://127.0.0.1:8000/ping/x") == "http://127.0.0.1:8000/***"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("url", "said"),
    [
        (f"ftp://hc.example/{UUID}", "must be an http:// or https:// URL"),
        (f"hc-ping.com/{UUID}", "must be an http:// or https:// URL"),
        (f"https:///{UUID}", "has no host"),
    ],
)
def test_a_heartbeat_url_that_is_not_http_is_a_configuration_error(tmp_path, url, said):
    """``run`` and ``config validate``: exit 2, the key and the fix, no traceback, no URL."""
    config = write_config(tmp_path, 4002, ["json://127.0.0.1:9/"], notify={"heartbeat_url": url})
    for command in (["run"], ["config", "validate"]):
        result = margin_monitor(*command, "--config", str(config), timeout=60)
        assert result.returncode == 2, result.stderr
        assert "notify.heartbeat_url" in result.stderr and said in result.stderr
        assert UUID not in result.stderr + result.stdout
        assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_notify_test_pings_the_heartbeat(tmp_path):
    """One plain ping reaches the receiver; the line shows the host, not the uuid."""
    with Receiver() as receiver, Receiver() as pings:
        config = write_config(
            tmp_path,
            4002,
            [receiver.url],
            notify={"heartbeat_url": f"{pings.http_url}ping/{UUID}"},
        )
        result = margin_monitor("notify-test", "--config", str(config), timeout=60)
        assert result.returncode == 0, result.stderr
        assert [(p.method, p.path) for p in pings.pings] == [("GET", f"/ping/{UUID}")]
        assert len(receiver.messages) == 1
        assert f"heartbeat            ok (http://127.0.0.1:{pings.port}/***)" in result.stdout
    assert UUID not in result.stdout + result.stderr

    with Receiver(behaviour="fail") as pings:  # a refusing switch: exit 1, said in one line
        config = write_config(
            tmp_path, 4002, [], notify={"heartbeat_url": f"{pings.http_url}ping/{UUID}"}
        )
        result = margin_monitor("notify-test", "--config", str(config), timeout=60)
    assert result.returncode == 1
    assert "heartbeat            FAILED: HTTP 500" in result.stdout


@pytest.mark.slow
def test_a_hanging_heartbeat_never_delays_an_alert(simulated_gateway, tmp_path):
    """Every ping held unanswered: the critical alert is delivered meanwhile, no second ping
    piles up behind the held one (every 0.05 s asked), and the daemon stops at once."""

    async def scenario() -> tuple[int, int, float]:
        with Receiver() as receiver, Receiver(behaviour="hang", hang_limit=20) as pings:
            async with simulated_gateway("selloff") as gateway:
                settings = make_settings(
                    tmp_path,
                    gateway.port,
                    [receiver.url],
                    notify={
                        "heartbeat_url": f"{pings.http_url}ping/{UUID}",
                        "heartbeat_seconds": 0.05,
                    },
                )
                async with daemon(settings):
                    await gateway.wait_for_clients(1, timeout=10)
                    await asyncio.to_thread(pings.wait_for_counters, lambda r: r.held >= 1, 10)
                    gateway.move_prices({"all": -0.32})
                    await receiver.wait_until_async(
                        lambda got: any(m.title.startswith("[CRITICAL]") for m in got), 10
                    )
                    held, accepted = pings.held, pings.accepted
                    stopping = time.monotonic()
                return held, accepted, time.monotonic() - stopping

    held, accepted, stop_seconds = asyncio.run(scenario())
    assert held == 1, "a ping was still held when the alert went out"
    assert accepted == 1, "one ping in flight at a time"
    assert stop_seconds < 10
