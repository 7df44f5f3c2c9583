"""Prices per contract, shared by every account holding it (issue 14), through the real
ib_async against the simulated gateway: one reqPnLSingle per distinct contract on one holder;
a position opened in another account reuses it; when the holder closes, the stream moves to
another holder and the others stay priced; an account joining an advisor login is priced; and
the service re-runs the rules only for the accounts whose streamed values moved."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from support import make_settings, until

from monitor.app import build_service, run_daemon
from monitor.gateway import GatewayConnector
from monitor.service import AccountView, MonitorService
from monitor.sim.server import SimulatedGateway

A, B, C = "DU6100001", "DU6100002", "DU6100003"

# SHRD is held by A and B, ONLYA by A alone, OPTN (an option, multiplier 100) by A and C,
# ONLYC by C alone. Prices move only when a test moves them.
BOOK = {
    "name": "shared",
    "gateway": {"pnl_interval": 0, "account_push_interval": 180},
    "instruments": {
        "SHRD": {"con_id": 61001, "price": 50.0},
        "ONLYA": {"con_id": 61002, "price": 20.0},
        "ONLYC": {"con_id": 61003, "price": 10.0},
        "OPTN": {
            "con_id": 61004,
            "price": 3.0,
            "sec_type": "OPT",
            "underlying": "SHRD",
            "last_trade_date": "20271217",
            "strike": 55.0,
            "right": "C",
            "multiplier": 100,
        },
    },
    "accounts": [
        {
            "id": A,
            "cash": {"USD": 10_000.0},
            "positions": [
                {"symbol": "SHRD", "quantity": 100},
                {"symbol": "ONLYA", "quantity": 300},
                {"symbol": "OPTN", "quantity": 2},
            ],
        },
        {"id": B, "cash": {"USD": 5_000.0}, "positions": [{"symbol": "SHRD", "quantity": 40}]},
        {
            "id": C,
            "cash": {"USD": 1_000.0},
            "positions": [{"symbol": "ONLYC", "quantity": 70}, {"symbol": "OPTN", "quantity": 5}],
        },
    ],
}


def subscriptions(gateway: SimulatedGateway) -> list[tuple[str, int]]:
    """Every reqPnLSingle the gateway serves now: (account, conId), sorted."""
    return sorted(
        subscription for client in gateway._clients for subscription in client.pnl_single.values()
    )


def value_of(connector: GatewayConnector, account: str, con_id: int) -> float | None:
    """The market value the connector gives ``account``'s holding of ``con_id``."""
    snapshot = connector.snapshot(account)
    assert snapshot is not None
    found = [p.market_value for p in snapshot.positions if p.con_id == con_id]
    return found[0] if found else None


@asynccontextmanager
async def connected(gateway: SimulatedGateway) -> AsyncIterator[GatewayConnector]:
    """A connector on the gateway, every holding priced."""
    connector = GatewayConnector("127.0.0.1", gateway.port, 31, fundamentals=False)
    await connector.connect()
    try:
        assert await connector.wait_ready(10), "every holding priced"
        yield connector
    finally:
        await connector.disconnect()


@asynccontextmanager
async def daemon_running(service: MonitorService, settings: Any) -> AsyncIterator[None]:
    """The daemon running ``service`` until the block ends, its three books built and every
    first evaluation done."""
    stop = asyncio.Event()
    daemon = asyncio.create_task(run_daemon(settings, stop, service))
    try:
        await until(lambda: service.connector.ready() and len(service.live.books) == 3, 10, "up")
        assert await service.settle(5)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 15)


def run(body: Any) -> None:
    asyncio.run(asyncio.wait_for(body, 30))


def test_a_contract_held_by_two_accounts_streams_once_and_prices_both(simulated_gateway):
    """Four contracts, five holdings: four streams, each on its first holder; a move of the
    shared contract reprices A and B (100 x 55 and 40 x 55), and the option's per-unit value
    carries its multiplier (C: 5 x 100 x 3.5)."""

    async def body() -> None:
        async with simulated_gateway(BOOK) as gateway, connected(gateway) as connector:
            assert subscriptions(gateway) == [(A, 61001), (A, 61002), (A, 61004), (C, 61003)]
            assert connector.stream_count() == 4
            assert connector.holders(61001) == {A, B}
            prices: list[int] = []
            connector.on_price = lambda con_id, account: prices.append(con_id)
            gateway.set_prices({"SHRD": 55.0, "OPTN": 3.5})
            await until(lambda: {61001, 61004} <= set(prices), 5, "both prices streamed")
            assert value_of(connector, A, 61001) == pytest.approx(5_500.0)
            assert value_of(connector, B, 61001) == pytest.approx(2_200.0)
            assert value_of(connector, C, 61004) == pytest.approx(1_750.0)
            assert value_of(connector, A, 61004) == pytest.approx(700.0)
            assert len(subscriptions(gateway)) == 4

    run(body())


def test_a_position_opened_elsewhere_reuses_the_stream_and_a_closing_holder_hands_it_on(
    simulated_gateway,
):
    """B buys ONLYA (A streams it): no new stream, B is priced from A's at once and follows
    its moves. Then A sells ONLYA: the stream moves to B and B follows the next move. A sells
    SHRD too: B takes that stream. C sells ONLYC: nobody holds it, the stream ends."""

    async def body() -> None:
        async with simulated_gateway(BOOK) as gateway, connected(gateway) as connector:
            gateway.set_quantity(B, "ONLYA", 50)
            await until(lambda: B in connector.holders(61002), 5, "B's new position")
            assert value_of(connector, B, 61002) == pytest.approx(50 * 20.0)
            gateway.set_prices({"ONLYA": 22.0})
            await until(lambda: value_of(connector, B, 61002) == pytest.approx(1_100.0), 5, "B")
            assert subscriptions(gateway) == [(A, 61001), (A, 61002), (A, 61004), (C, 61003)]

            gateway.set_quantity(A, "ONLYA", 0)
            await until(lambda: connector.streams().get(61002) == B, 5, "the stream moved to B")
            await until(lambda: (B, 61002) in subscriptions(gateway), 5, "B's stream served")
            assert (A, 61002) not in subscriptions(gateway)
            assert value_of(connector, B, 61002) == pytest.approx(1_100.0)  # priced meanwhile
            gateway.set_prices({"ONLYA": 18.0})
            await until(lambda: value_of(connector, B, 61002) == pytest.approx(900.0), 5, "B")

            gateway.set_quantity(A, "SHRD", 0)
            await until(lambda: connector.streams().get(61001) == B, 5, "SHRD moved to B")
            gateway.set_quantity(C, "ONLYC", 0)
            await until(lambda: 61003 not in connector.streams(), 5, "ONLYC's stream ended")
            await until(
                lambda: subscriptions(gateway) == [(A, 61004), (B, 61001), (B, 61002)],
                5,
                "three streams left",
            )
            assert connector.unit_value(61003) is None

    run(body())


def test_an_account_joining_the_login_is_watched_and_priced(simulated_gateway):
    """The login serves A and B; C joins (managedAccounts announced, its positions pushed):
    the connector watches it, streams its own contract and prices its option from A's
    stream; C's snapshot is complete."""

    async def body() -> None:
        async with simulated_gateway(BOOK) as gateway:
            gateway.set_managed_accounts([A, B])
            async with connected(gateway) as connector:
                assert connector.accounts() == [A, B]
                gateway.set_managed_accounts(None, announce=True)
                await until(lambda: C in connector.accounts(), 5, "C watched")
                await until(lambda: 61003 in connector.streams(), 5, "ONLYC streamed")
                await until(connector.ready, 5, "C's holdings priced")
                assert connector.streams()[61004] == A
                assert value_of(connector, C, 61004) == pytest.approx(5 * 100 * 3.0)
                assert value_of(connector, C, 61003) == pytest.approx(700.0)

    run(body())


@pytest.mark.slow
def test_only_the_accounts_whose_values_moved_are_evaluated_and_the_tick_does_all(
    simulated_gateway, tmp_path
):
    """After the first evaluations, ONLYC moving 5% (material for C) re-runs the rules for C
    alone, on the estimate; a move below evaluate_min_move re-runs nothing; the periodic tick
    evaluates every account."""

    async def body() -> None:
        async with simulated_gateway(BOOK) as gateway:
            settings = make_settings(
                tmp_path,
                gateway.port,
                [],
                monitor={"evaluate_min_move": 0.001, "evaluate_every_seconds": 3600},
            )
            service = build_service(settings)
            seen: list[tuple[str, bool]] = []

            def record(account: str, view: AccountView) -> None:
                estimated = view.snapshot is not None and view.snapshot.estimated
                seen.append((account, estimated))

            service.on_evaluated = record
            async with daemon_running(service, settings):
                seen.clear()
                gateway.set_prices({"ONLYC": 10.5})  # C: +35 on NLV ~1,945 (1.8%)
                await until(lambda: bool(seen), 5, "an evaluation")
                assert await service.settle(5)
                assert seen == [(C, True)]
                seen.clear()
                gateway.set_prices({"ONLYA": 20.01})  # A: +3 on NLV ~21,600 (0.014%)
                await until(lambda: service.connector.unit_value(61002) == 20.01, 5, "streamed")
                assert await service.settle(5)
                assert seen == []
                await service.tick()
                assert await service.settle(5)
                assert sorted(account for account, _ in seen) == [A, B, C]

    run(body())


@pytest.mark.slow
def test_a_trade_is_evaluated_before_the_accounts_whose_values_refreshed(
    simulated_gateway, tmp_path
):
    """IB pushes every account's values and, in the same instant, C trades: C is evaluated
    first, then A and B (otherwise the order would be A, B, C: a trade waited for a whole
    login's rebuilds)."""

    async def body() -> None:
        async with simulated_gateway(BOOK) as gateway:
            settings = make_settings(
                tmp_path, gateway.port, [], monitor={"evaluate_every_seconds": 3600}
            )
            service = build_service(settings)
            seen: list[str] = []
            service.on_evaluated = lambda account, view: seen.append(account)
            async with daemon_running(service, settings):
                gateway.set_prices({"SHRD": 51.0, "ONLYC": 10.2})  # every account's values move
                await until(lambda: service.connector.unit_value(61003) == 10.2, 5, "streamed")
                assert await service.settle(5)
                seen.clear()
                await gateway.push_account_values()  # no await inside: both go out together
                gateway.set_quantity(C, "ONLYC", 90)
                await until(lambda: {A, B, C} <= set(seen), 5, "every account evaluated")
                assert seen[0] == C

    run(body())
