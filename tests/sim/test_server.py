"""The simulated gateway's server, exercised through the real ib_async client over loopback.

Every test runs a real asyncio TCP server on 127.0.0.1 and a real client; nothing is mocked.
Waiting is done on client events or gateway state with deadlines, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
import xml.etree.ElementTree as ElementTree
from typing import Any

import pytest
from gateway_support import (
    HOST,
    RawClient,
    connect,
    no_timeouts,
    raw_start,
    reg_t,
    run,
    value,
    version_frame,
)
from ib_async import IB, Contract, Stock
from ib_async.wrapper import RequestError
from support import until

from monitor.sim.server import GARBAGE_KINDS, serve

# -- connecting -------------------------------------------------------------------------------


def test_ib_async_connects_and_sees_accounts_values_and_positions(simulated_gateway, caplog):
    """connectAsync completes with no request left unanswered; values arrive per account."""
    caplog.set_level(logging.INFO)

    async def body() -> None:
        async with simulated_gateway("healthy") as gateway:
            ib = await connect(gateway.port)
            assert no_timeouts(caplog) == []
            assert ib.managedAccounts() == ["DU2000001", "DU2000002"]
            for account in gateway.accounts:
                figures = gateway.figures(account)
                assert float(value(ib, account, "NetLiquidation", "USD")) == pytest.approx(
                    figures["NetLiquidation"], abs=0.01
                )
                assert float(value(ib, account, "TotalCashBalance", "BASE")) == pytest.approx(
                    figures["TotalCashBalance"], abs=0.01
                )
                assert float(value(ib, account, "Cushion", "")) == pytest.approx(
                    figures["Cushion"], abs=1e-6
                )
                assert value(ib, account, "ExcessLiquidity-S", "USD") == value(
                    ib, account, "ExcessLiquidity", "USD"
                )
                held = {p.contract.symbol: p.position for p in ib.positions(account)}
                expected = {h.symbol: h.quantity for h in gateway.state.holdings(account)}
                assert held == expected
            assert {p.contract.symbol for p in ib.positions("DU2000001")} >= {"VTI", "AAPL"}
            assert gateway.clients == [1]
            assert gateway.orders_received == []
            ib.disconnect()

    run(body())


def test_single_account_gets_portfolio_through_account_updates(simulated_gateway, caplog):
    """With one managed account ib_async subscribes reqAccountUpdates: portfolio rows arrive."""
    caplog.set_level(logging.INFO)

    async def body() -> None:
        async with simulated_gateway("three_fund") as gateway:
            ib = await connect(gateway.port)
            assert no_timeouts(caplog) == []
            portfolio = {item.contract.symbol: item for item in ib.portfolio("DU5000001")}
            assert set(portfolio) == {"SCHD", "VOO", "BND"}
            assert portfolio["VOO"].marketValue == pytest.approx(233 * 515.0)
            assert portfolio["VOO"].averageCost == pytest.approx(430.0)
            assert portfolio["SCHD"].unrealizedPNL == pytest.approx(3000 * (27.5 - 26.10), abs=0.01)
            ib.disconnect()

    run(body())


def test_several_clients_at_once(simulated_gateway):
    """Two clients with different ids are served side by side."""

    async def body() -> None:
        async with simulated_gateway("healthy") as gateway:
            first, second = await asyncio.gather(connect(gateway.port, 1), connect(gateway.port, 2))
            assert gateway.clients == [1, 2]
            assert first.managedAccounts() == second.managedAccounts()
            gateway.move_prices({"all": -0.01})
            target = f"{gateway.figures('DU2000001')['NetLiquidation']:.2f}"
            for ib in (first, second):
                await until(
                    lambda ib=ib: value(ib, "DU2000001", "NetLiquidation", "USD") == target,
                    5,
                    "each client has the new NLV",
                )
            first.disconnect()
            second.disconnect()
            await gateway.wait_for_clients(0)

    run(body())


# -- requests ---------------------------------------------------------------------------------


def test_pnl_single_and_pnl_stream_position_values(simulated_gateway):
    """reqPnLSingle carries the position's market value; a price move updates it at once."""

    async def body() -> None:
        async with simulated_gateway("selloff", pnl_interval=0) as gateway:
            ib = await connect(gateway.port)
            nvda = gateway.state.instruments["NVDA"].con_id
            single = ib.reqPnLSingle("DU1000001", "", nvda)
            total = ib.reqPnL("DU1000001")
            await until(lambda: single.value == pytest.approx(123 * 130.0), 5, "first pnlSingle")
            gateway.set_prices({"NVDA": 120.0})
            await until(lambda: single.value == pytest.approx(123 * 120.0), 5, "pnlSingle update")
            assert single.position == 123
            assert single.dailyPnL == pytest.approx(-1230.0)
            await until(lambda: total.dailyPnL == pytest.approx(-1230.0), 5, "pnl update")
            assert total.unrealizedPnL == pytest.approx(-1230.0)
            ib.disconnect()

    run(body())


def test_contract_details_stock_type_and_unknown_contract(simulated_gateway):
    """Contract details carry stockType ETF/COMMON; an unknown contract is error 200."""

    async def body() -> None:
        async with (
            simulated_gateway("leveraged_etf") as gateway,
            simulated_gateway("concentrated") as other,
        ):
            ib = await connect(gateway.port)
            details = await ib.reqContractDetailsAsync(Stock("TQQQ", "SMART", "USD"))
            assert [d.stockType for d in details] == ["ETF"]
            assert details[0].contract.conId == gateway.state.instruments["TQQQ"].con_id
            assert details[0].contract.primaryExchange == "NASDAQ"
            by_id = await ib.reqContractDetailsAsync(Contract(conId=756733, exchange="SMART"))
            assert by_id[0].contract.symbol == "SPY"
            with pytest.raises(RequestError) as failure:
                await ib.reqContractDetailsAsync(Stock("NOPE", "SMART", "USD"))
            assert failure.value.code == 200
            ib.disconnect()
            ib = await connect(other.port)
            zeni = await ib.reqContractDetailsAsync(Stock("ZENI", "SMART", "USD"))
            assert zeni[0].stockType == "COMMON"
            ib.disconnect()

    run(body())


def test_market_data_snapshot_and_streaming_ticks(simulated_gateway):
    """reqMktData answers with marketDataType, last and close; price moves stream ticks."""

    async def body() -> None:
        async with simulated_gateway("three_fund", pnl_interval=0) as gateway:
            ib = await connect(gateway.port)
            voo, bnd, schd = await ib.qualifyContractsAsync(
                Stock("VOO", "SMART", "USD"),
                Stock("BND", "SMART", "USD"),
                Stock("SCHD", "SMART", "USD"),
            )
            (snapshot,) = await ib.reqTickersAsync(voo)
            assert snapshot.last == 515.0
            assert snapshot.close == 515.0
            ticker = ib.reqMktData(bnd)
            await until(
                lambda: ticker.last == 72.0 and ticker.marketDataType == 1, 5, "the live BND tick"
            )
            gateway.set_prices({"BND": 71.5})
            await until(lambda: ticker.last == 71.5, 5, "streamed tick")
            assert ticker.close == 72.0
            ib.reqMarketDataType(3)
            delayed = ib.reqMktData(schd)
            await until(
                lambda: delayed.last == 27.5 and delayed.marketDataType == 3,
                5,
                "the delayed SCHD tick",
            )
            ib.disconnect()

    run(body())


def test_fundamental_data_entitled_and_not(simulated_gateway):
    """ReportSnapshot carries <SharesOut> when entitled; 430 without data; 10358 unentitled."""

    async def body() -> None:
        async with (
            simulated_gateway("concentrated") as entitled,
            simulated_gateway("selloff") as unentitled,
        ):
            ib = await connect(entitled.port)
            zeni = Contract(conId=entitled.state.instruments["ZENI"].con_id, exchange="SMART")
            xml = await ib.reqFundamentalDataAsync(zeni, "ReportSnapshot")
            shares = ElementTree.fromstring(xml).find(".//SharesOut")
            assert shares is not None and float(shares.text) == 3_000_000
            with pytest.raises(RequestError) as missing:
                await ib.reqFundamentalDataAsync(Stock("MSFT", "SMART", "USD"), "ReportSnapshot")
            assert missing.value.code == 430
            ib.disconnect()
            ib = await connect(unentitled.port)
            with pytest.raises(RequestError) as refused:
                await ib.reqFundamentalDataAsync(Stock("NVDA", "SMART", "USD"), "ReportSnapshot")
            assert refused.value.code == 10358
            ib.disconnect()

    run(body())


def test_current_time_ids_and_positions_multi(simulated_gateway):
    """reqCurrentTime, reqIds and reqPositionsMulti (18-field positionMulti rows) are answered."""

    def positions_multi(port: int) -> list[list[str]]:
        client = raw_start(port, 12)
        client.send_fields(8, 1, 1)
        assert client.read_until("9")[2] == "1"
        client.send_fields(74, 1, 9001, "DU2000002", "")
        rows = []
        while (fields := client.read())[0] != "72":
            if fields[0] == "71":
                rows.append(fields)
        client.close()
        return rows

    async def body() -> None:
        async with simulated_gateway("healthy") as gateway:
            ib = await connect(gateway.port)
            now = await ib.reqCurrentTimeAsync()
            assert abs(now.timestamp() - time.time()) < 60
            ib.disconnect()
            rows = await asyncio.to_thread(positions_multi, gateway.port)
            assert all(len(row) == 18 for row in rows)
            assert {(row[3], row[5], row[15]) for row in rows} == {
                ("DU2000002", "VYM", "150"),
                ("DU2000002", "SCHD", "600"),
                ("DU2000002", "BND", "200"),
            }

    run(body())


def test_an_account_can_leave_the_managed_list(simulated_gateway, caplog):
    """set_managed_accounts hides an account: new connections no longer see it."""
    caplog.set_level(logging.INFO)

    async def body() -> None:
        async with simulated_gateway("healthy") as gateway:
            gateway.set_managed_accounts(["DU2000001"])
            ib = await connect(gateway.port)
            assert no_timeouts(caplog) == []
            assert ib.managedAccounts() == ["DU2000001"]
            assert {p.account for p in ib.positions()} == {"DU2000001"}
            assert value(ib, "DU2000002", "NetLiquidation", "USD") is None
            with pytest.raises(ValueError, match="unknown account"):
                gateway.set_managed_accounts(["DU0000000"])
            gateway.set_managed_accounts(None)
            assert gateway.accounts == ["DU2000001", "DU2000002"]
            ib.disconnect()

    run(body())


# -- pushes -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_cadence_streams_pnl_but_holds_account_values_until_the_tick(simulated_gateway):
    """With account_push_interval > 0, PnL moves at once; account values wait for the tick."""

    async def body() -> None:
        async with simulated_gateway(
            "three_fund", account_push_interval=0.5, pnl_interval=0
        ) as gateway:
            ib = await connect(gateway.port)
            account = "DU5000001"
            voo = ib.reqPnLSingle(account, "", gateway.state.instruments["VOO"].con_id)
            await until(lambda: voo.value == pytest.approx(119995.0), 5, "the first VOO pnlSingle")
            old_excess = value(ib, account, "ExcessLiquidity", "USD")
            seen: dict[str, Any] = {}

            def on_pnl(pnl: Any) -> None:
                if pnl.value == pytest.approx(233 * 520.0) and "pnl" not in seen:
                    seen["pnl"] = (
                        gateway.cadence_ticks,
                        value(ib, account, "ExcessLiquidity", "USD"),
                    )

            def on_value(item: Any) -> None:
                if (
                    item.tag == "ExcessLiquidity"
                    and item.value != old_excess
                    and "value" not in seen
                ):
                    seen["value"] = gateway.cadence_ticks

            ib.pnlSingleEvent += on_pnl
            ib.accountValueEvent += on_value
            ticks = gateway.cadence_ticks
            await gateway.wait_until(lambda: gateway.cadence_ticks > ticks, timeout=3)
            moved_at = gateway.cadence_ticks
            gateway.set_prices({"VOO": 520.0})
            await until(lambda: "pnl" in seen, 5, "the PnL update")
            assert seen["pnl"] == (moved_at, old_excess)  # PnL at once, values unchanged
            await until(lambda: "value" in seen, 3, "the cadence push")
            assert seen["value"] == moved_at + 1  # values changed only with the next tick
            expected = gateway.figures(account)["ExcessLiquidity"]
            assert float(value(ib, account, "ExcessLiquidity", "USD")) == pytest.approx(expected)
            ib.disconnect()

    run(body())


def test_quantity_change_is_pushed_at_once_even_with_a_cadence(simulated_gateway):
    """A position change reaches reqPositions subscribers without waiting for the cadence."""

    async def body() -> None:
        async with simulated_gateway("three_fund", account_push_interval=3600) as gateway:
            ib = await connect(gateway.port)
            gateway.set_quantity("DU5000001", "VOO", 200)
            await until(
                lambda: (
                    [p.position for p in ib.positions("DU5000001") if p.contract.symbol == "VOO"]
                    == [200.0]
                ),
                5,
                "position update",
            )
            excess = f"{gateway.figures('DU5000001')['ExcessLiquidity']:.2f}"
            await until(
                lambda: value(ib, "DU5000001", "ExcessLiquidity", "USD") == excess,
                5,
                "the new ExcessLiquidity",
            )
            ib.disconnect()

    run(body())


# -- connectivity, timeline, disconnects, restarts --------------------------------------------


def test_connectivity_errors_reach_ib_async_from_the_timeline(simulated_gateway, scenario_file):
    """Timeline errors 1100/1101/1102 arrive on errorEvent; 1100 pauses streaming."""
    path = scenario_file(
        reg_t(
            top="speed = 100.0",
            steps="""
    [[steps]]
    at = 1
    error = 1100
    [[steps]]
    at = 2
    error = 1102
    [[steps]]
    at = 3
    error = 1101
    """,
        )
    )

    async def body() -> None:
        async with simulated_gateway(path, pnl_interval=0) as gateway:
            ib = await connect(gateway.port)
            errors: list[tuple[int, int]] = []
            ib.errorEvent += lambda req_id, code, message, contract: errors.append((req_id, code))
            gateway.set_quantity("DU9000001", "XYZ", 100)
            single = ib.reqPnLSingle("DU9000001", "", 4242)
            await until(lambda: single.value == pytest.approx(4000.0), 5, "the first XYZ pnlSingle")
            await gateway.apply_step(gateway.scenario.steps[0])  # 1100: the link is down
            await until(lambda: (-1, 1100) in errors, 5, "error 1100")
            gateway.set_prices({"XYZ": 41.0})
            await ib.reqCurrentTimeAsync()  # a round trip: anything streamed would be here
            assert single.value == pytest.approx(4000.0)
            await gateway.apply_step(gateway.scenario.steps[1])  # 1102: data maintained
            await until(lambda: single.value == pytest.approx(4100.0), 5, "push after 1102")
            await gateway.apply_step(gateway.scenario.steps[2])  # 1101: subscriptions lost
            await until(lambda: (-1, 1101) in errors, 5, "error 1101")
            gateway.set_prices({"XYZ": 42.0})
            await ib.reqCurrentTimeAsync()
            assert single.value == pytest.approx(4100.0)
            assert [code for _, code in errors if code >= 1100] == [1100, 1102, 1101]
            ib.disconnect()

    run(body())


def test_timeline_plays_at_speed_and_loops_from_the_start(simulated_gateway, scenario_file):
    """Steps apply in scenario time; timeline_done is set; a loop restarts from the start state."""
    path = scenario_file(
        reg_t(
            top="end_at = 4",
            steps="""
    [[steps]]
    at = 1
    prices = { XYZ = 50.0 }
    [[steps]]
    at = 2
    set_cash = { USD = 12000.0 }
    """,
        )
    )

    async def body() -> None:
        async with simulated_gateway(path, speed=200) as gateway:
            await asyncio.wait_for(gateway.run_timeline(), 5)
            assert gateway.timeline_done.is_set()
            assert gateway.steps_applied == 2
            assert gateway.figures("DU9000001")["NetLiquidation"] == 12000.0
            looping = asyncio.ensure_future(gateway.run_timeline(loop=True))
            await gateway.wait_until(lambda: gateway.timeline_passes >= 3)
            await gateway.wait_until(lambda: gateway.price("XYZ") == 40.0)  # reset at loop start
            looping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await looping

    run(body())


def test_disconnect_then_restart_and_reconnect(simulated_gateway):
    """drop_clients and restart disconnect ib_async; after the restart it connects again."""

    async def body() -> None:
        async with simulated_gateway("healthy") as gateway:
            port = gateway.port
            ib = await connect(port)
            dropped = asyncio.Event()
            ib.disconnectedEvent += dropped.set
            await gateway.drop_clients()
            await asyncio.wait_for(dropped.wait(), 5)
            assert gateway.listening
            ib = await connect(port)
            dropped = asyncio.Event()
            ib.disconnectedEvent += dropped.set
            restart = asyncio.ensure_future(gateway.restart(0.3))
            await asyncio.wait_for(dropped.wait(), 5)
            await gateway.wait_until(lambda: not gateway.listening)
            with pytest.raises(OSError):
                await asyncio.open_connection(HOST, port)
            await asyncio.wait_for(restart, 5)
            assert gateway.listening and gateway.port == port and gateway.restarts == 1
            ib = await connect(port)
            assert ib.managedAccounts() == ["DU2000001", "DU2000002"]
            ib.disconnect()

    run(body())


def test_timeline_restart_step_comes_back_on_the_same_port(simulated_gateway, scenario_file):
    """A `restart = N` step closes everything and listens again after N scenario seconds."""
    path = scenario_file(reg_t(top="speed = 10.0", steps="[[steps]]\n    at = 0\n    restart = 2"))

    async def body() -> None:
        async with simulated_gateway(path) as gateway:
            port = gateway.port
            ib = await connect(port)
            await gateway.run_timeline()
            await until(lambda: not ib.isConnected(), 5, "the drop")
            await gateway.wait_until(lambda: gateway.listening and gateway.restarts == 1)
            ib = await connect(port)
            assert ib.isConnected()
            ib.disconnect()

    run(body())


def test_client_id_in_use_gets_326_and_is_closed(simulated_gateway):
    """A second connection with a connected client id gets error 326 and is dropped."""

    async def body() -> None:
        async with simulated_gateway("healthy") as gateway:
            first = await connect(gateway.port, client_id=5)
            second = IB()
            codes: list[int] = []
            second.errorEvent += lambda req_id, code, message, contract: codes.append(code)
            attempt = asyncio.ensure_future(
                second.connectAsync(HOST, gateway.port, clientId=5, readonly=True, timeout=5)
            )
            await until(lambda: 326 in codes, 5, "error 326")
            await until(lambda: not second.client.isConnected(), 5, "the close")
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, TimeoutError):
                await attempt
            assert gateway.clients == [5]
            assert first.isConnected()
            await first.reqCurrentTimeAsync()
            first.disconnect()

    run(body())


# -- faults -----------------------------------------------------------------------------------


def test_garbage_frames_do_not_kill_the_server(simulated_gateway, caplog):
    """Malformed frames are dropped by ib_async; a truncated one ends that connection only."""
    caplog.set_level(logging.INFO)

    async def body() -> None:
        async with simulated_gateway("three_fund") as gateway:
            ib = await connect(gateway.port, client_id=1)
            for kind in ("wrong_field_count", "non_numeric", "unknown_id"):
                assert await gateway.send_garbage(kind) == 1
                await ib.reqCurrentTimeAsync()  # the connection still works
            assert any(
                "Error" in r.getMessage() for r in caplog.records if r.name.startswith("ib_async")
            )
            dropped = asyncio.Event()
            ib.disconnectedEvent += dropped.set
            assert await gateway.send_garbage("truncated") == 1
            await asyncio.wait_for(dropped.wait(), 5)
            other = await connect(gateway.port, client_id=2)
            assert other.managedAccounts() == ["DU5000001"]
            other.disconnect()
            with pytest.raises(ValueError):
                await gateway.send_garbage("nonsense")
        assert set(GARBAGE_KINDS) == {"wrong_field_count", "non_numeric", "truncated", "unknown_id"}

    run(body())


def test_garbage_from_clients_is_logged_and_the_server_carries_on(simulated_gateway):
    """Bad prefixes, oversized or malformed frames and early messages never stop the server."""

    def abuse(port: int) -> None:
        bad_prefix = socket.create_connection((HOST, port), timeout=5)
        bad_prefix.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert bad_prefix.recv(100) == b""
        bad_prefix.close()
        huge = socket.create_connection((HOST, port), timeout=5)
        huge.sendall(b"API\0" + version_frame("v100..176"))
        huge.recv(100)
        huge.sendall(struct.pack(">I", 0x7FFFFFFF) + b"x")
        assert huge.recv(100) == b""
        huge.close()
        client = RawClient(port)
        client.sock.sendall(b"API\0" + version_frame("v100..176"))
        client.read()
        client.send_fields(6, 2, 1, "DU5000001")  # before startApi: ignored
        client.send_fields("abc", 1)  # non-numeric message id
        client.send_fields(71, 2, 3, "")
        client.read_until("9")
        client.send_fields(62, 1)  # reqAccountSummary without its fields
        client.send_fields(1234, 1, "x")  # unknown id
        client.send_fields(49, 1)  # still answered
        assert client.read_until("49")[0] == "49"
        client.sock.sendall(struct.pack(">I", 50) + b"\x00partial")  # truncated, then gone
        client.close()

    async def body() -> None:
        async with simulated_gateway("three_fund") as gateway:
            await asyncio.to_thread(abuse, gateway.port)
            await gateway.wait_for_clients(0)
            ib = await connect(gateway.port)
            assert ib.managedAccounts() == ["DU5000001"]
            ib.disconnect()

    run(body())


def test_order_messages_are_recorded_and_never_executed(simulated_gateway):
    """placeOrder, cancelOrder, reqGlobalCancel from a raw client land in orders_received."""

    def place(port: int) -> None:
        client = raw_start(port, 11)
        client.send_fields(
            3, 7, 0, "AAPL", "STK", "", 0.0, "", "", "SMART", "", "USD", "", "", "BUY", 10, "MKT"
        )
        client.send_fields(4, 1, 7, "")
        client.send_fields(58, 1)
        client.send_fields(49, 1)
        client.read_until("49")
        client.close()

    async def body() -> None:
        async with simulated_gateway("healthy") as gateway:
            await asyncio.to_thread(place, gateway.port)
            await gateway.wait_until(lambda: len(gateway.orders_received) == 3)
            assert [fields[0] for fields in gateway.orders_received] == ["3", "4", "58"]
            assert gateway.orders_received[0][3:5] == ["AAPL", "STK"]
            positions = {h.symbol: h.quantity for h in gateway.state.holdings("DU2000001")}
            assert positions["AAPL"] == 40  # nothing was bought

    run(body())


# -- serve() ----------------------------------------------------------------------------------


def test_serve_runs_until_cancelled():
    """serve() listens on the given port, plays the scenario and stops cleanly when cancelled."""

    async def body() -> None:
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        task = asyncio.ensure_future(serve("healthy", port=port, speed=100.0))
        deadline = time.monotonic() + 5
        while True:
            try:
                ib = await connect(port)
                break
            except (ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)
        assert ib.managedAccounts() == ["DU2000001", "DU2000002"]
        ib.disconnect()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with pytest.raises(OSError):
            await asyncio.open_connection(HOST, port)

    run(body())
