"""Issue 10 points 3, 4, 8 and 9 end to end: the real ib_async against the simulated gateway,
through ``check --json`` and through the daemon's alerts (real Apprise to a local receiver).

Every figure is worked in the scenario files' headers (monitor/sim/scenarios/*.toml) and
again here where a test asserts it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
from support import make_settings, until

from monitor.app import build_connector, build_service, build_store, run_daemon
from monitor.cli import run_check
from monitor.service import AccountView
from monitor.sim.receiver import ReceivedMessage, Receiver


def accounts_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``check --json``'s accounts by id."""
    return {entry["account"]: entry for entry in report["accounts"]}


def finding(entry: dict[str, Any], rule: str) -> dict[str, Any]:
    """One rule's finding in an account's entry."""
    return next(f for f in entry["findings"] if f["rule"] == rule)


def checked(simulated_gateway, tmp_path, scenario: str, **sections: Any) -> dict[str, Any]:
    """``check --json``'s object for ``scenario`` with the given config sections."""

    async def run() -> dict[str, Any]:
        async with simulated_gateway(scenario) as gateway:
            return await run_check(make_settings(tmp_path, gateway.port, [], **sections))

    return asyncio.run(run())


def test_check_reads_options_with_their_multipliers_and_without_loan_value(
    simulated_gateway, tmp_path
):
    """shorts_options' DU6000002: SPY 100 @ 500, 2 long 550 calls @ 8.00 and 3 short 450 puts
    @ 6.00, each x 100. NLV = 50,000 + 50,000 + 1,600 - 1,800 = 99,800; EquityWithLoanValue
    leaves the options out: 100,000; GPV 50,000 + 1,600 + 1,800 = 53,400; maintenance
    44,300; cushion 55,700 / 99,800 = 55.81%: every rule ok."""
    report = checked(simulated_gateway, tmp_path, "shorts_options")
    options = accounts_of(report)["DU6000002"]
    assert options["net_liquidation"] == pytest.approx(99_800.0)
    assert options["equity_with_loan"] == pytest.approx(100_000.0)
    assert options["gross_position_value"] == pytest.approx(53_400.0)
    assert options["maint_margin_req"] == pytest.approx(44_300.0)
    assert options["cushion"] == pytest.approx(0.558116, abs=1e-6)
    assert options["positions"] == 3
    concentration = finding(options, "concentration")
    spy = next(row for row in concentration["details"]["positions"] if row["symbol"] == "SPY")
    assert spy["value"] == pytest.approx(50_000.0), "the calls and puts are not SPY shares"


def test_check_costs_a_chf_debit_of_a_eur_account_in_francs(simulated_gateway, tmp_path):
    """eur_chf_debit's DU7100001 (EUR base): CHF -25,000 at CHF 1.06 EUR, EUR +8,000. With a
    0.5% CHF benchmark: 25,000 x 2.0% = CHF 500.00 a year = EUR 530.00, on EUR 26,500.00 of
    debit (the EUR credit does not offset it)."""
    report = checked(
        simulated_gateway,
        tmp_path,
        "eur_chf_debit",
        rules={"financing_cost": {"currencies": {"CHF": {"benchmark_rate": 0.005}}}},
    )
    entry = accounts_of(report)["DU7100001"]
    cost = finding(entry, "financing_cost")
    assert cost["value"] == pytest.approx(530.0)
    assert cost["details"]["margin_loan"] == pytest.approx(26_500.0)
    assert [row["currency"] for row in cost["details"]["currencies"]] == ["CHF"]
    assert "credits (EUR 8,000.00) do not offset a debit in another currency" in cost["message"]
    reserve = finding(entry, "cash_reserve")
    assert reserve["threshold"] == pytest.approx(265.0)  # two quarters of EUR 530.00


def test_check_costs_each_advisor_account_in_its_own_base_currency(simulated_gateway, tmp_path):
    """advisor_currencies at a 4.33% USD benchmark (first tier +1.5% = 5.83%): DU3100001 (USD
    base) owes USD 20,000: USD 1,166.00 a year; DU3100002 (GBP base) owes USD 30,000 at 0.79:
    USD 1,749.00 = GBP 1,381.71 a year. Neither pound credit offsets a dollar debit."""
    report = checked(
        simulated_gateway,
        tmp_path,
        "advisor_currencies",
        rules={"financing_cost": {"benchmark_rate": 0.0433}},
    )
    entries = accounts_of(report)
    usd, gbp = entries["DU3100001"], entries["DU3100002"]
    assert (usd["base_currency"], gbp["base_currency"]) == ("USD", "GBP")
    assert finding(usd, "financing_cost")["value"] == pytest.approx(1_166.0)
    assert finding(gbp, "financing_cost")["value"] == pytest.approx(1_381.71)
    assert "GBP 1,381.71 a year" in finding(gbp, "financing_cost")["message"]


def test_check_measures_the_market_drawdown_from_daily_bars(simulated_gateway, tmp_path):
    """market_drawdown: SPY (held by no account) peaked at 600.00 thirty sessions ago and is at
    522.00: 1 - 522 / 600 = 13.0%, past 12%: warning, with the 20% cut of the 40,000 loan
    (repay 8,000.00). One check sees one IB update: margin_terms has nothing to compare."""
    report = checked(simulated_gateway, tmp_path, "market_drawdown")
    entry = accounts_of(report)["DU4100001"]
    drawdown = finding(entry, "drawdown")
    assert drawdown["severity"] == "warning"
    assert drawdown["value"] == pytest.approx(0.13)
    assert "SPY 522.00 is 13% below its prior peak 600.00" in drawdown["message"]
    # no daemon history here: NLV 108,000 is the account's peak so far
    assert "NLV is 0% below its peak of USD 108,000.00" in drawdown["message"]
    assert "repay USD 8,000.00 of USD 40,000.00" in drawdown["action"]
    terms = finding(entry, "margin_terms")
    assert terms["severity"] == "ok" and terms["data_missing"]


def test_check_says_plainly_when_the_benchmark_has_no_data(simulated_gateway, tmp_path):
    """healthy serves no SPY: IB answers the contract lookup with error 200; the drawdown
    finding says so, holds (data_missing) and leaves the account's status ok."""
    report = checked(simulated_gateway, tmp_path, "healthy")
    assert report["status"] == "ok"
    drawdown = finding(report["accounts"][0], "drawdown")
    assert drawdown["data_missing"] and drawdown["value"] is None
    assert drawdown["message"].startswith("Market drawdown unknown: no SPY price")
    assert "IB knows no SPY on SMART in USD" in drawdown["message"]
    assert "error 200" in drawdown["message"]


def alerts(messages: list[ReceivedMessage], rule: str) -> list[ReceivedMessage]:
    """The notifications about ``rule``."""
    return [m for m in messages if f" {rule}" in m.title]


def test_the_daemon_alerts_on_the_market_drawdown_and_on_ib_tightening(
    simulated_gateway, tmp_path
):
    """market_drawdown in the daemon: a drawdown warning at once (SPY 13% off its peak), then
    IB raises every rate from 25% to 35% with prices unchanged: margin_terms warns.

    DU4100001: NLV 108,000, GPV 148,000. Maintenance 37,000 -> 51,800 (+10.0 points); EL
    71,000 -> 56,200 (cost 14,800); cushion 65.7% -> 52%. The trim at the 25% floor: 14,800 /
    0.25 = 59,200.00; at the new 35%: 42,285.71; deposit 14,800 / (1 - 0.657407) = 43,200.00.
    Then SPY's streamed price falls 2% to 511.56: 1 - 511.56 / 600 = 14.74% below the peak.
    """

    async def scenario() -> list[ReceivedMessage]:
        with Receiver() as receiver:
            async with simulated_gateway("market_drawdown") as gateway:
                settings = make_settings(tmp_path, gateway.port, [receiver.url])
                seen: dict[str, AccountView] = {}
                service = build_service(settings, on_evaluated=seen.__setitem__)
                stop = asyncio.Event()
                daemon = asyncio.create_task(run_daemon(settings, stop, service))
                await receiver.wait_until_async(
                    lambda got: bool(alerts(got, "drawdown")), timeout=15
                )
                await until(
                    lambda: "DU4100001" in service.authoritative, 10, "an authoritative snapshot"
                )
                gateway.set_rates(None, {"all": {"maint_rate": 0.35, "init_rate": 0.35}})
                messages = await receiver.wait_until_async(
                    lambda got: bool(alerts(got, "margin_terms")), timeout=15
                )
                gateway.move_prices({"SPY": -0.02})  # streamed: 522 -> 511.56

                def market_drawdown() -> float | None:
                    view = seen.get("DU4100001")
                    rule = [f for f in view.findings if f.rule == "drawdown"] if view else []
                    return rule[0].value if rule else None

                await until(
                    lambda: market_drawdown() == pytest.approx(1 - 511.56 / 600),
                    10,
                    "the streamed SPY price reaches the drawdown rule",
                )
                stop.set()
                await asyncio.wait_for(daemon, 15)
                return messages

    messages = asyncio.run(scenario())
    (drawdown,) = alerts(messages, "drawdown")
    assert drawdown.title == "[WARNING] DU4100001 drawdown"
    assert "SPY 522.00 is 13% below its prior peak 600.00" in drawdown.message
    assert "leverage magnifies" in drawdown.message
    (terms,) = alerts(messages, "margin_terms")
    assert terms.title == "[WARNING] DU4100001 margin_terms"
    for text in (
        "maintenance 25% -> 35% of GPV (+10.0 points)",
        "it cost USD 14,800.00 of ExcessLiquidity",
        "Trim about USD 59,200.00 of positions to restore the 65.7% cushion",
        "USD 42,285.71 at the book's new 35% average",
        "deposit about USD 43,200.00",
    ):
        assert text in terms.message


def test_an_estimate_of_an_options_book_moves_nlv_only_and_says_what_it_cannot_know(
    simulated_gateway, tmp_path
):
    """shorts_options with IB's values pushed only on request: the long call falls from 8.00
    to 3.00 (2 x 100 x -5.00 = -1,000). The estimate moves NLV 99,800 -> 98,800 and keeps
    ELV 100,000 and EL 55,700 (as the simulator's IB does), and its findings say that the
    options' requirement changes are not known until IB's next update."""

    async def scenario() -> AccountView:
        async with simulated_gateway("shorts_options", account_push_interval=3600) as gateway:
            settings = make_settings(tmp_path, gateway.port, [])
            seen: dict[str, AccountView] = {}
            changed = asyncio.Event()

            def record(account: str, view: AccountView) -> None:
                seen[account] = view
                changed.set()

            service = build_service(settings, on_evaluated=record)
            stop = asyncio.Event()
            daemon = asyncio.create_task(run_daemon(settings, stop, service))

            def options_view(estimated: bool) -> bool:
                view = seen.get("DU6000002")
                snapshot = view.snapshot if view else None
                return bool(snapshot and snapshot.estimated is estimated and all(
                    p.market_value is not None for p in snapshot.positions
                ))  # fmt: skip

            await until(lambda: options_view(False), 10, "IB's values", changed=changed)
            gateway.set_prices({"SPY_C550": 3.0})
            await until(lambda: options_view(True), 10, "an estimate", changed=changed)
            view = seen["DU6000002"]
            stop.set()
            await asyncio.wait_for(daemon, 15)
            return view

    view = asyncio.run(scenario())
    snapshot = view.snapshot
    assert snapshot is not None
    assert snapshot.net_liquidation == pytest.approx(98_800.0)
    assert snapshot.equity_with_loan == pytest.approx(100_000.0)
    assert snapshot.excess_liquidity == pytest.approx(55_700.0)
    cushion = next(f for f in view.findings if f.rule == "cushion")
    assert cushion.estimated
    assert "cannot know how their requirements change" in cushion.message
    assert cushion.details["estimate_caveat"]


@pytest.mark.parametrize(
    ("moment", "severity"),
    [
        ("2026-11-25T16:00:00-05:00", "critical"),  # a regular day, inside 15:50-17:20
        ("2026-11-26T16:00:00-05:00", "warning"),  # Thanksgiving: no session, no check
        ("2026-11-27T13:30:00-05:00", "critical"),  # 13:00 close: the check is 12:50-14:20
        ("2026-11-27T16:00:00-05:00", "warning"),  # ... so 16:00 is past it
    ],
    ids=["regular", "thanksgiving", "early-close-inside", "early-close-after"],
)
def test_the_service_hands_the_nyse_calendar_to_the_sma_rule(
    simulated_gateway, tmp_path, moment, severity
):
    """sma_lookahead's account has SMA below 0; the service's clock is set to ``moment``: the
    SMA check's window follows the real NYSE calendar (exchange_calendars) through the
    service's evaluation context."""
    now = datetime.fromisoformat(moment)

    async def run() -> dict[str, Any]:
        async with simulated_gateway("sma_lookahead") as gateway:
            settings = make_settings(tmp_path, gateway.port, [])
            connector = build_connector(settings, clock=lambda: now)
            await connector.connect()
            try:
                await connector.wait_ready(5.0)
                with build_store(settings, in_memory=True) as store:
                    service = build_service(
                        settings, clock=lambda: now, store=store, connector=connector
                    )
                    account = connector.accounts()[0]
                    _, findings = service.findings_for(account)
            finally:
                await connector.disconnect()
            return next(f for f in findings if f.rule == "sma").to_dict()

    sma = asyncio.run(run())
    assert sma["severity"] == severity
    if moment.startswith("2026-11-27"):
        assert "12:50-14:20 America/New_York (early close at 13:00" in sma["message"]
