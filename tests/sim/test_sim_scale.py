"""An advisor's book at scale (issue 14): generated books, the random-walk price process and
its hot path, through the real ib_async. Throughput is measured in bench/sim_price_rate.py,
not asserted here."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections import Counter

import pytest
from gateway_support import connect, run
from ib_async import Contract
from support import until

from monitor.sim import protocol as P
from monitor.sim.scenarios import GENERATED_CON_ID_BASE, ScenarioError, load_scenario


def test_a_generated_book_by_name_is_deterministic():
    """generated:3x4x6: 3 accounts of 4 holdings drawn from 6 contracts, the first 6 // 5 = 1
    a fund every account holds; the same name gives the same book; cash is a loan of 25% of
    each account's GPV."""
    book = load_scenario("generated:3x4x6")
    again = load_scenario("generated:3x4x6")
    assert book == again
    assert book.account_ids == ["DU8000001", "DU8000002", "DU8000003"]
    assert len(book.resolved_instruments) == 6
    assert book.resolved_instruments["FND001"].stock_type == "ETF"
    assert book.resolved_instruments["FND001"].con_id == GENERATED_CON_ID_BASE
    for account in book.accounts:
        symbols = [position.symbol for position in account.positions]
        assert len(symbols) == len(set(symbols)) == 4 and symbols[0] == "FND001"
        gross = sum(
            p.quantity * book.resolved_instruments[p.symbol].price for p in account.positions
        )
        assert account.cash["USD"] == pytest.approx(-0.25 * gross, abs=0.01)


def test_a_generate_table_joins_the_file_and_steps_may_name_its_accounts():
    """[generate] adds its book to the accounts and instruments the file gives; a step can
    name a generated account and symbol; a bad shape is one line."""
    scenario = load_scenario(
        {
            "generate": {"accounts": 2, "holdings": 2, "contracts": 3, "funds": 1, "seed": 7},
            "accounts": [{"id": "DU1"}],
            "steps": [
                {"at": 1, "set_cash": {"USD": 5.0}, "account": "DU8000002"},
                {"at": 2, "moves": {"STK0001": -0.1}},
            ],
        }
    )
    assert scenario.account_ids == ["DU1", "DU8000001", "DU8000002"]
    with pytest.raises(ScenarioError, match=r"generate: holdings \(5\) exceed contracts \(3\)"):
        load_scenario({"generate": {"holdings": 5, "contracts": 3}, "accounts": [{"id": "DU1"}]})
    with pytest.raises(ScenarioError, match="expected generated:ACCOUNTSxHOLDINGSxCONTRACTS"):
        load_scenario("generated:100x200")


@pytest.mark.parametrize("quantity", [100.0, -3.0, 0.0, 12.5])
def test_frames_built_once_per_contract_are_the_same_bytes(quantity):
    """The hot path's frames (head, reqId, shared tail) equal the general encoder's."""
    pnl = P.pnl_single(4711, quantity, -12.345, 1_000.005, 0.0, 98_765.4321)
    tail = P.encode_tail(pnl[2:])
    assert P.frame_with_req_id(P.PNL_SINGLE_HEAD, 4711, tail) == P.frame(pnl)
    tick = P.tick_price(17, 4, 512.3456, 100)
    assert P.frame_with_req_id(P.TICK_PRICE_HEAD, 17, P.encode_tail(tick[3:])) == P.frame(tick)


def test_a_price_update_reaches_every_subscription_on_its_contract_and_no_other(
    simulated_gateway,
):
    """Two clients subscribe reqPnLSingle on every holding of two accounts sharing the fund,
    and one streams the fund's market data. After price updates only the moved contracts'
    subscriptions get a message, each of them one per batch, with the new value
    (quantity x new price); the fund's ticks follow."""
    book = "generated:2x3x5"

    async def body() -> None:
        async with simulated_gateway(book, pnl_interval=0) as gateway:
            clients = [await connect(gateway.port, client_id=n) for n in (1, 2)]
            seen: list[Counter[int]] = [Counter(), Counter()]
            for ib, counts in zip(clients, seen, strict=True):
                ib.pnlSingleEvent += lambda pnl, counts=counts: counts.update([pnl.conId])
                for account in gateway.accounts:
                    for holding in gateway.state.holdings(account):
                        ib.reqPnLSingle(account, "", holding.con_id)
            subscribed = sum(len(gateway.state.holdings(a)) for a in gateway.accounts)
            for counts in seen:
                await until(lambda c=counts: c.total() == subscribed, 5, "the first values")
            fund = gateway.state.instruments["FND001"]
            [contract] = await clients[0].qualifyContractsAsync(
                Contract(conId=fund.con_id, exchange="SMART")  # as a holder of it would ask
            )
            ticker = clients[0].reqMktData(contract)
            await until(lambda: ticker.last == fund.price, 5, "the fund's first tick")
            for counts in seen:
                counts.clear()
            moved = gateway.apply_price_updates(40)
            moved_ids = {gateway.state.instruments[s].con_id for s in moved}
            holders = {
                con_id: sum(
                    1
                    for account in gateway.accounts
                    for h in gateway.state.holdings(account)
                    if h.con_id == con_id
                )
                for con_id in moved_ids
            }
            for counts in seen:
                await until(lambda c=counts: c == Counter(holders), 5, "one message per holder")
            fund_price = gateway.price("FND001")
            if "FND001" in moved:
                await until(lambda: ticker.last == fund_price, 5, "the fund's new tick")
            for account in gateway.accounts:
                for holding in gateway.state.holdings(account):
                    [pnl] = clients[1].pnlSingle(account, "", holding.con_id)
                    price = gateway.price(holding.symbol)
                    assert pnl.value == pytest.approx(holding.quantity * price, abs=0.01)
            assert gateway.price_updates_applied == 40
            for ib in clients:
                ib.disconnect()

    run(body())


@pytest.mark.slow
def test_the_price_process_runs_at_its_rate_until_stopped(simulated_gateway):
    """With price_updates_per_second set, updates stream without anyone calling: a subscriber
    sees several values, and the account values follow within a second (push interval 0)."""

    async def body() -> None:
        async with simulated_gateway(
            "generated:1x2x2", pnl_interval=0, price_updates_per_second=500
        ) as gateway:
            ib = await connect(gateway.port)
            account = gateway.accounts[0]
            holding = gateway.state.holdings(account)[0]
            pnl = ib.reqPnLSingle(account, "", holding.con_id)
            values: set[float] = set()
            ib.pnlSingleEvent += lambda update: values.add(update.value)
            await until(lambda: len(values) >= 5, 10, "five different values")
            first = ib.accountValues(account)
            await until(lambda: ib.accountValues(account) != first, 5, "an account push")
            assert gateway.price_updates_applied > 0 and pnl.value
            ib.disconnect()

    run(body())


@pytest.mark.slow
def test_simulate_gateway_serves_a_generated_book_at_a_price_rate_in_its_own_process():
    """`margin-monitor simulate-gateway --scenario generated:2x2x3 --price-rate 200` runs in
    its own process: ib_async connects, sees both accounts and streaming values; a
    non-positive rate is refused in one line (exit 2)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "monitor.cli", "simulate-gateway"]
    command += ["--scenario", "generated:2x2x3", "--price-rate", "200", "--port", str(port)]
    gateway = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def body() -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            try:
                ib = await connect(port)
                break
            except (ConnectionRefusedError, TimeoutError, OSError):
                assert loop.time() < deadline, "the simulated gateway did not start"
                await asyncio.sleep(0.1)
        assert ib.managedAccounts() == ["DU8000001", "DU8000002"]
        position = ib.positions("DU8000001")[0]
        values: set[float] = set()
        ib.pnlSingleEvent += lambda update: values.add(update.value)
        ib.reqPnLSingle("DU8000001", "", position.contract.conId)
        await until(lambda: len(values) >= 3, 10, "three different values")
        ib.disconnect()

    try:
        run(body(), timeout=45)
    finally:
        gateway.terminate()
        gateway.wait(timeout=10)
    refused = subprocess.run(
        [*command[:-4], "--price-rate", "0"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert "--price-rate: must be a number above zero, got 0" in refused.stderr
