"""The simulated IB Gateway, exercised through the real ib_async and ibapi clients over loopback.

Every test runs a real asyncio TCP server on 127.0.0.1 and a real client; nothing is mocked.
Waiting is done on client events or gateway state with deadlines, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from typing import Any

import pytest
from ib_async import IB, Contract, Stock
from ib_async.wrapper import RequestError

from monitor.sim.protocol import frame, split_fields
from monitor.sim.scenarios import ScenarioError, builtin_scenarios, load_scenario
from monitor.sim.server import GARBAGE_KINDS, SimulatedGateway, serve

HOST = "127.0.0.1"

REG_T = """
    # Reg T worked example (margin-rules.md section 5): deposit 10,000, buy 500 @ 40.
    name = "regt"
    {top}
    [instruments.XYZ]
    con_id = 4242
    price = 40.0
    [[accounts]]
    id = "DU9000001"
    cash = {{ USD = 10000.0 }}
    {steps}
"""


def reg_t(top: str = "", steps: str = "") -> str:
    """The Reg T scenario text with extra top-level keys and steps."""
    return REG_T.format(top=top, steps=steps)


def run(coroutine: Any, timeout: float = 20.0) -> Any:
    """Run one async test body with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


async def until(
    predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` until it holds (deadline-bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def connect(port: int, client_id: int = 1, timeout: float = 5.0, **options: Any) -> IB:
    """A read-only ib_async connection, the way the monitor connects."""
    ib = IB()
    ib.RaiseRequestErrors = True
    await ib.connectAsync(HOST, port, clientId=client_id, readonly=True, timeout=timeout, **options)
    return ib


def value(ib: IB, account: str, tag: str, currency: str) -> str | None:
    """The latest account value ib_async holds for (account, tag, currency)."""
    for item in ib.accountValues(account):
        if item.tag == tag and item.currency == currency and not item.modelCode:
            return item.value
    return None


def no_timeouts(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ib_async's own "... request timed out" errors (a request left unanswered)."""
    return [r.getMessage() for r in caplog.records if "timed out" in r.getMessage()]


# -- raw socket client (for orders and protocol abuse) ----------------------------------------


class RawClient:
    """A minimal TWS API client on a plain socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.buffer = b""

    def send_fields(self, *fields: object) -> None:
        self.sock.sendall(frame(list(fields)))

    def read(self) -> list[str]:
        while True:
            if len(self.buffer) >= 4:
                size = struct.unpack(">I", self.buffer[:4])[0]
                if len(self.buffer) >= 4 + size:
                    payload, self.buffer = self.buffer[4 : 4 + size], self.buffer[4 + size :]
                    return split_fields(payload)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buffer += data

    def read_until(self, message_id: str) -> list[str]:
        while True:
            fields = self.read()
            if fields and fields[0] == message_id:
                return fields

    def close(self) -> None:
        self.sock.close()


def _version_frame(text: str) -> bytes:
    payload = text.encode()
    return struct.pack(">I", len(payload)) + payload


def raw_start(port: int, client_id: int) -> RawClient:
    """Connect, hand-shake and start the API; returns after nextValidId."""
    client = RawClient(port)
    client.sock.sendall(b"API\0" + _version_frame("v100..176"))
    version, _ = client.read()
    assert version == "176"
    client.send_fields(71, 2, client_id, "")
    client.read_until("9")
    return client


# -- connecting -----------------------------------------------------------------------------


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
                await until(lambda ib=ib: value(ib, "DU2000001", "NetLiquidation", "USD") == target)
            first.disconnect()
            second.disconnect()
            await gateway.wait_for_clients(0)

    run(body())


# -- requests -------------------------------------------------------------------------------


def test_account_summary_all_tags_and_ledger(simulated_gateway):
    """reqAccountSummary returns every tag per account; Cushion has an empty currency."""

    async def body() -> None:
        async with simulated_gateway("eur_base") as gateway:
            ib = await connect(gateway.port)
            await ib.reqAccountSummaryAsync()
            rows = {
                (v.account, v.tag, v.currency): v.value for v in ib.wrapper.acctSummary.values()
            }
            figures = gateway.figures("DU7000001")
            assert float(rows[("DU7000001", "NetLiquidation", "EUR")]) == pytest.approx(55904.0)
            assert float(rows[("DU7000001", "ExcessLiquidity", "EUR")]) == pytest.approx(
                figures["ExcessLiquidity"], abs=0.01
            )
            assert float(rows[("DU7000001", "Cushion", "")]) == pytest.approx(
                figures["Cushion"], abs=1e-6
            )
            assert float(rows[("DU7000001", "TotalCashBalance", "BASE")]) == pytest.approx(-31800.0)
            assert float(rows[("DU7000001", "TotalCashBalance", "USD")]) == pytest.approx(-40000.0)
            assert float(rows[("DU7000001", "ExchangeRate", "USD")]) == pytest.approx(0.92)
            assert rows[("DU7000001", "AccountType", "")] == "INDIVIDUAL"
            gateway.set_fx(None, {"USD": 0.95})
            expected = f"{gateway.figures('DU7000001')['NetLiquidation']:.2f}"
            await until(
                lambda: (
                    ib.wrapper.acctSummary[("DU7000001", "NetLiquidation", "EUR")].value == expected
                ),
                what="summary push after an FX move",
            )
            ib.disconnect()

    run(body())


def test_eur_base_account_values_per_currency(simulated_gateway):
    """A EUR base account reports margin tags in EUR and ledger rows for BASE, EUR and USD."""

    async def body() -> None:
        async with simulated_gateway("eur_base") as gateway:
            ib = await connect(gateway.port)
            account = "DU7000001"
            assert value(ib, account, "NetLiquidation", "EUR") == "55904.00"
            assert value(ib, account, "GrossPositionValue", "EUR") == "87704.00"
            assert value(ib, account, "MaintMarginReq", "EUR") == "21926.00"
            assert value(ib, account, "ExchangeRate", "EUR") == "1.00"
            assert float(value(ib, account, "ExchangeRate", "USD")) == pytest.approx(0.92)
            assert value(ib, account, "CashBalance", "USD") == "-40000.00"
            assert value(ib, account, "NetLiquidation", "USD") is None
            portfolio = {item.contract.symbol: item for item in ib.portfolio(account)}
            assert portfolio["SPY"].contract.currency == "USD"
            assert portfolio["SPY"].marketValue == pytest.approx(56000.0)
            ib.disconnect()

    run(body())


def test_pnl_single_and_pnl_stream_position_values(simulated_gateway):
    """reqPnLSingle carries the position's market value; a price move updates it at once."""

    async def body() -> None:
        async with simulated_gateway("selloff", pnl_interval=0) as gateway:
            ib = await connect(gateway.port)
            nvda = gateway.state.instruments["NVDA"].con_id
            single = ib.reqPnLSingle("DU1000001", "", nvda)
            total = ib.reqPnL("DU1000001")
            await until(lambda: single.value == pytest.approx(123 * 130.0), what="first pnlSingle")
            gateway.set_prices({"NVDA": 120.0})
            await until(lambda: single.value == pytest.approx(123 * 120.0), what="pnlSingle update")
            assert single.position == 123
            assert single.dailyPnL == pytest.approx(-1230.0)
            await until(lambda: total.dailyPnL == pytest.approx(-1230.0), what="pnl update")
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
            await until(lambda: ticker.last == 72.0 and ticker.marketDataType == 1)
            gateway.set_prices({"BND": 71.5})
            await until(lambda: ticker.last == 71.5, what="streamed tick")
            assert ticker.close == 72.0
            ib.reqMarketDataType(3)
            delayed = ib.reqMktData(schd)
            await until(lambda: delayed.last == 27.5 and delayed.marketDataType == 3)
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


@pytest.mark.parametrize("server_version", [157, 163, 176])
def test_version_dependent_layouts_parse_in_ib_async(simulated_gateway, server_version):
    """contractDetails and error layouts follow the negotiated version (157, 163, 176)."""

    async def body() -> None:
        async with simulated_gateway("leveraged_etf", server_version=server_version) as gateway:
            ib = await connect(gateway.port)
            assert ib.client.serverVersion() == server_version
            (details,) = await ib.reqContractDetailsAsync(Stock("SOXL", "SMART", "USD"))
            assert details.stockType == "ETF"
            assert details.contract.conId == gateway.state.instruments["SOXL"].con_id
            assert details.longName == "DRX DLY SEMICONDUCTOR BULL 3X"
            with pytest.raises(RequestError) as failure:
                await ib.reqContractDetailsAsync(Stock("NOPE", "SMART", "USD"))
            assert failure.value.code == 200
            ib.disconnect()

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


# -- consistent state and pushes ------------------------------------------------------------


def test_reg_t_sequence_through_ib_async(simulated_gateway, scenario_file):
    """Deposit 10,000; buy 500 @ 40; price 45; price 35: ELV / IM / AF as in margin-rules.md."""

    async def body() -> None:
        async with simulated_gateway(scenario_file(reg_t())) as gateway:
            ib = await connect(gateway.port)
            account = "DU9000001"
            assert value(ib, account, "NetLiquidation", "USD") == "10000.00"
            gateway.set_quantity(account, "XYZ", 500)  # a trade at 40: cash -10,000
            expected = [
                (40.0, "20000.00", "10000.00", "5000.00", "5000.00"),
                (45.0, "22500.00", "12500.00", "5625.00", "6875.00"),
                (35.0, "17500.00", "7500.00", "4375.00", "3125.00"),
            ]
            for price, market_value, elv, im, af in expected:
                gateway.set_prices({"XYZ": price})
                await until(
                    lambda mv=market_value: value(ib, account, "GrossPositionValue", "USD") == mv,
                    what=f"GPV {market_value}",
                )
                assert value(ib, account, "EquityWithLoanValue", "USD") == elv
                assert value(ib, account, "InitMarginReq", "USD") == im
                assert value(ib, account, "AvailableFunds", "USD") == af
                assert value(ib, account, "TotalCashBalance", "BASE") == "-10000.00"
                figures = gateway.figures(account)
                assert figures["EquityWithLoanValue"] == pytest.approx(float(elv))
                assert figures["AvailableFunds"] == pytest.approx(float(af))
                excess = float(value(ib, account, "ExcessLiquidity", "USD"))
                assert excess == pytest.approx(float(elv) - float(im))
                assert float(value(ib, account, "Cushion", "")) == pytest.approx(
                    excess / float(elv), abs=1e-6
                )
                (item,) = ib.portfolio(account)
                assert item.marketValue == pytest.approx(float(market_value))
            assert [p.position for p in ib.positions(account)] == [500.0]
            ib.disconnect()

    run(body())


def test_selloff_step_pushes_recomputed_excess_liquidity_and_cushion(simulated_gateway):
    """A timeline step's price move reaches ib_async as the gateway's recomputed figures."""

    async def body() -> None:
        async with simulated_gateway("selloff") as gateway:
            ib = await connect(gateway.port)
            account = "DU1000001"
            for step in gateway.scenario.steps[:5]:
                await gateway.apply_step(step)
                figures = gateway.figures(account)
                cushion = f"{figures['Cushion']:.6f}"
                await until(lambda cushion=cushion: value(ib, account, "Cushion", "") == cushion)
                received = float(value(ib, account, "ExcessLiquidity", "USD"))
                nlv = float(value(ib, account, "NetLiquidation", "USD"))
                maint = float(value(ib, account, "MaintMarginReq", "USD"))
                assert received == pytest.approx(figures["ExcessLiquidity"], abs=0.01)
                assert received == pytest.approx(nlv - maint, abs=0.02)
                assert float(cushion) == pytest.approx(received / nlv, abs=1e-5)
            assert float(value(ib, account, "Cushion", "")) < 0.10
            ib.disconnect()

    run(body())


def test_cadence_streams_pnl_but_holds_account_values_until_the_tick(simulated_gateway):
    """With account_push_interval > 0, PnL moves at once; account values wait for the tick."""

    async def body() -> None:
        async with simulated_gateway(
            "three_fund", account_push_interval=0.5, pnl_interval=0
        ) as gateway:
            ib = await connect(gateway.port)
            account = "DU5000001"
            voo = ib.reqPnLSingle(account, "", gateway.state.instruments["VOO"].con_id)
            await until(lambda: voo.value == pytest.approx(119995.0))
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
            await until(lambda: "pnl" in seen, what="the PnL update")
            assert seen["pnl"] == (moved_at, old_excess)  # PnL at once, values unchanged
            await until(lambda: "value" in seen, timeout=3, what="the cadence push")
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
                what="position update",
            )
            excess = f"{gateway.figures('DU5000001')['ExcessLiquidity']:.2f}"
            await until(lambda: value(ib, "DU5000001", "ExcessLiquidity", "USD") == excess)
            ib.disconnect()

    run(body())


def test_value_overrides_reach_the_client_and_clear(simulated_gateway):
    """Overrides (empty, IB's unset sentinel, numbers) win over computed values until cleared."""

    async def body() -> None:
        async with simulated_gateway("sma_lookahead") as gateway:
            ib = await connect(gateway.port)
            account = "DU6000001"
            assert value(ib, account, "SMA", "USD") == "-5000.00"
            assert value(ib, account, "LookAheadExcessLiquidity", "USD") == "-5000.00"
            next_change = float(value(ib, account, "LookAheadNextChange", ""))
            assert next_change > time.time()
            gateway.set_values(
                account,
                {"Cushion": "", "ExcessLiquidity": "1.7976931348623157E308", "SMA": "-7500.00"},
            )
            await until(lambda: value(ib, account, "SMA", "USD") == "-7500.00")
            assert value(ib, account, "SMA-S", "USD") == "-7500.00"
            assert value(ib, account, "Cushion", "") == ""
            assert value(ib, account, "ExcessLiquidity", "USD") == "1.7976931348623157E308"
            figures = gateway.figures(account)
            assert "Cushion" not in figures and "ExcessLiquidity" not in figures
            assert figures["SMA"] == -7500.0
            gateway.clear_values(account)
            await until(lambda: value(ib, account, "SMA", "USD") == "-5000.00")
            assert value(ib, account, "ExcessLiquidity", "USD") == "47500.00"
            ib.disconnect()

    run(body())


# -- connectivity, disconnects, restarts ----------------------------------------------------


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
            await until(lambda: single.value == pytest.approx(4000.0))
            await gateway.apply_step(gateway.scenario.steps[0])  # 1100: the link is down
            await until(lambda: (-1, 1100) in errors)
            gateway.set_prices({"XYZ": 41.0})
            await ib.reqCurrentTimeAsync()  # a round trip: anything streamed would be here
            assert single.value == pytest.approx(4000.0)
            await gateway.apply_step(gateway.scenario.steps[1])  # 1102: data maintained
            await until(lambda: single.value == pytest.approx(4100.0), what="push after 1102")
            await gateway.apply_step(gateway.scenario.steps[2])  # 1101: subscriptions lost
            await until(lambda: (-1, 1101) in errors)
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
            await until(lambda: not ib.isConnected(), what="the drop")
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
            await until(lambda: 326 in codes, what="error 326")
            await until(lambda: not second.client.isConnected(), what="the close")
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, TimeoutError):
                await attempt
            assert gateway.clients == [5]
            assert first.isConnected()
            await first.reqCurrentTimeAsync()
            first.disconnect()

    run(body())


# -- faults ---------------------------------------------------------------------------------


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
        huge.sendall(b"API\0" + _version_frame("v100..176"))
        huge.recv(100)
        huge.sendall(struct.pack(">I", 0x7FFFFFFF) + b"x")
        assert huge.recv(100) == b""
        huge.close()
        client = RawClient(port)
        client.sock.sendall(b"API\0" + _version_frame("v100..176"))
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


# -- the official ibapi client --------------------------------------------------------------


def _ibapi_session(port: int) -> dict[str, Any]:
    """Connect the official ibapi client in its own threads; collect what it receives."""
    from ibapi.client import EClient
    from ibapi.wrapper import EWrapper

    class App(EWrapper, EClient):
        def __init__(self) -> None:
            EClient.__init__(self, self)
            self.got: dict[str, Any] = {"summary": {}, "positions": [], "errors": []}
            self.ready = threading.Event()
            self.summary_done = threading.Event()
            self.positions_done = threading.Event()

        def managedAccounts(self, accountsList: str) -> None:
            self.got["accounts"] = accountsList

        def nextValidId(self, orderId: int) -> None:
            self.got["next_id"] = orderId
            self.ready.set()

        def error(self, reqId: int, errorCode: int, errorString: str, *rest: Any) -> None:
            self.got["errors"].append(errorCode)

        def accountSummary(self, reqId, account, tag, value, currency) -> None:
            self.got["summary"][(account, tag, currency)] = value

        def accountSummaryEnd(self, reqId: int) -> None:
            self.summary_done.set()

        def position(self, account, contract, position, avgCost) -> None:
            self.got["positions"].append((account, contract.symbol, position, avgCost))

        def positionEnd(self) -> None:
            self.positions_done.set()

    app = App()
    app.connect(HOST, port, 21)
    reader = threading.Thread(target=app.run, daemon=True)
    reader.start()
    try:
        assert app.ready.wait(5), "no nextValidId"
        app.reqAccountSummary(1, "All", "NetLiquidation,ExcessLiquidity,Cushion,$LEDGER")
        app.reqPositions()
        assert app.summary_done.wait(5), "no accountSummaryEnd"
        assert app.positions_done.wait(5), "no positionEnd"
        app.got["server_version"] = app.serverVersion()
    finally:
        app.disconnect()
        reader.join(5)
    return app.got


def test_official_ibapi_client_connects_and_reads(simulated_gateway):
    """The PyPI ibapi client (its own version range) gets accounts, summary and positions."""

    async def body() -> dict[str, Any]:
        async with simulated_gateway("selloff") as gateway:
            got = await asyncio.to_thread(_ibapi_session, gateway.port)
            figures = gateway.figures("DU1000001")
        return {"got": got, "figures": figures}

    result = run(body())
    got, figures = result["got"], result["figures"]
    assert got["accounts"] == "DU1000001,DU1000002"
    assert got["next_id"] == 1
    assert {2104, 2106, 2158} <= set(got["errors"])
    assert float(got["summary"][("DU1000001", "NetLiquidation", "USD")]) == pytest.approx(
        figures["NetLiquidation"]
    )
    assert float(got["summary"][("DU1000001", "Cushion", "")]) == pytest.approx(
        figures["Cushion"], abs=1e-6
    )
    assert ("DU1000001", "TotalCashBalance", "BASE") in got["summary"]
    assert ("DU1000002", "VTI", 180.0, 250.0) in got["positions"]
    assert len(got["positions"]) == 12
    assert 157 <= got["server_version"] <= 176


# -- scenarios ------------------------------------------------------------------------------


def test_builtin_scenarios_load_by_name():
    """Every shipped scenario loads by bare name and names its accounts."""
    names = builtin_scenarios()
    assert {
        "selloff",
        "healthy",
        "leveraged_etf",
        "concentrated",
        "three_fund",
        "sma_lookahead",
        "eur_base",
    } <= set(names)
    for name in names:
        scenario = load_scenario(name)
        assert scenario.accounts and scenario.name == name
        SimulatedGateway(scenario).figures(scenario.account_ids[0])


def _cushions_along(name: str, account: str) -> list[float]:
    async def body() -> list[float]:
        gateway = SimulatedGateway(name)
        path = [gateway.figures(account)["Cushion"]]
        for step in gateway.scenario.steps:
            await gateway.apply_step(step)
            path.append(gateway.figures(account)["Cushion"])
        return path

    return run(body())


def test_selloff_story_warning_critical_recovery():
    """Cushion ~30% -> below 20% for 2+ steps -> below 10% for 2+ steps -> above 22% to the end."""
    scenario = load_scenario("selloff")
    assert 20 <= scenario.duration / scenario.speed <= 30
    path = _cushions_along("selloff", "DU1000001")
    assert path[0] == pytest.approx(0.30, abs=0.01)
    bands = ["ok" if c >= 0.20 else "warning" if c >= 0.10 else "critical" for c in path]
    runs: list[tuple[str, int]] = []
    for band in bands:
        if runs and runs[-1][0] == band:
            runs[-1] = (band, runs[-1][1] + 1)
        else:
            runs.append((band, 1))
    assert [band for band, _ in runs] == ["ok", "warning", "critical", "ok"]
    assert all(count >= 2 for _, count in runs)
    rebound = path[bands.index("critical") + runs[2][1] :]
    assert min(rebound) > 0.22
    assert min(_cushions_along("selloff", "DU1000002")) > 0.5


def test_rule_coverage_scenarios_have_their_conditions():
    """Each rule-coverage scenario really holds the condition its rule checks."""

    def share(gateway: SimulatedGateway, account: str, symbols: set[str]) -> float:
        state = gateway.state
        total = sum(
            state.value(h).market_value * state.accounts[account].rate(h.instrument.currency)
            for h in state.holdings(account)
            if h.symbol in symbols
        )
        return total / gateway.figures(account)["NetLiquidation"]

    lev = SimulatedGateway("leveraged_etf")
    assert share(lev, "DU3000001", {"TQQQ", "SOXL"}) > 0.10
    assert lev.state.instruments["TQQQ"].stock_type == "ETF"

    conc = SimulatedGateway("concentrated")
    zeni = conc.state.instruments["ZENI"]
    assert share(conc, "DU4000001", {"ZENI"}) > 0.20
    assert zeni.stock_type == "COMMON" and conc.scenario.gateway.fundamentals_entitled
    assert 40_000 / zeni.shares_outstanding > 0.01

    drift = SimulatedGateway("three_fund")
    weights = {s: share(drift, "DU5000001", {s}) for s in ("SCHD", "VOO", "BND")}
    targets = {"SCHD": 0.40, "VOO": 0.40, "BND": 0.20}
    assert max(abs(weights[s] - targets[s]) for s in targets) > 0.05

    sma = SimulatedGateway("sma_lookahead").figures("DU6000001")
    assert sma["SMA"] < 0 and sma["LookAheadExcessLiquidity"] < 0
    assert sma["LookAheadNextChange"] > time.time()
    assert sma["ExcessLiquidity"] > 0

    eur = SimulatedGateway("eur_base")
    rows = {(tag, ccy): text for tag, text, ccy in eur.account_values("DU7000001")}
    assert ("NetLiquidation", "EUR") in rows and float(rows[("ExchangeRate", "USD")]) < 1
    assert float(rows[("TotalCashBalance", "USD")]) < 0


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"accounts": []}, "at least one"),
        ({"accounts": [{"id": "DU1", "bogus": 1}]}, r"accounts\[0\]\.bogus: unknown key"),
        (
            {"accounts": [{"id": "DU1", "positions": [{"symbol": "X", "quantity": 1}]}]},
            "needs a price",
        ),
        (
            {"accounts": [{"id": "DU1", "cash": {"EUR": 5.0}}]},
            "no exchange rate to USD for EUR",
        ),
        (
            {
                "accounts": [{"id": "DU1"}],
                "steps": [{"at": 1, "error": 1100, "disconnect": True}],
            },
            "exactly one action",
        ),
        (
            {"accounts": [{"id": "DU1"}], "steps": [{"at": 1, "prices": {"NOPE": 1.0}}]},
            "unknown symbol",
        ),
        (
            {"instruments": {"X": {"price": 1.0, "maint_rate": 25}}, "accounts": [{"id": "DU1"}]},
            "a rate is a fraction",
        ),
    ],
    ids=[
        "no-accounts",
        "unknown-key",
        "no-price",
        "no-fx",
        "two-actions",
        "unknown-symbol",
        "rate",
    ],
)
def test_invalid_scenarios_are_rejected_with_the_key(broken, message):
    """A broken scenario stops with a message naming the key and the problem."""
    with pytest.raises(ScenarioError, match=message):
        load_scenario(broken)


def test_unknown_scenario_name_lists_the_builtin_ones():
    """A name that is neither a file nor built in says which ones exist."""
    with pytest.raises(ScenarioError, match="selloff"):
        load_scenario("no-such-scenario")


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
