"""What a test can make the simulated gateway do, seen through the real ib_async: answer
orders as a read-only API does, answer what it does not serve as IB would, wedge the link,
tighten margin terms, and let an account join or leave an advisor login mid-session."""

from __future__ import annotations

import asyncio
import logging

import pytest
from gateway_support import connect, run, value
from ib_async import LimitOrder, Stock
from ib_async.wrapper import RequestError
from support import until

from monitor.sim.protocol import READ_ONLY_TEXT
from monitor.sim.server import WEDGE_KINDS

# -- read-only API ----------------------------------------------------------------------------


def test_orders_get_the_read_only_error_and_are_never_executed(simulated_gateway):
    """placeOrder, cancelOrder and reqGlobalCancel from ib_async are recorded in
    orders_received and answered with IB's 321 "The API interface is currently in Read-Only
    mode." (the order's id, -1 for the global cancel); ib_async marks the trade
    ValidationError; no position changes."""

    async def body() -> None:
        async with simulated_gateway("three_fund") as gateway:
            ib = await connect(gateway.port)
            errors: list[tuple[int, int, str]] = []
            ib.errorEvent += lambda req_id, code, text, contract: errors.append(
                (req_id, code, text)
            )
            [schd] = await ib.qualifyContractsAsync(Stock("SCHD", "SMART", "USD"))
            trade = ib.placeOrder(schd, LimitOrder("SELL", 100, 27.0))
            await until(lambda: trade.orderStatus.status == "ValidationError", 5, "321 on order")
            ib.cancelOrder(trade.order)
            ib.reqGlobalCancel()
            await gateway.wait_until(lambda: len(gateway.orders_received) == 3)
            await until(lambda: len(errors) == 3, 5, "three read-only errors")
            order_id = trade.order.orderId
            assert [(req_id, code) for req_id, code, _ in errors] == [
                (order_id, 321),
                (order_id, 321),
                (-1, 321),
            ]
            assert all(text == READ_ONLY_TEXT for _, _, text in errors)
            assert "Read-Only mode" in trade.log[-1].message
            assert [fields[0] for fields in gateway.orders_received] == ["3", "4", "58"]
            held = {h.symbol: h.quantity for h in gateway.state.holdings("DU5000001")}
            assert held["SCHD"] == 3000
            ib.disconnect()

    run(body())


def test_requests_without_simulated_data_get_ibs_answer_not_silence(simulated_gateway):
    """reqHeadTimeStamp fails at once with 162 (the historical farm has nothing), market depth
    with 354 (not subscribed), instead of leaving ib_async to its timeout."""

    async def body() -> None:
        async with simulated_gateway("three_fund") as gateway:
            ib = await connect(gateway.port)
            [voo] = await ib.qualifyContractsAsync(Stock("VOO", "SMART", "USD"))
            with pytest.raises(RequestError) as raised:
                await asyncio.wait_for(ib.reqHeadTimeStampAsync(voo, "TRADES", True, 1), 5)
            assert raised.value.code == 162
            codes: list[int] = []
            ib.errorEvent += lambda req_id, code, *rest: codes.append(code)
            ib.reqMktDepth(voo)
            await until(lambda: 354 in codes, 5, "error 354 for market depth")
            ib.disconnect()

    run(body())


# -- wedged link ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", WEDGE_KINDS)
def test_a_wedged_link_stalls_one_client_and_leaves_the_others(simulated_gateway, kind):
    """After a frame that can never complete (half a frame, or a 2**31-1 length prefix) the
    client stays connected but hears nothing more: a request times out. Another client is
    served as usual, and a reconnect is too."""

    async def body() -> None:
        async with simulated_gateway("three_fund") as gateway:
            wedged = await connect(gateway.port, client_id=1)
            assert await gateway.send_garbage(kind, client_id=1) == 1
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(wedged.reqCurrentTimeAsync(), 0.5)
            assert wedged.isConnected() and gateway.clients == [1]
            other = await connect(gateway.port, client_id=2)
            assert (await other.reqCurrentTimeAsync()).year > 2000
            wedged.disconnect()
            other.disconnect()
            await gateway.wait_for_clients(0)
            again = await connect(gateway.port, client_id=1)
            assert again.managedAccounts() == ["DU5000001"]
            again.disconnect()

    run(body())


@pytest.mark.slow
def test_a_garbage_step_wedges_every_client_from_the_timeline(simulated_gateway, caplog):
    """A timeline step ``garbage = "oversized_prefix"`` reaches every connected client."""
    caplog.set_level(logging.INFO)
    scenario = {
        "instruments": {"SPY": {"price": 500.0}},
        "accounts": [{"id": "DU1", "positions": [{"symbol": "SPY", "quantity": 1}]}],
        "steps": [{"at": 0, "garbage": "oversized_prefix"}],
    }

    async def body() -> None:
        async with simulated_gateway(scenario) as gateway:
            ib = await connect(gateway.port)
            await gateway.run_timeline()
            assert any(
                "link wedged by a oversized_prefix" in r.getMessage() for r in caplog.records
            )
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ib.reqCurrentTimeAsync(), 0.5)
            ib.disconnect()

    run(body())


# -- margin terms -----------------------------------------------------------------------------


def test_margin_terms_tighten_with_prices_unchanged(simulated_gateway):
    """market_drawdown: GPV 148,000, maint 37,000 (25%). IB raises every rate to 35%:
    maint 51,800 (35% of GPV), EL 71,000 -> 56,200, NLV and GPV unchanged; then QQQ alone to
    50% (a symbol's rate wins over "all"): maint 35,000 + 24,000 = 59,000, EL 49,000."""

    async def body() -> None:
        async with simulated_gateway("market_drawdown") as gateway:
            ib = await connect(gateway.port)
            account = "DU4100001"
            assert value(ib, account, "MaintMarginReq", "USD") == "37000.00"
            await gateway.apply_step(gateway.scenario.steps[0])
            await until(lambda: value(ib, account, "MaintMarginReq", "USD") == "51800.00", 5, "35%")
            assert value(ib, account, "GrossPositionValue", "USD") == "148000.00"
            assert value(ib, account, "NetLiquidation", "USD") == "108000.00"
            assert value(ib, account, "ExcessLiquidity", "USD") == "56200.00"
            assert value(ib, account, "InitMarginReq", "USD") == "51800.00"
            await gateway.apply_step(gateway.scenario.steps[1])
            await until(lambda: value(ib, account, "MaintMarginReq", "USD") == "59000.00", 5, "QQQ")
            assert value(ib, account, "ExcessLiquidity", "USD") == "49000.00"
            gateway.set_rates(account, {"all": {"maint_rate": 0.25}, "QQQ": {"maint_rate": 0.25}})
            await until(
                lambda: value(ib, account, "MaintMarginReq", "USD") == "37000.00", 5, "eased"
            )
            with pytest.raises(ValueError, match="a rate is a fraction"):
                gateway.set_rates(account, {"all": {"maint_rate": 1.5}})
            ib.disconnect()

    run(body())


# -- an account joining and leaving an advisor login ------------------------------------------

JOINING = {
    "instruments": {"SPY": {"price": 500.0, "con_id": 756733}, "BND": {"price": 72.0}},
    "accounts": [
        {"id": "DU1", "cash": {"USD": 1000.0}, "positions": [{"symbol": "SPY", "quantity": 10}]},
        {
            "id": "DU2",
            "managed": False,
            "cash": {"USD": -2000.0},
            "positions": [
                {"symbol": "SPY", "quantity": 20},
                {"symbol": "BND", "quantity": 100},
            ],
        },
    ],
    "steps": [{"at": 0, "managed_accounts": ["DU1", "DU2"], "announce": True}],
}


def test_an_account_joins_an_advisor_login_mid_session(simulated_gateway):
    """DU2 (managed = false) joins while ib_async is connected: managedAccounts is announced,
    its positions reach the reqPositions subscription at once, reqAccountUpdatesMulti,
    reqAccountUpdates and reqPnLSingle for it are served, and a price change of SPY reaches
    the pnlSingle of both accounts (DU2: 20 x 510 = 10,200; NLV -2,000 + 10,200 + 7,200 =
    15,400). Leaving again, its new requests are refused (321, not managed)."""

    async def body() -> None:
        async with simulated_gateway(JOINING, pnl_interval=0) as gateway:
            ib = await connect(gateway.port)
            assert ib.managedAccounts() == ["DU1"]
            assert {p.account for p in ib.positions()} == {"DU1"}
            await gateway.run_timeline()
            await until(lambda: ib.managedAccounts() == ["DU1", "DU2"], 5, "announced")
            await until(
                lambda: {p.contract.symbol for p in ib.positions("DU2")} == {"SPY", "BND"},
                5,
                "DU2's positions pushed",
            )
            await ib.reqAccountUpdatesMultiAsync("DU2")
            assert value(ib, "DU2", "NetLiquidation", "USD") == "15200.00"
            await ib.reqAccountUpdatesAsync("DU2")
            assert {item.contract.symbol for item in ib.portfolio("DU2")} == {"SPY", "BND"}
            first = ib.reqPnLSingle("DU1", "", 756733)
            joined = ib.reqPnLSingle("DU2", "", 756733)
            await until(lambda: joined.value == pytest.approx(10_000.0), 5, "DU2's pnlSingle")
            gateway.set_prices({"SPY": 510.0})
            await until(lambda: joined.value == pytest.approx(10_200.0), 5, "DU2 follows SPY")
            await until(lambda: first.value == pytest.approx(5_100.0), 5, "DU1 follows SPY")
            await until(lambda: value(ib, "DU2", "NetLiquidation", "USD") == "15400.00", 5, "NLV")
            gateway.set_managed_accounts(["DU1"])
            errors: list[int] = []
            ib.errorEvent += lambda req_id, code, *rest: errors.append(code)
            ib.client.reqPnL(9999, "DU2", "")
            await until(lambda: 321 in errors, 5, "DU2 is no longer managed")
            ib.disconnect()

    run(body())
