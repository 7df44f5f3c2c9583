"""The status page over real HTTP on loopback: the daemon against the simulated gateway serves
the figures ``check --json`` prints, pushes changes on its event stream, answers bad input with
404/401/405 pages, keeps its token, lists the summaries archive, and stays out of the commands
that do not serve it."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs
from support import make_settings
from web_support import running_page, with_page

from monitor.app import build_service
from monitor.cli import main
from monitor.daemon import announce_web_server, daily_summary
from monitor.settings import ConfigError, load_settings
from monitor.web import WebServer
from rules import RULES

TOKEN = "s3cret-page-token-0123456789"


async def fetch(
    url: str, *, headers: dict[str, str] | None = None, method: str = "GET", **options: Any
) -> tuple[int, str, Any]:
    """Status, body and headers of one request (redirects not followed)."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, allow_redirects=False, **options) as reply,
    ):
        return reply.status, await reply.text(), reply.headers


def shown_cushion(html: str, account: str) -> str:
    """The cushion figure on ``account``'s card."""
    card = re.search(rf'<article id="card-{account}".*?</article>', html, flags=re.DOTALL)
    assert card, f"no card for {account}"
    figure = re.search(r'data-figure="cushion">([^<]*)<', card.group(0))
    assert figure
    return figure.group(1)


@pytest.mark.slow
def test_the_pages_show_the_figures_check_json_prints(simulated_gateway, tmp_path):
    """Each card's cushion is ``check --json``'s to the two decimals shown (before the
    sell-off moves: EL 30,824 / NLV 102,840 = 29.97% for the leveraged account); the account
    page has a row for every rule, the day's chart and its ten positions."""

    async def scenario() -> tuple[dict, str, str]:
        async with (
            simulated_gateway("selloff") as gateway,
            running_page(gateway, tmp_path) as page,
        ):
            report = await page.check_json()
            _, overview, _ = await fetch(page.url)
            _, account, _ = await fetch(page.url + "account/DU1000001")
            return report, overview, account

    report, overview, account = asyncio.run(scenario())
    for entry in report["accounts"]:
        assert shown_cushion(overview, entry["account"]) == f"{entry['cushion'] * 100:.2f}%"
    assert shown_cushion(overview, "DU1000001") == "29.97%"
    assert re.findall(r'<tr class="sev-\w+" data-rule="(\w+)"', account) == list(RULES)
    assert '<svg class="chart"' in account
    assert set(re.findall(r'<tr data-symbol="(\w+)"', account)) == {
        "NVDA", "AMD", "TSLA", "PLTR", "COIN", "SHOP", "CRWD", "MU", "SMCI", "ARKK"
    }


def test_bad_input_gets_a_404_page_and_never_reaches_sql(simulated_gateway, tmp_path):
    """An unknown account or path is a 404 page; a quote in the account or a query string
    changes nothing in the state file; anything but GET is refused (405)."""

    async def scenario() -> dict[str, tuple[int, str]]:
        async with (
            simulated_gateway("selloff") as gateway,
            running_page(gateway, tmp_path) as page,
        ):
            base = page.url
            answers = {}
            for name, path in {
                "unknown account": "account/DU9999999",
                "injected account": "account/DU1000001'%20OR%20'1'='1",
                "unknown path": "no/such/page",
                "unknown day": "summaries/2026-01-01",
                "chart outside": "summaries/charts/..%2Fmonitor.sqlite3",
                "query": "account/DU1000001?day=%27%3B%20DROP%20TABLE%20samples%3B%20--",
            }.items():
                status, body, _ = await fetch(base + path)
                answers[name] = (status, body)
            status, body, headers = await fetch(base, method="POST", data="x=1")
            answers["post"] = (status, headers.get("Allow", ""))
        return answers

    answers = asyncio.run(scenario())
    for name in ("unknown account", "injected account", "unknown path", "unknown day"):
        status, body = answers[name]
        assert status == 404, name
        assert "There is no such page or account here." in body
    assert answers["chart outside"][0] == 404
    assert answers["query"][0] == 200
    assert answers["post"] == (405, "GET, HEAD")
    with sqlite3.connect(tmp_path / "state" / "monitor.sqlite3") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert "samples" in tables
        assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] > 0


def test_with_a_token_every_page_needs_it_and_says_nothing_without_it(simulated_gateway, tmp_path):
    """With ``[web] token``: no token or a wrong one is 401 on every path, the same page for
    a real account and a made-up one; ``Authorization: Bearer`` opens the page; ``?token=``
    once redirects to the address without it and sets a session cookie that opens the rest,
    event stream included; the stylesheet needs nothing."""

    async def scenario() -> dict[str, Any]:
        async with (
            simulated_gateway("selloff") as gateway,
            running_page(gateway, tmp_path, token=TOKEN) as page,
        ):
            base = page.url
            seen: dict[str, Any] = {}
            seen["none"] = await fetch(base)
            seen["real"] = await fetch(base + "account/DU1000001")
            seen["fake"] = await fetch(base + "account/DU0000000")
            seen["stream"] = await fetch(base + "events")
            seen["wrong"] = await fetch(base, headers={"Authorization": "Bearer nope"})
            seen["bearer"] = await fetch(base, headers={"Authorization": f"Bearer {TOKEN}"})
            seen["bad query"] = await fetch(base + "?token=nope")
            seen["style"] = await fetch(base + "static/style.css")
            # (aiohttp's client keeps cookies of an IP address only when told to; browsers do)
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as session:
                async with session.get(
                    base + f"account/DU1000001?token={TOKEN}", allow_redirects=False
                ) as reply:
                    seen["redirect"] = (reply.status, reply.headers.get("Location"))
                async with session.get(base + "account/DU1000001") as reply:
                    seen["with cookie"] = reply.status
                async with session.get(base + "events") as reply:
                    seen["stream with cookie"] = (reply.status, await reply.content.readline())
            return seen

    seen = asyncio.run(scenario())
    for name in ("none", "real", "fake", "stream", "wrong", "bad query"):
        assert seen[name][0] == 401, name
        assert seen[name][2]["WWW-Authenticate"] == 'Bearer realm="margin-monitor"'
    assert seen["real"][1] == seen["fake"][1]
    assert "DU1000001" not in seen["real"][1]
    assert seen["bearer"][0] == 200 and "DU1000001" in seen["bearer"][1]
    assert seen["style"][0] == 200
    assert seen["redirect"] == (303, "/account/DU1000001")
    assert seen["with cookie"] == 200
    assert seen["stream with cookie"] == (200, b"retry: 2000\n")


async def next_update(
    reader: aiohttp.StreamReader, wanted: Callable[[dict[str, str]], bool], timeout: float
) -> dict[str, str]:
    """Read the event stream until an update holds a fragment ``wanted`` accepts; fail after
    ``timeout`` seconds."""

    async def read() -> dict[str, str]:
        while True:
            line = await reader.readline()
            if not line:
                raise AssertionError("the stream ended")
            if line.startswith(b"data: "):
                for fragment in json.loads(line[6:])["fragments"]:
                    if wanted(fragment):
                        return fragment

    return await asyncio.wait_for(read(), timeout)


@pytest.mark.slow
def test_the_stream_pushes_each_change_and_the_lost_gateway(simulated_gateway, tmp_path):
    """An open overview stream first gets every card; after a shock (every growth name down
    32%: cushion about 5%) the account's card arrives re-rendered as critical, with the
    overall count; when the gateway goes away the banner turns to "Gateway disconnected"
    (and to blind once that lasts [rules.stale_data] blind_minutes, here 0.02 min); the
    daemon stops promptly with the stream still open."""

    def card_of(account: str, severity: str) -> Callable[[dict[str, str]], bool]:
        return lambda f: f["id"] == f"card-{account}" and f'data-severity="{severity}"' in f["html"]

    def banner(title: str) -> Callable[[dict[str, str]], bool]:
        return lambda f: f["id"] == "link-status" and title in f["html"]

    async def scenario() -> list[dict[str, str]]:
        async with simulated_gateway("selloff") as gateway:
            rules = {"stale_data": {"blind_minutes": 0.02}}
            async with (
                running_page(gateway, tmp_path, rules=rules) as page,
                aiohttp.ClientSession() as session,
                session.get(page.url + "events") as reply,
            ):
                first = await next_update(reply.content, card_of("DU1000002", "ok"), 5)
                gateway.move_prices({"all": -0.32})
                critical = await next_update(reply.content, card_of("DU1000001", "critical"), 5)
                overall = await next_update(reply.content, lambda f: f["id"] == "overall", 5)
                await gateway.stop()
                gone = await next_update(reply.content, banner("Gateway disconnected"), 10)
                blind = await next_update(reply.content, banner("Monitor blind"), 10)
                return [first, critical, overall, gone, blind]

    first, critical, overall, gone, blind = asyncio.run(scenario())
    assert first["parent"] == "cards"
    assert 'data-figure="cushion">' in critical["html"]
    assert 'data-severity="critical"' in overall["html"]
    assert 'data-level="warning"' in gone["html"]
    assert 'data-level="critical"' in blind["html"]


@pytest.mark.slow
def test_the_summaries_archive_lists_and_renders_each_day_with_its_charts(
    simulated_gateway, tmp_path
):
    """After the daemon saved the day's summary, /summaries links the day, the day's page
    renders the Markdown (each account's section) with its charts, and each chart is served
    as the PNG the daemon drew."""

    async def scenario() -> tuple[str, str, str, tuple[int, bytes, str]]:
        async with (
            simulated_gateway("selloff") as gateway,
            running_page(gateway, tmp_path) as page,
        ):
            markdown = await daily_summary(page.service)
            day = markdown.stem.removeprefix("summary-")
            _, index, _ = await fetch(page.url + "summaries")
            _, rendered, _ = await fetch(page.url + f"summaries/{day}")
            chart = re.search(r'<img src="/summaries/charts/([^"]+)"', rendered)
            assert chart, rendered
            async with (
                aiohttp.ClientSession() as session,
                session.get(page.url + f"summaries/charts/{chart.group(1)}") as reply,
            ):
                png = (reply.status, await reply.read(), reply.headers["Content-Type"])
            return day, index, rendered, png

    day, index, rendered, (status, body, kind) = asyncio.run(scenario())
    assert f'href="/summaries/{day}"' in index
    assert "<h2>Daily margin summary</h2>" in rendered
    assert f"<h3>DU1000001 — {day}</h3>" in rendered and f"<h3>DU1000002 — {day}</h3>" in rendered
    assert rendered.count('<img src="/summaries/charts/summary-DU') == 2
    assert (status, body[:8], kind) == (200, b"\x89PNG\r\n\x1a\n", "image/png")


@pytest.mark.slow
def test_commands_that_do_not_serve_the_page_never_import_it(tmp_path):
    """The daemon built without ``[web] port``, and ``check``'s code path, load neither aiohttp
    nor Jinja2 nor the page's module; with a port set the daemon has them."""
    probe = (
        "import sys\n"
        "from monitor.app import build_daemon\n"
        "from monitor.settings import load_settings\n"
        "import monitor.cli\n"
        "build_daemon(load_settings(None))\n"
        "print([m for m in ('aiohttp', 'jinja2', 'monitor.web') if m in sys.modules])\n"
    )
    env = {"MARGIN_MONITOR_MONITOR__STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def loaded(**extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", probe],
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout.strip()

    assert loaded() == "[]"
    assert loaded(MARGIN_MONITOR_WEB__PORT="8765") == "['aiohttp', 'jinja2', 'monitor.web']"


def test_beyond_loopback_the_token_is_required_and_the_start_says_so(tmp_path):
    """``[web] host`` other than loopback without a token is a configuration error naming the
    key; with one, the daemon's start-up log warns that the page is reachable and needs it."""
    config = tmp_path / "config.toml"
    config.write_text('[web]\nport = 8765\nhost = "0.0.0.0"\n')
    with pytest.raises(ConfigError, match=r"web\.token: required when host \(0\.0\.0\.0\)"):
        load_settings(config)
    config.write_text(f'[web]\nport = 8765\nhost = "0.0.0.0"\ntoken = "{TOKEN}"\n')
    settings = load_settings(config)
    service = build_service(with_page(make_settings(tmp_path, 9, []), TOKEN))
    server = WebServer(service, settings.web.host, 8765, token=TOKEN)  # built, never bound

    with capture_logs() as logs:
        announce_web_server(server)

    assert logs[0]["log_level"] == "warning"
    assert "beyond loopback" in logs[0]["event"] and "[web] token" in logs[0]["event"]
    assert TOKEN not in json.dumps(logs)
    service.store.close()


def test_a_port_in_use_stops_the_daemon_with_one_line(tmp_path, capsys):
    """``run`` with ``[web] port`` taken by another program: one line naming the port and what
    to do, exit status 2 (a configuration problem: systemd does not restart it), no
    traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "config.toml"
        config.write_text(
            f'[ib]\nport = 9\n[monitor]\nstate_dir = "{tmp_path}"\n[web]\nport = {port}\n'
        )
        assert main(["run", "--no-notify", "--config", str(config)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        f"margin-monitor: the status page cannot listen on 127.0.0.1:{port} (Address already "
        "in use): set another [web] port, or stop what uses it"
    )


def test_the_token_is_a_secret_for_the_log_redactor(tmp_path):
    """``[web] token`` is registered with the log redactor like the notification URLs."""
    config = tmp_path / "config.toml"
    config.write_text(f'[web]\ntoken = "{TOKEN}"\n')
    assert TOKEN in load_settings(config).secrets()
