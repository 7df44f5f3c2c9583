"""The status page as a person sees it, in a real headless browser: Debian's Chromium driven by
Playwright for Python (its asyncio API runs on the test's own loop, beside the daemon; its
expectations wait with explicit timeouts; it drives the system's browser by path, so nothing
is downloaded). The screenshots land in build/test-artifacts/ (and, with
MARGIN_MONITOR_README_SCREENSHOTS=1, in docs/ for the README).

Where no Chromium is installed a local run skips this test saying so; under CI (CI=true) that
is a failure instead: .ci/run installs the browser, so CI always runs it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from playwright.async_api import Page as Tab
from playwright.async_api import async_playwright, expect
from web_support import running_page

from rules import RULES

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "build" / "test-artifacts"
README_SHOTS = ROOT / "docs"
#: Headless, and nothing but the page: no sandbox (CI runs as root), no GPU, no calls home.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def system_chromium() -> str | None:
    """The system's Chromium: ``$MARGIN_MONITOR_CHROMIUM``, else the first on PATH."""
    for name in (os.environ.get("MARGIN_MONITOR_CHROMIUM"), "chromium", "chromium-browser"):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


@pytest.fixture
def chromium() -> str:
    """The browser's path; skip (fail under CI) when there is none."""
    found = system_chromium()
    if found is None:
        reason = (
            "no Chromium on this machine: install Debian's chromium package (.ci/run does) or "
            "set MARGIN_MONITOR_CHROMIUM to a Chromium binary"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the browser test")
        pytest.skip(reason)
    return found


async def screenshot(
    tab: Tab, name: str, *, full_page: bool = False, readme: bool = False
) -> Path:
    """Save the tab as build/test-artifacts/<name>.png (and, for the README's pictures, as
    docs/status-page-<name>.png when MARGIN_MONITOR_README_SCREENSHOTS is set)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await tab.screenshot(path=str(path), full_page=full_page)
    if readme and os.environ.get("MARGIN_MONITOR_README_SCREENSHOTS"):
        README_SHOTS.mkdir(exist_ok=True)
        shutil.copyfile(path, README_SHOTS / f"status-page-{name}.png")
    return path


@pytest.mark.slow
def test_a_person_follows_the_selloff_on_the_status_page(simulated_gateway, tmp_path, chromium):
    """Open the overview: each account's cushion reads as ``check --json``'s to the two decimals
    shown. Play the scenario's sell-off up to its capitulation (cushion about 8.7%): the leveraged
    account's card turns critical within 2 s, without a reload. Its page shows the rule table
    (one row per rule, the cushion critical) and the day's chart. On a phone-sized screen the
    overview fits the width. When the gateway goes, the page says so and keeps the last figures,
    marked, in the colour of the alert still held; when the monitor itself stops, the page says
    it lost contact."""

    async def scenario() -> None:
        async with (
            simulated_gateway("selloff") as gateway,
            running_page(gateway, tmp_path) as page,
            async_playwright() as playwright,
        ):
            browser = await playwright.chromium.launch(
                executable_path=chromium, args=CHROMIUM_FLAGS
            )
            try:
                tab = await browser.new_page(viewport={"width": 1280, "height": 800})
                await tab.goto(page.url)
                report = await page.check_json()
                for entry in report["accounts"]:
                    figure = tab.locator(f"#card-{entry['account']} [data-figure=cushion]")
                    await expect(figure).to_have_text(f"{entry['cushion'] * 100:.2f}%")
                card = tab.locator("#card-DU1000001")
                await expect(card).to_have_attribute("data-severity", "warning")
                await tab.evaluate("window.loadedOnce = true")  # gone if the page reloads

                for step in gateway.scenario.steps[:5]:  # t=3 to t=15: "capitulation"
                    await gateway.apply_step(step)
                await expect(card).to_have_attribute("data-severity", "critical", timeout=2000)
                assert await tab.evaluate("window.loadedOnce === true"), "the page reloaded"
                await expect(card.locator(".badge")).to_have_text("critical")
                await page.service.settle(timeout=10)
                (after,) = [
                    e for e in (await page.check_json())["accounts"] if e["account"] == "DU1000001"
                ]
                await expect(card.locator("[data-figure=cushion]")).to_have_text(
                    f"{after['cushion'] * 100:.2f}%"
                )
                await screenshot(tab, "overview", readme=True)

                await card.locator("a.account").click()
                await expect(tab).to_have_url(page.url + "account/DU1000001")
                rows = tab.locator("table.rules tbody tr")
                await expect(rows).to_have_count(len(RULES))
                await expect(tab.locator("table.rules tr[data-rule=cushion]")).to_have_attribute(
                    "data-severity", "critical"
                )
                chart = tab.locator("#chart svg.chart")
                await expect(chart).to_be_visible()
                await expect(chart.locator("polyline.line-cushion")).not_to_have_count(0)
                await expect(chart.locator("line.level-critical")).to_have_count(2)
                await screenshot(tab, "account", readme=True)
                await screenshot(tab, "account-full", full_page=True)

                phone = await browser.new_page(viewport={"width": 390, "height": 844})
                await phone.goto(page.url)
                await expect(phone.locator("#card-DU1000001")).to_be_visible()
                width = await phone.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, f"the overview is {width} px wide on a 390 px screen"
                await screenshot(phone, "phone", readme=True)

                await gateway.stop()
                await expect(tab.locator("#link-status")).to_contain_text(
                    "Gateway disconnected", timeout=5000
                )
                held = tab.locator("#card-DU1000001")
                await expect(held.locator("[data-role=source]")).to_have_text(
                    "last known figures (no data now)"
                )
                await expect(held).to_have_attribute("data-severity", "critical")
                page.stop.set()
                await asyncio.wait_for(page.daemon, 15)
                await expect(tab.locator("#stream-status")).to_be_visible(timeout=5000)
                await screenshot(tab, "lost")
            finally:
                await browser.close()

    asyncio.run(scenario())
