"""The TWS API wire format the simulated gateway speaks (monitor/sim/protocol.py): framing,
field layouts per server version, and two real clients (ib_async, the official ibapi) parsing it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from gateway_support import HOST, connect, run
from ib_async import Stock
from ib_async.wrapper import RequestError

from monitor.sim import protocol as P

# -- framing and fields -----------------------------------------------------------------------


def test_a_frame_is_a_length_prefix_and_nul_ended_fields():
    """frame() writes 4 big-endian length bytes then each field ended by NUL; split_fields()
    reads them back. Bools are 1/0, None is empty, integral floats lose their ".0"."""
    data = P.frame([6, 2, "NetLiquidation", 1500.0, True, None, 0.1])
    payload = b"6\x002\x00NetLiquidation\x001500\x001\x00\x000.1\x00"
    assert data == len(payload).to_bytes(4, "big") + payload
    assert P.split_fields(data[4:]) == ["6", "2", "NetLiquidation", "1500", "1", "", "0.1"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("v157..178", (157, 178)), ("v100..226 +opts", (100, 226)), ("v176", (176, 176)), ("x", None)],
)
def test_the_handshake_version_range_is_parsed(text, expected):
    """The client's "vLOW..HIGH" (options after a space, a single version, or garbage)."""
    assert P.parse_version_range(text) == expected


def test_numeric_fields_read_as_tws_writes_them():
    """An empty integer field is the default, "1.0" is 1, "1"/"true" are true, money has two
    decimals and a ratio six."""
    assert (P.as_int(""), P.as_int("", -1), P.as_int("12"), P.as_int("1.0")) == (0, -1, 12, 1)
    assert (P.as_bool("1"), P.as_bool("True"), P.as_bool("0"), P.as_bool("")) == (
        True,
        True,
        False,
        False,
    )
    assert (P.fmt_money(-10000), P.fmt_ratio(0.3127451), P.fmt_number(500.0)) == (
        "-10000.00",
        "0.312745",
        "500",
    )


def test_messages_ib_async_unpacks_by_position_have_its_field_counts():
    """portfolioValue has exactly 20 fields, position 16, positionMulti 18, tickPrice 7
    (ib_async unpacks these by position and drops a message of any other length)."""
    contract = {
        "con_id": 1,
        "symbol": "SPY",
        "sec_type": "STK",
        "multiplier": 1.0,
        "currency": "USD",
    }
    portfolio = P.portfolio_value(
        account="DU1", primary_exchange="ARCA", position=10, market_price=500.0,
        market_value=5000.0, average_cost=400.0, unrealized_pnl=1000.0, realized_pnl=0.0,
        **contract,
    )  # fmt: skip
    position = P.position(
        account="DU1", exchange="ARCA", quantity=10, average_cost=400.0, **contract
    )
    multi = P.position_multi(
        req_id=9, account="DU1", exchange="ARCA", quantity=10, average_cost=400.0, **contract
    )
    assert [len(portfolio), len(position), len(multi), len(P.tick_price(1, 4, 500.0, 100))] == [
        20,
        16,
        18,
        7,
    ]
    assert portfolio[13:19] == ["10", "500", "5000.00", "400", "1000.00", "0.00"]


def test_layouts_follow_the_negotiated_server_version():
    """error gains advancedOrderRejectJson from v166; contractDetails carries a version field
    and mdSizeMultiplier before v164, and minSize/sizeIncrement/suggestedSizeIncrement from it."""
    assert P.error(165, -1, 2104) == [4, 2, -1, 2104, "Market data farm connection is OK:usfarm"]
    assert P.error(166, 7, 200, "no such contract") == [4, 2, 7, 200, "no such contract", ""]
    details = {
        "symbol": "SOXL",
        "sec_type": "STK",
        "exchange": "SMART",
        "primary_exchange": "ARCA",
        "currency": "USD",
        "con_id": 42,
        "multiplier": 1.0,
        "long_name": "DRX",
        "stock_type": "ETF",
    }
    old, new = P.contract_details(157, 5, **details), P.contract_details(176, 5, **details)
    assert old[:3] == [P.Out.CONTRACT_DATA, 8, 5] and new[:2] == [P.Out.CONTRACT_DATA, 5]
    assert old[15] == 1  # mdSizeMultiplier, gone from v164
    assert old[-1] == "ETF" and new[-4:] == ["ETF", "0.0001", "0.0001", "100"]


# -- real clients -----------------------------------------------------------------------------


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
