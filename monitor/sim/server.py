"""A simulated IB Gateway: an asyncio TCP server speaking the real TWS API socket protocol.

The unmodified ib_async client (and the official ``ibapi`` client) connect to it as to TWS or
IB Gateway. It serves several managed accounts with consistent, recomputed figures (see
:mod:`monitor.sim.state`), plays a scripted timeline of price moves, value overrides,
connectivity errors, disconnects and restarts, and records (never executes) any order message
a client sends, in :attr:`SimulatedGateway.orders_received`. Used by ``margin-monitor demo``,
``margin-monitor simulate-gateway``, the tests and the benchmarks. It binds 127.0.0.1 by
default: the TWS API has no authentication.

Behaviour worth knowing
-----------------------
- Handshake as TWS: ``API\\0`` + version range, answered with min(client max, 176) and the
  connection time; nothing is sent before startApi (71); then managedAccounts (15),
  nextValidId (9) and the farm notices 2104/2106/2158 (errors with reqId -1). A second
  connection with a client id already connected gets error 326 and is closed.
- Pushing: reqAccountUpdates (one account per connection, like IB), reqAccountUpdatesMulti
  and reqAccountSummary subscribers receive changed values. With ``account_push_interval``
  > 0 account values and portfolio rows go out only on that cadence (only the changed ones,
  plus acctUpdateTime; IB's real cadence is 180 s); with 0 they go out at once. PnL
  (reqPnL, reqPnLSingle whose ``value`` is the position's market value in its own currency)
  and market data ticks stream on every price change and every ``pnl_interval`` seconds. A
  quantity change is pushed at once, as IB does.
- Connectivity errors have effects: after 1100 or 2110 nothing streams until 1101 or 1102;
  1101 ("data lost") also drops every subscription, so clients must resubscribe; 1102 pushes
  what changed meanwhile.
- Requests for unknown contracts get error 200 (an ambiguous one too; contract details list
  every match); fundamentals get a ReportSnapshot with ``<SharesOut>`` when the scenario has
  ``fundamentals_entitled = true`` and the instrument has ``shares_outstanding``, error 10358
  when not entitled, 430 when entitled but without data. reqHistoricalData serves daily bars
  of instruments with a ``history`` (error 162 otherwise, or for other bar sizes); with
  keepUpToDate the current bar follows the price. Order messages (placeOrder, cancelOrder,
  exerciseOptions, reqGlobalCancel) are recorded and answered with IB's read-only error 321;
  market depth and real-time bars get 354, head timestamps, histograms and historical ticks
  162. Other unknown message ids are logged and ignored. A broken client is logged and
  dropped; the server carries on.
- Options (secType OPT) carry their expiry, strike, right, multiplier and OCC local symbol in
  positions, portfolio rows and contract details; the symbol sent is the underlying's.
- The price process (``price_updates_per_second``) moves one random contract per update in
  10 ms batches and streams ticks and reqPnLSingle at once to the subscriptions on the moved
  contracts only (indexed by conId, each message encoded once per contract and account).

Scenarios
---------
A scenario (accounts, instruments, gateway options and a timeline) is a TOML file parsed by
the pydantic models of :mod:`monitor.sim.scenarios`, where its schema is documented; built-in
ones live in ``monitor/sim/scenarios/`` and load by bare name (``"selloff"``). Each timeline
step applies itself to the gateway (:meth:`SimulatedGateway.apply_step`).

Python API
----------
``SimulatedGateway(scenario, host, port=0, speed=None, account_push_interval=None,
pnl_interval=None, server_version=None, price_updates_per_second=None, clock=time.time)``
with ``await start() -> port``, ``await stop()``, ``await run_timeline(loop=False)``,
``await apply_step(step)``, ``set_prices``, ``move_prices``, ``set_values``, ``clear_values``,
``set_quantity``, ``set_cash``, ``set_fx``, ``set_rates(account, {symbol|"all": {rate: x}})``,
``send_error``, ``await drop_clients()``, ``await restart(down)``,
``await send_garbage(kind, client_id=None)`` (GARBAGE_KINDS, or WEDGE_KINDS to wedge the link),
``apply_price_updates(count)``, ``await push_account_values()``, ``figures(account)``,
``account_values(account)``, ``price(symbol)``, ``await wait_until(predicate)``; counters
``orders_received``, ``fundamentals_requested`` (symbols, in order), ``price_updates_applied``,
``price_messages_sent``; it is also an async
context manager. ``set_managed_accounts(ids, announce=False)`` changes the managed accounts
(an account joining or leaving an advisor login). :func:`serve` runs one until cancelled,
starting the timeline when the first client connects. Call everything from the event loop the
gateway runs in.

Protocol layouts follow server versions 157 to 176 (ib_async, ibapi 9.81 and 10.x); the
message builders live in :mod:`monitor.sim.protocol`, the figures in :mod:`monitor.sim.state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor.sim import protocol as P
from monitor.sim.protocol import In, Tick, as_bool, as_int
from monitor.sim.scenarios import (
    Instrument,
    ManagedAccountsStep,
    RateKeys,
    Scenario,
    Step,
    load_scenario,
)
from monitor.sim.state import SUMMARY_TAGS, Holding, SimState, is_ledger_row

log = logging.getLogger("monitor.sim.server")

DEFAULT_SCENARIO = "selloff"
GARBAGE_KINDS = ("wrong_field_count", "non_numeric", "truncated", "unknown_id")
"""Fault injection: a frame with a missing field, a non-numeric number, a truncated frame
followed by a close, and an unknown message id."""
WEDGE_KINDS = ("stalled_frame", "oversized_prefix")
"""Faults that wedge the link (kept apart from GARBAGE_KINDS, which the soak tests cycle):
a length prefix promising more bytes than are ever sent, and a prefix of 2**31-1 bytes. The
socket stays open and nothing more is written to it; the client must notice by itself."""
OVERSIZED_PREFIX = 2**31 - 1
PRICE_BATCH_SECONDS = 0.01
"""The price process applies its updates in batches this often."""
PRICE_REPORT_SECONDS = 10.0
"""The price process logs its rates this often."""
MAX_WRITE_BUFFER = 32 * 1024 * 1024
"""A client that lets this much pile up unread is dropped."""
_NLV_TAGS = {"NetLiquidation", "NetLiquidation-S"}


def _ledger_or_nlv(tag: str, currency: str, base_currency: str) -> bool:
    """What a reqAccountUpdatesMulti subscriber with ledgerAndNLV = true receives."""
    return tag in _NLV_TAGS or is_ledger_row(tag, currency, base_currency)


@dataclass
class _MultiSub:
    """A reqAccountUpdatesMulti subscription."""

    account: str  # "" = every account
    ledger_only: bool
    sent: dict[tuple[str, str, str], str] = field(default_factory=dict)


@dataclass
class _SummarySub:
    """A reqAccountSummary subscription."""

    tags: list[str]
    sent: dict[tuple[str, str, str], str] = field(default_factory=dict)


class _Client:
    """One client connection: its negotiated version, subscriptions and output buffer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.server_version = 0
        self.client_id: int | None = None
        self.api_started = False
        self.closed = False
        self.market_data_type = 1
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self.account_updates: str | None = None
        self.account_updates_sent: dict[tuple[str, str], str] = {}
        self.portfolio_sent: dict[int, P.Message] = {}
        self.account_multi: dict[int, _MultiSub] = {}
        self.summaries: dict[int, _SummarySub] = {}
        self.positions = False
        self.positions_multi: dict[int, str] = {}
        self.pnl: dict[int, str] = {}
        self.pnl_single: dict[int, tuple[str, int]] = {}
        self.market_data: dict[int, int] = {}
        self.history_updates: dict[int, int] = {}
        """keepUpToDate reqHistoricalData: reqId -> conId."""
        self.pnl_single_by_con: dict[int, dict[int, str]] = {}
        """The reqPnLSingle subscriptions by conId (reqId -> account): the price process's
        index, so an update costs what its contract's subscriptions cost."""
        self.market_data_by_con: dict[int, set[int]] = {}
        self.wedged = False
        """After a stalled or oversized frame nothing more is written (the link is wedged)."""

    @property
    def label(self) -> str:
        """For log lines."""
        if self.client_id is None:
            return f"connection {self.peer}"
        return f"client {self.client_id} ({self.peer})"

    def send(self, fields: P.Message) -> None:
        """Queue one message; everything queued in one loop iteration goes out in one write."""
        self.send_frame(P.frame(fields))

    def send_frame(self, data: bytes) -> None:
        """Queue one encoded frame (the price process encodes its frames itself)."""
        if self.closed or self.wedged:
            return
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write what is queued (drop the client if it stopped reading)."""
        self._flush_scheduled = False
        if self.closed or not self._out:
            self._out.clear()
            return
        data = b"".join(self._out)
        self._out.clear()
        try:
            self.writer.write(data)
        except (ConnectionError, RuntimeError) as error:
            log.info("%s: write failed (%s); dropping it", self.label, error)
            self.close()
            return
        transport = self.writer.transport
        if transport is not None and transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning(
                "%s stopped reading (%d bytes queued); dropping it", self.label, MAX_WRITE_BUFFER
            )
            self.close()

    def write_raw(self, data: bytes) -> None:
        """Write bytes as they are (fault injection), after anything queued."""
        self.flush()
        if not self.closed and not self.wedged:
            with contextlib.suppress(ConnectionError, RuntimeError):
                self.writer.write(data)

    def subscribe_pnl_single(self, req_id: int, account: str, con_id: int) -> None:
        """Add (or replace) a reqPnLSingle subscription, indexed by conId."""
        self.cancel_pnl_single(req_id)
        self.pnl_single[req_id] = (account, con_id)
        self.pnl_single_by_con.setdefault(con_id, {})[req_id] = account

    def cancel_pnl_single(self, req_id: int) -> None:
        """Drop a reqPnLSingle subscription (unknown ids are ignored)."""
        known = self.pnl_single.pop(req_id, None)
        if known is not None:
            subscribers = self.pnl_single_by_con.get(known[1], {})
            subscribers.pop(req_id, None)
            if not subscribers:
                self.pnl_single_by_con.pop(known[1], None)

    def subscribe_market_data(self, req_id: int, con_id: int) -> None:
        """Add (or replace) a streaming reqMktData subscription, indexed by conId."""
        self.cancel_market_data(req_id)
        self.market_data[req_id] = con_id
        self.market_data_by_con.setdefault(con_id, set()).add(req_id)

    def cancel_market_data(self, req_id: int) -> None:
        """Drop a reqMktData subscription (unknown ids are ignored)."""
        con_id = self.market_data.pop(req_id, None)
        if con_id is not None:
            subscribers = self.market_data_by_con.get(con_id, set())
            subscribers.discard(req_id)
            if not subscribers:
                self.market_data_by_con.pop(con_id, None)

    def close(self) -> None:
        """Flush and close the socket (idempotent)."""
        if self.closed:
            return
        if self._out:
            self.flush()
        self.closed = True
        with contextlib.suppress(Exception):
            self.writer.close()

    def clear_subscriptions(self) -> None:
        """Forget every subscription (IB error 1101: data lost)."""
        self.account_updates = None
        self.account_updates_sent.clear()
        self.portfolio_sent.clear()
        self.account_multi.clear()
        self.summaries.clear()
        self.positions = False
        self.positions_multi.clear()
        self.pnl.clear()
        self.pnl_single.clear()
        self.market_data.clear()
        self.history_updates.clear()
        self.pnl_single_by_con.clear()
        self.market_data_by_con.clear()


@dataclass(frozen=True)
class _ContractQuery:
    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    currency: str
    last_trade_date: str = ""
    strike: float = 0.0
    right: str = ""

    def matches(self, instrument: Instrument) -> bool:
        """Whether the instrument fits every field the query gives (conId aside)."""
        if self.symbol and self.symbol.upper() != instrument.wire_symbol.upper():
            return False
        if self.sec_type and self.sec_type != instrument.sec_type:
            return False
        if self.currency and self.currency != instrument.currency:
            return False
        if not instrument.is_option:
            return True
        if self.last_trade_date and not instrument.last_trade_date.startswith(self.last_trade_date):
            return False
        if self.strike and abs(self.strike - instrument.strike) > 1e-9:
            return False
        return not self.right or self.right[:1].upper() == instrument.right


class SimulatedGateway:
    """An IB Gateway stand-in serving one scenario on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        scenario: Scenario | str | Path | Mapping[str, Any],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        speed: float | None = None,
        account_push_interval: float | None = None,
        pnl_interval: float | None = None,
        server_version: int | None = None,
        price_updates_per_second: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.scenario = load_scenario(scenario)
        self.state = SimState(self.scenario, clock)
        self.clock = clock
        self.host = host
        self.port = port
        self.speed = float(speed) if speed else self.scenario.speed
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"speed must be a positive number, got {speed!r}")
        self.account_push_interval = (
            self.scenario.gateway.account_push_interval
            if account_push_interval is None
            else max(0.0, float(account_push_interval))
        )
        self.pnl_interval = (
            self.scenario.gateway.pnl_interval
            if pnl_interval is None
            else max(0.0, float(pnl_interval))
        )
        self.max_server_version = server_version or self.scenario.gateway.server_version
        self.orders_received: list[list[str]] = []
        self.fundamentals_requested: list[str] = []
        self.timeline_done = asyncio.Event()
        self.steps_applied = 0
        self.timeline_passes = 0
        self.cadence_ticks = 0
        self.restarts = 0
        self.connections_accepted = 0
        self.link_up = True
        self.listening = False
        self._next_order_id = self.scenario.gateway.next_order_id
        self._managed: list[str] = list(self.scenario.managed_at_start)
        self._price_rng = random.Random(self.scenario.gateway.price_seed)
        self.price_updates_per_second = (
            self.scenario.gateway.price_updates_per_second
            if price_updates_per_second is None
            else float(price_updates_per_second)
        )
        if not (
            math.isfinite(self.price_updates_per_second) and self.price_updates_per_second >= 0
        ):
            raise ValueError(
                f"price updates per second must be zero or more, got {price_updates_per_second!r}"
            )
        self._price_symbols = list(self.state.instruments)
        self.price_updates_applied = 0
        """Price-process updates applied so far (each moves one contract's price)."""
        self.price_messages_sent = 0
        """Ticks and pnlSingle messages the price process queued so far."""
        self._price_moved: set[str] = set()
        """Symbols the price process moved since the last account push."""
        self._managed_cache: tuple[list[str], frozenset[str]] = ([], frozenset())
        self._clients: set[_Client] = set()
        self._by_client_id: dict[int, _Client] = {}
        self._server: asyncio.Server | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()
        self._restart_lock = asyncio.Lock()
        self._stopping = False
        self._handlers_by_id = self._request_handlers()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> int:
        """Listen (port 0 picks a free one) and start the push loops; returns the port."""
        self._stopping = False
        await self._listen()
        if self.account_push_interval > 0:
            self._spawn(self._cadence_loop(), "cadence")
        if self.pnl_interval > 0:
            self._spawn(self._pnl_loop(), "pnl")
        if self.price_updates_per_second > 0:
            self._spawn(self._price_loop(), "prices")
        log.info(
            "simulated gateway listening on %s:%d (scenario %s, accounts %s, speed %g, "
            "account push interval %gs)",
            self.host,
            self.port,
            self.scenario.name,
            ",".join(self.scenario.account_ids),
            self.speed,
            self.account_push_interval,
        )
        return self.port

    async def stop(self) -> None:
        """Stop listening, close every client and cancel the background tasks."""
        self._stopping = True
        current = asyncio.current_task()
        for task in list(self._background):
            if task is not current:
                task.cancel()
        server = self._stop_listening()
        self._close_clients()
        handlers = [task for task in self._handlers if task is not current]
        for task in handlers:
            task.cancel()
        pending = [task for task in (*self._background, *handlers) if task is not current]
        if pending:
            await asyncio.wait(pending, timeout=5)
        await self._wait_closed(server)
        self._notify()
        log.info("simulated gateway stopped")

    async def __aenter__(self) -> SimulatedGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _listen(self) -> None:
        last_error: OSError | None = None
        for _ in range(50):
            try:
                self._server = await asyncio.start_server(
                    self._on_connection, self.host, self.port, reuse_address=True
                )
                break
            except OSError as error:  # the port is still held (a restart racing its own close)
                if self.port == 0:
                    raise
                last_error = error
                await asyncio.sleep(0.05)
        else:
            raise OSError(f"cannot listen on {self.host}:{self.port}: {last_error}")
        self.port = self._server.sockets[0].getsockname()[1]
        self.listening = True
        self._notify()

    def _stop_listening(self) -> asyncio.Server | None:
        """Stop accepting connections; returns the server to await once clients are closed."""
        server, self._server = self._server, None
        self.listening = False
        if server is not None:
            server.close()
        return server

    @staticmethod
    async def _wait_closed(server: asyncio.Server | None) -> None:
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    def _close_clients(self) -> None:
        for client in list(self._clients):
            client.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        task.set_name(f"simulator-{name}")
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("simulator task %s failed", task.get_name(), exc_info=task.exception())

    # -- waiting helpers (for tests and benchmarks) -----------------------------------------

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds; re-checked on every gateway event. ``TimeoutError``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("the simulated gateway did not reach the expected state")
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.25))

    async def wait_for_clients(self, count: int, timeout: float = 5.0) -> None:
        """Wait until exactly ``count`` clients have started the API."""
        await self.wait_until(lambda: len(self.clients) == count, timeout)

    async def wait_for_step(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``count`` timeline steps have been applied."""
        await self.wait_until(lambda: self.steps_applied >= count, timeout)

    @property
    def clients(self) -> list[int]:
        """Client ids of the connections that have started the API."""
        return sorted(self._by_client_id)

    @property
    def accounts(self) -> list[str]:
        """Managed account ids (what managedAccounts reports)."""
        return list(self._managed)

    def set_managed_accounts(
        self, accounts: Iterable[str] | None, *, announce: bool = False
    ) -> None:
        """Serve only these scenario accounts from now on (None: all of them).

        New connections and reqManagedAccts see the new list; requests naming a hidden
        account are refused, and its subscriptions go quiet (an account leaving an advisor
        login). An account that joins is pushed at once to the subscriptions that cover it:
        its positions to reqPositions (and reqPositionsMulti for all accounts), its values to
        reqAccountUpdatesMulti for all accounts and reqAccountSummary; its own requests
        (reqAccountUpdates, reqPnL, reqPnLSingle, ...) are served from then on. With
        ``announce`` connected clients also get managedAccounts (15).
        """
        wanted = list(self.scenario.account_ids if accounts is None else accounts)
        unknown = [account for account in wanted if account not in self.state.accounts]
        if unknown:
            raise ValueError(
                f"unknown account {unknown[0]!r} (scenario: {', '.join(self.state.accounts)})"
            )
        joined = [account for account in wanted if account not in self._managed]
        self._managed = wanted
        log.info("managed accounts now %s", ",".join(wanted) or "(none)")
        if announce:
            for client in self._started_clients():
                client.send(P.managed_accounts(self._managed))
        if joined and self.link_up:
            self._push_positions(
                [
                    (account, holding)
                    for account in joined
                    for holding in self.state.holdings(account)
                ],
                False,
            )
            self._push_accounts(with_time=False, accounts=set(joined))
        self._notify()

    def set_rates(
        self, account: str | None, rates: Mapping[str, RateKeys | Mapping[str, float]]
    ) -> None:
        """Change margin rates with prices unchanged, for one account or every one (None).

        ``rates``: symbol or "all" -> rate name -> fraction (or a :class:`RateKeys`); see
        :class:`~monitor.sim.scenarios.SetRatesStep`. Requirements change with the next account
        push (at once when ``account_push_interval`` is 0).
        """
        named = {
            key: value.model_dump(exclude_none=True) if isinstance(value, RateKeys) else value
            for key, value in rates.items()
        }
        targets = self._accounts_or_all(account)
        for account_id in targets:
            self.state.set_rates(account_id, named)
        self._after_change(accounts=targets)

    def _served(self, account: str) -> bool:
        return account in self._managed

    # -- state queries ------------------------------------------------------------------------

    def figures(self, account: str) -> dict[str, float]:
        """The account's current figures by IB tag in base currency (overrides applied)."""
        return self.state.figures(account)

    def account_values(self, account: str) -> list[tuple[str, str, str]]:
        """The ``(tag, value, currency)`` rows a subscriber would receive now."""
        return self.state.account_rows(account)

    def price(self, symbol: str) -> float:
        """The current price of a symbol."""
        return self.state.prices[symbol]

    # -- state changes ------------------------------------------------------------------------

    def set_prices(self, prices: Mapping[str, float]) -> None:
        """Set absolute prices and push what follows from them."""
        changed = self.state.set_prices(prices)
        self._after_change(symbols=changed, accounts=self.state.holders(changed))

    def move_prices(self, moves: Mapping[str, float]) -> None:
        """Relative price moves (-0.05 = -5%; "all" = every symbol not named)."""
        changed = self.state.move_prices(moves)
        self._after_change(symbols=changed, accounts=self.state.holders(changed))

    def set_values(self, account: str | None, values: Mapping[str, str]) -> None:
        """Override account values (tag or "TAG:CCY" -> text) for one account or all (None)."""
        targets = self._accounts_or_all(account)
        for account_id in targets:
            self.state.set_values(account_id, values)
        self._after_change(accounts=targets)

    def clear_values(self, account: str | None, tags: Iterable[str] | None = None) -> None:
        """Drop overrides (the named tags, or all) for one account or all (None)."""
        tag_list = None if tags is None else list(tags)
        targets = self._accounts_or_all(account)
        for account_id in targets:
            self.state.clear_values(account_id, tag_list)
        self._after_change(accounts=targets)

    def set_quantity(
        self, account: str, symbol: str, quantity: float, *, adjust_cash: bool = True
    ) -> None:
        """Change a position (a trade at the current price unless ``adjust_cash`` is false)."""
        holding = self.state.set_quantity(account, symbol, quantity, adjust_cash=adjust_cash)
        self._after_change(quantity=[(account, holding)], accounts=[account])

    def set_cash(self, account: str, cash: Mapping[str, float]) -> None:
        """Set cash balances per currency."""
        self.state.set_cash(account, cash)
        self._after_change(accounts=[account])

    def set_fx(self, account: str | None, rates: Mapping[str, float]) -> None:
        """Set exchange rates (base per unit) for one account, or every account quoting them."""
        touched = []
        for account_id in self._accounts_or_all(account):
            fx = self.state.accounts[account_id].fx
            relevant = {
                ccy: rate for ccy, rate in rates.items() if account is not None or ccy in fx
            }
            if relevant:
                self.state.set_fx(account_id, relevant)
                touched.append(account_id)
        moved = [
            symbol
            for symbol, instrument in self.state.instruments.items()
            if instrument.currency in rates
        ]
        self._after_change(symbols=moved, accounts=touched)

    def reset(self) -> None:
        """Back to the scenario's initial state (and push it)."""
        self.state.reset()
        if self.scenario.managed_at_start != self.scenario.account_ids or any(
            isinstance(step, ManagedAccountsStep) for step in self.scenario.steps
        ):
            self._managed = list(self.scenario.managed_at_start)
        self._after_change(symbols=list(self.state.prices), all_positions=True, accounts=None)

    def _accounts_or_all(self, account: str | None) -> list[str]:
        """State changes: the named account (hidden or not), or every scenario account."""
        if account is None:
            return list(self.state.accounts)
        self.state.account(account)
        return [account]

    def _served_or_all(self, account: str) -> list[str]:
        """Requests: the named account if served, or every served account ("")."""
        if not account:
            return list(self._managed)
        return [account] if self._served(account) else []

    # -- connectivity and faults --------------------------------------------------------------

    def send_error(
        self, code: int, message: str | None = None, req_id: int = -1, *, effects: bool = True
    ) -> None:
        """Send an IB error/notice to every client (reqId -1 by default).

        With ``effects``: 1100 and 2110 stop streaming, 1101 restores it and drops every
        subscription (data lost), 1102 restores it and pushes what changed.
        """
        log.info("sending error %d to %d client(s)", code, len(self._by_client_id))
        for client in self._started_clients():
            client.send(P.error(client.server_version, req_id, code, message))
        if effects:
            if code in (1100, 2110):
                self.link_up = False
            elif code == 1101:
                self.link_up = True
                for client in self._started_clients():
                    client.clear_subscriptions()
            elif code == 1102:
                self.link_up = True
                self._after_change(
                    symbols=list(self.state.prices), force_accounts=True, accounts=None
                )
        self._notify()

    async def drop_clients(self) -> None:
        """Close every client socket (the gateway keeps listening)."""
        log.info("dropping %d connection(s)", len(self._clients))
        handlers = list(self._handlers)
        self._close_clients()
        if handlers:
            await asyncio.wait(handlers, timeout=2)
        self._notify()

    async def restart(self, down_seconds: float) -> None:
        """Close the listener and every client, stay down, then listen on the same port again."""
        async with self._restart_lock:
            if self._stopping:
                return
            log.info("restarting: down for %.2fs", down_seconds)
            self.restarts += 1
            server = self._stop_listening()
            await self.drop_clients()
            await self._wait_closed(server)
            self.link_up = True
            await asyncio.sleep(max(0.0, down_seconds))
            if self._stopping:
                return
            await self._listen()
            log.info("restarted: listening on %s:%d again", self.host, self.port)

    async def send_garbage(self, kind: str, client_id: int | None = None) -> int:
        """Send a malformed frame of ``kind`` (GARBAGE_KINDS or WEDGE_KINDS) to every started
        client (or the one with ``client_id``); returns the clients reached."""
        if kind not in GARBAGE_KINDS + WEDGE_KINDS:
            raise ValueError(
                f"unknown garbage kind {kind!r}; choose from "
                f"{', '.join(GARBAGE_KINDS + WEDGE_KINDS)}"
            )
        targets = [
            client
            for client in self._started_clients()
            if client_id is None or client.client_id == client_id
        ]
        account = (self._managed or self.scenario.account_ids)[0]
        holdings = self.state.holdings(account)
        for client in targets:
            if holdings:
                sample = self._portfolio_fields(account, holdings[0])
            else:
                sample = P.portfolio_value(
                    account=account, con_id=1, symbol="X", sec_type="STK", multiplier=1,
                    primary_exchange="", currency="USD", position=0, market_price=1,
                    market_value=0, average_cost=0, unrealized_pnl=0, realized_pnl=0,
                )  # fmt: skip
            if kind == "wrong_field_count":
                client.send(sample[:-1])  # 19 fields where ib_async unpacks exactly 20
            elif kind == "non_numeric":
                broken = list(sample)
                broken[14] = "n/a"  # marketPrice
                client.send(broken)
            elif kind == "unknown_id":
                client.send([9999, 1, "garbage"])
            elif kind in WEDGE_KINDS:
                self._wedge(client, kind, account)
            else:
                data = P.frame(P.account_value("NetLiquidation", "1.00", "USD", account))
                client.write_raw(data[: len(data) // 2])
                client.close()
        log.info("sent %s garbage to %d client(s)", kind, len(targets))
        if kind == "truncated" and targets:
            await asyncio.sleep(0)
        return len(targets)

    @staticmethod
    def _wedge(client: _Client, kind: str, account: str) -> None:
        """Write a frame that can never complete, then nothing more (the socket stays open)."""
        data = P.frame(P.account_value("NetLiquidation", "1.00", "USD", account))
        if kind == "stalled_frame":
            client.write_raw(data[: len(data) // 2])  # the prefix promises the whole payload
        else:
            client.write_raw(OVERSIZED_PREFIX.to_bytes(4, "big") + data[4:])
        client.wedged = True
        log.info("%s: link wedged by a %s", client.label, kind)

    def _started_clients(self) -> list[_Client]:
        return [client for client in self._clients if client.api_started and not client.closed]

    # -- timeline -----------------------------------------------------------------------------

    async def run_timeline(self, loop: bool = False) -> None:
        """Play the scenario's steps in scenario time (scaled by ``speed``).

        Sets :attr:`timeline_done` at the end of the first pass. With ``loop`` it starts over
        from the initial state after each pass, until cancelled.
        """
        running = asyncio.get_running_loop()
        while True:
            start = running.time()
            log.info(
                "timeline %s: %d step(s) at speed %g",
                self.scenario.name,
                len(self.scenario.steps),
                self.speed,
            )
            for step in self.scenario.steps:
                delay = start + step.at / self.speed - running.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self.apply_step(step)
            delay = start + self.scenario.duration / self.speed - running.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.timeline_passes += 1
            self.timeline_done.set()
            self._notify()
            log.info("timeline %s: pass %d done", self.scenario.name, self.timeline_passes)
            if not loop or self.scenario.duration <= 0:
                return
            self.reset()

    async def apply_step(self, step: Step) -> None:
        """Apply one timeline step now."""
        log.info(
            "step at %gs: %s %s%s",
            step.at,
            step.action,
            _short(step.value),
            f" ({step.note})" if step.note else "",
        )
        await step.apply(self)
        self.steps_applied += 1
        self._notify()

    def restart_in_background(self, down_seconds: float) -> None:
        """Start :meth:`restart` without waiting for it (a timeline step goes on meanwhile)."""
        self._spawn(self.restart(down_seconds), "restart")

    # -- pushing ------------------------------------------------------------------------------

    async def push_account_values(self) -> None:
        """Push account values now, as a cadence tick does."""
        self.cadence_ticks += 1
        self._push_accounts(with_time=True)
        self._notify()

    async def _cadence_loop(self) -> None:
        while True:
            await asyncio.sleep(self.account_push_interval)
            if self.link_up:
                self.cadence_ticks += 1
                self._push_accounts(with_time=True)
                self._notify()

    async def _pnl_loop(self) -> None:
        while True:
            await asyncio.sleep(self.pnl_interval)
            if self.link_up:
                self._stream(None)

    async def _price_loop(self) -> None:
        """The random-walk price process: batches every PRICE_BATCH_SECONDS at the set rate."""
        loop = asyncio.get_running_loop()
        last = last_push = last_report = loop.time()
        owed = 0.0
        reported = (self.price_updates_applied, self.price_messages_sent)
        while True:
            await asyncio.sleep(PRICE_BATCH_SECONDS)
            now = loop.time()
            owed += self.price_updates_per_second * (now - last)
            last = now
            count = int(owed)
            owed -= count
            if count:
                self.apply_price_updates(count)
            if now - last_push >= 1.0:
                last_push = now
                self._push_price_moves()
            if now - last_report >= PRICE_REPORT_SECONDS:
                updates = self.price_updates_applied - reported[0]
                messages = self.price_messages_sent - reported[1]
                log.info(
                    "price process: %.0f updates/s applied, %.0f messages/s sent",
                    updates / (now - last_report),
                    messages / (now - last_report),
                )
                reported = (self.price_updates_applied, self.price_messages_sent)
                last_report = now

    def apply_price_updates(self, count: int) -> list[str]:
        """Apply ``count`` price-process updates now (each moves one random contract by up to
        ``price_step`` either way) and stream them; returns the symbols moved, in order.

        A contract moved several times in one batch gets one message per subscription with
        its last price. Ticks and reqPnLSingle go out at once, only to the subscriptions on a
        moved contract; account values follow the cadence (see ``price_updates_per_second``).
        """
        rng, prices, symbols = self._price_rng, self.state.prices, self._price_symbols
        step = self.scenario.gateway.price_step
        moved: dict[str, None] = {}
        for _ in range(count):
            symbol = symbols[int(rng.random() * len(symbols))]
            price = prices[symbol] * (1.0 + step * (2.0 * rng.random() - 1.0))
            prices[symbol] = max(0.01, round(price, 4))
            moved[symbol] = None
        self.price_updates_applied += count
        self._price_moved.update(moved)
        if self.link_up:
            self._stream_moves(list(moved))
        return list(moved)

    def _stream_moves(self, symbols: list[str]) -> None:
        """The price process's hot path: per moved contract, encode each distinct message once
        (a tick per contract, a pnlSingle per account holding it) and queue it, with only the
        reqId changing, to the subscriptions on that contract (one write per client)."""
        instruments, accounts = self.state.instruments, self.state.accounts
        con_ids = [instruments[symbol].con_id for symbol in symbols]
        ticks: dict[tuple[int, bool], bytes] = {}
        pnl_tails: dict[tuple[str, int], bytes] = {}
        sent = 0
        for client in self._started_clients():
            by_con, market = client.pnl_single_by_con, client.market_data_by_con
            if not by_con and not market and not client.history_updates:
                continue
            delayed = client.market_data_type in (3, 4)
            for symbol, con_id in zip(symbols, con_ids, strict=True):
                for req_id in market.get(con_id, ()):
                    tail = ticks.get((con_id, delayed))
                    if tail is None:
                        tick = Tick.DELAYED_LAST if delayed else Tick.LAST
                        price = self.state.prices[symbol]
                        tail = P.encode_tail(P.tick_price(0, tick, price, 100)[3:])
                        ticks[(con_id, delayed)] = tail
                    client.send_frame(P.frame_with_req_id(P.TICK_PRICE_HEAD, req_id, tail))
                    sent += 1
                for req_id, account in by_con.get(con_id, {}).items():
                    key = (account, con_id)
                    tail = pnl_tails.get(key)
                    if tail is None:
                        if account not in self._managed_set():
                            continue
                        tail = self._pnl_single_tail(accounts[account].by_con_id.get(con_id))
                        pnl_tails[key] = tail
                    client.send_frame(P.frame_with_req_id(P.PNL_SINGLE_HEAD, req_id, tail))
                    sent += 1
            for req_id, con_id in client.history_updates.items():
                if con_id in con_ids:
                    self._send_bar_update(client, req_id, con_id)
        self.price_messages_sent += sent

    def _managed_set(self) -> frozenset[str]:
        managed = self._managed
        if self._managed_cache[0] is not managed:
            self._managed_cache = (managed, frozenset(managed))
        return self._managed_cache[1]

    def _pnl_single_tail(self, holding: Holding | None) -> bytes:
        return P.encode_tail(self._pnl_single_values(holding))

    def _pnl_single_values(self, holding: Holding | None) -> P.Message:
        """pnlSingle's fields after the reqId (zeros for a flat or unknown position)."""
        if holding is None or holding.quantity == 0:
            return P.pnl_single(0, 0, 0.0, 0.0, 0.0, 0.0)[2:]
        values = self.state.value(holding)
        return P.pnl_single(
            0, holding.quantity, values.daily_pnl, values.unrealized_pnl, 0.0, values.market_value
        )[2:]

    def _push_price_moves(self) -> None:
        """Once a second: the SMA follows the moves, and with ``account_push_interval`` 0 the
        accounts holding a moved contract get their values (a cadence pushes them anyway)."""
        if not self._price_moved:
            return
        holders = self.state.holders(self._price_moved)
        self._price_moved = set()
        self.state.settle(holders)
        if self.account_push_interval == 0 and self.link_up and holders:
            self._push_accounts(with_time=False, accounts=set(holders))
        self._notify()

    def _after_change(
        self,
        *,
        accounts: Iterable[str] | None = (),
        symbols: Iterable[str] = (),
        quantity: list[tuple[str, Holding]] | None = None,
        all_positions: bool = False,
        force_accounts: bool = False,
    ) -> None:
        """Push what a change implies; ``accounts`` are those affected (None: all)."""
        self._notify()
        if not self.link_up:
            return
        symbols = set(symbols)
        if quantity or all_positions:
            self._push_positions(quantity, all_positions)
        if symbols or quantity:
            self._stream(symbols | {holding.symbol for _, holding in quantity or []})
        if self.account_push_interval == 0 or quantity or all_positions or force_accounts:
            affected = None if accounts is None else set(accounts)
            if affected is None or affected:
                self._push_accounts(with_time=False, accounts=affected)

    def _push_positions(self, changes: list[tuple[str, Holding]] | None, everything: bool) -> None:
        """reqPositions / reqPositionsMulti subscribers get changed positions at once."""
        if everything:
            changes = [
                (account, holding)
                for account in self._managed
                for holding in self.state.holdings(account, include_flat=True)
            ]
        changes = [(account, h) for account, h in changes or [] if self._served(account)]
        for client in self._started_clients():
            for account, holding in changes:
                if client.positions:
                    client.send(self._position_fields(account, holding))
                for req_id, wanted in client.positions_multi.items():
                    if wanted in ("", account):
                        client.send(self._position_multi_fields(req_id, account, holding))

    def _stream(self, symbols: set[str] | None) -> None:
        """PnL, single-position PnL and ticks: for the given symbols, or everything (None)."""
        con_ids = None if symbols is None else {self.state.instruments[s].con_id for s in symbols}
        if con_ids is not None and not con_ids:
            return
        for client in self._started_clients():
            for req_id, con_id in client.market_data.items():
                if con_ids is None or con_id in con_ids:
                    instrument = self.state.by_con_id.get(con_id)
                    if instrument is not None:
                        self._send_ticks(client, req_id, instrument, with_close=False)
            for req_id, con_id in client.history_updates.items():
                if con_ids is None or con_id in con_ids:
                    self._send_bar_update(client, req_id, con_id)
            for req_id, (account, con_id) in client.pnl_single.items():
                if (con_ids is None or con_id in con_ids) and self._served(account):
                    client.send(self._pnl_single_fields(req_id, account, con_id))
            for req_id, account in client.pnl.items():
                if self._served(account):
                    client.send(self._pnl_fields(req_id, account))

    def _push_accounts(self, *, with_time: bool, accounts: set[str] | None = None) -> None:
        """Send changed account values/portfolio rows to the subscribers of ``accounts``."""
        rows_cache: dict[str, list[tuple[str, str, str]]] = {}

        def wanted(account: str) -> bool:
            return self._served(account) and (accounts is None or account in accounts)

        def rows(account: str) -> list[tuple[str, str, str]]:
            if account not in rows_cache:
                rows_cache[account] = self.state.account_rows(account)
            return rows_cache[account]

        stamp = time.strftime("%H:%M", time.localtime(self.clock()))
        for client in self._started_clients():
            account = client.account_updates
            if account is not None and wanted(account):
                changed = False
                for tag, text, ccy in rows(account):
                    row = (tag, ccy)
                    if client.account_updates_sent.get(row) != text:
                        client.account_updates_sent[row] = text
                        client.send(P.account_value(tag, text, ccy, account))
                        changed = True
                for holding in self.state.holdings(account, include_flat=True):
                    fields = self._portfolio_fields(account, holding)
                    if client.portfolio_sent.get(holding.con_id) != fields:
                        if holding.quantity == 0 and holding.con_id not in client.portfolio_sent:
                            continue
                        client.portfolio_sent[holding.con_id] = fields
                        client.send(fields)
                        changed = True
                if changed or with_time:
                    client.send(P.account_time(stamp))
            for req_id, sub in client.account_multi.items():
                sent_any = False
                for account_id in self._served_or_all(sub.account):
                    if not wanted(account_id):
                        continue
                    base = self.state.accounts[account_id].base_currency
                    for tag, text, ccy in rows(account_id):
                        if sub.ledger_only and not _ledger_or_nlv(tag, ccy, base):
                            continue
                        key = (account_id, tag, ccy)
                        if sub.sent.get(key) != text:
                            sub.sent[key] = text
                            client.send(
                                P.account_update_multi(req_id, account_id, "", tag, text, ccy)
                            )
                            sent_any = True
                if sent_any:
                    client.send(P.account_update_multi_end(req_id))
            for req_id, summary in client.summaries.items():
                sent_any = False
                for account_id in self._managed:
                    if not wanted(account_id):
                        continue
                    for tag, text, ccy in self.state.summary_rows(account_id, summary.tags):
                        key = (account_id, tag, ccy)
                        if summary.sent.get(key) != text:
                            summary.sent[key] = text
                            client.send(P.account_summary(req_id, account_id, tag, text, ccy))
                            sent_any = True
                if sent_any:
                    client.send(P.account_summary_end(req_id))

    # -- message builders from state -----------------------------------------------------------

    def _portfolio_fields(self, account: str, holding: Holding) -> P.Message:
        instrument = holding.instrument
        values = self.state.value(holding)
        return P.portfolio_value(
            account=account,
            option=_option_terms(instrument),
            con_id=instrument.con_id,
            symbol=instrument.wire_symbol,
            sec_type=instrument.sec_type,
            multiplier=instrument.multiplier,
            primary_exchange=instrument.exchange,
            currency=instrument.currency,
            position=holding.quantity,
            market_price=values.price,
            market_value=values.market_value,
            average_cost=holding.average_cost * instrument.multiplier,
            unrealized_pnl=values.unrealized_pnl,
            realized_pnl=0.0,
        )

    def _position_fields(self, account: str, holding: Holding) -> P.Message:
        instrument = holding.instrument
        return P.position(
            account=account,
            option=_option_terms(instrument),
            con_id=instrument.con_id,
            symbol=instrument.wire_symbol,
            sec_type=instrument.sec_type,
            multiplier=instrument.multiplier,
            exchange=instrument.exchange,
            currency=instrument.currency,
            quantity=holding.quantity,
            average_cost=holding.average_cost * instrument.multiplier,
        )

    def _position_multi_fields(self, req_id: int, account: str, holding: Holding) -> P.Message:
        instrument = holding.instrument
        return P.position_multi(
            req_id=req_id,
            account=account,
            option=_option_terms(instrument),
            con_id=instrument.con_id,
            symbol=instrument.wire_symbol,
            sec_type=instrument.sec_type,
            multiplier=instrument.multiplier,
            exchange=instrument.exchange,
            currency=instrument.currency,
            quantity=holding.quantity,
            average_cost=holding.average_cost * instrument.multiplier,
        )

    def _pnl_fields(self, req_id: int, account: str) -> P.Message:
        if not self._served(account):
            return P.pnl(req_id, 0.0, 0.0, 0.0)
        figures = self.state.compute(account)
        return P.pnl(req_id, figures.daily_pnl, figures.unrealized_pnl, 0.0)

    def _pnl_single_fields(self, req_id: int, account: str, con_id: int) -> P.Message:
        state = self.state.accounts.get(account)
        holding = state.by_con_id.get(con_id) if state is not None else None
        return [P.Out.PNL_SINGLE, req_id, *self._pnl_single_values(holding)]

    def _send_bar_update(self, client: _Client, req_id: int, con_id: int) -> None:
        """keepUpToDate: the current session's bar (historicalDataUpdate)."""
        instrument = self.state.by_con_id.get(con_id)
        if instrument is None:
            return
        bars = self.state.daily_bars(instrument.symbol, self._session_date())
        if bars:
            client.send(P.historical_data_update(req_id, bars[-1]))

    def _send_ticks(
        self, client: _Client, req_id: int, instrument: Instrument, *, with_close: bool
    ) -> None:
        delayed = client.market_data_type in (3, 4)
        price = self.state.prices[instrument.symbol]
        last = Tick.DELAYED_LAST if delayed else Tick.LAST
        client.send(P.tick_price(req_id, last, price, 100))
        if with_close:
            close = Tick.DELAYED_CLOSE if delayed else Tick.CLOSE
            client.send(P.tick_price(req_id, close, self.state.close_price(instrument), 0))

    # -- connections ---------------------------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        client = _Client(reader, writer)
        self._clients.add(client)
        self.connections_accepted += 1
        log.info("%s connected", client.label)
        try:
            await self._serve_client(client)
        except (asyncio.IncompleteReadError, ConnectionError):
            log.info("%s closed the connection", client.label)
        except asyncio.CancelledError:
            pass
        except Exception:  # a broken client never takes the server down
            log.exception("%s: unexpected error; dropping it", client.label)
        finally:
            client.close()
            self._clients.discard(client)
            if client.client_id is not None and self._by_client_id.get(client.client_id) is client:
                del self._by_client_id[client.client_id]
            if task is not None:
                self._handlers.discard(task)
            log.info("%s disconnected", client.label)
            self._notify()

    async def _read_frame(self, client: _Client) -> bytes:
        header = await client.reader.readexactly(4)
        size = int.from_bytes(header, "big")
        if size > P.MAX_FRAME:
            raise _ProtocolError(f"frame of {size} bytes exceeds the {P.MAX_FRAME}-byte limit")
        return await client.reader.readexactly(size)

    async def _serve_client(self, client: _Client) -> None:
        prefix = await client.reader.readexactly(4)
        if prefix != b"API\0":
            log.warning("%s: not a TWS API client (prefix %r); closing", client.label, prefix)
            return
        try:
            versions = P.parse_version_range(P.split_fields(await self._read_frame(client))[0])
        except (_ProtocolError, IndexError) as error:
            log.warning("%s: bad handshake (%s); closing", client.label, error)
            return
        if versions is None or versions[1] < P.MIN_CLIENT_VERSION:
            log.warning("%s: unsupported client versions %s; closing", client.label, versions)
            return
        client.server_version = min(versions[1], self.max_server_version)
        connection_time = time.strftime("%Y%m%d %H:%M:%S UTC", time.gmtime(self.clock()))
        client.send([client.server_version, connection_time])
        log.debug("%s: handshake v%d..%d -> %d", client.label, *versions, client.server_version)
        while not client.closed:
            try:
                payload = await self._read_frame(client)
            except _ProtocolError as error:
                log.warning("%s: %s; dropping it", client.label, error)
                return
            fields = P.split_fields(payload)
            if not fields:
                log.warning("%s: empty message ignored", client.label)
                continue
            try:
                self._dispatch(client, fields)
            except Exception as error:  # one bad request never ends the connection
                log.warning(
                    "%s: cannot handle %s (%s: %s)",
                    client.label,
                    _short(fields),
                    type(error).__name__,
                    error,
                )
            self._notify()

    def _dispatch(self, client: _Client, fields: list[str]) -> None:
        try:
            message_id = int(fields[0])
        except ValueError:
            log.warning("%s: non-numeric message id %r ignored", client.label, fields[0][:20])
            return
        if message_id in P.ORDER_MESSAGE_IDS:
            self.orders_received.append(list(fields))
            log.warning(
                "%s sent %s (id %d): recorded, not executed; answered as a read-only API",
                client.label,
                P.ORDER_MESSAGE_IDS[message_id],
                message_id,
            )
            if client.api_started:
                field_index = P.ORDER_REQ_ID_FIELD[message_id]
                req_id = -1
                if field_index is not None and field_index < len(fields):
                    with contextlib.suppress(ValueError):
                        req_id = as_int(fields[field_index], -1)
                self._error(client, req_id, P.READ_ONLY_CODE, P.READ_ONLY_TEXT)
            return
        if message_id == In.START_API:
            self._start_api(client, fields)
            return
        if not client.api_started:
            log.warning("%s: message %d before startApi ignored", client.label, message_id)
            return
        handler = self._handlers_by_id.get(message_id)
        if handler is None and message_id in P.UNSERVED:
            field_index, code = P.UNSERVED[message_id]
            req_id = as_int(fields[field_index], -1) if field_index < len(fields) else -1
            log.info("%s: message id %d not simulated; answered %d", client.label, message_id, code)
            self._error(client, req_id, code)
            return
        if handler is None:
            log.info(
                "%s: message id %d not simulated; ignored (%s)",
                client.label,
                message_id,
                _short(fields),
            )
            return
        log.debug("%s -> %s", client.label, _short(fields))
        handler(client, fields)

    def _start_api(self, client: _Client, fields: list[str]) -> None:
        if client.api_started:
            log.info("%s: repeated startApi ignored", client.label)
            return
        client_id = as_int(fields[2])
        holder = self._by_client_id.get(client_id)
        if holder is not None and not holder.closed:
            log.warning(
                "%s: client id %d already in use; error 326 and close", client.label, client_id
            )
            client.send(P.error(client.server_version, -1, 326))
            client.close()
            return
        client.client_id = client_id
        client.api_started = True
        self._by_client_id[client_id] = client
        client.send(P.managed_accounts(self._managed))
        client.send(P.next_valid_id(self._next_order_id))
        if self.scenario.gateway.farm_notices:
            for code in P.FARM_NOTICES:
                client.send(P.error(client.server_version, -1, code))
        log.info("%s started the API (server version %d)", client.label, client.server_version)

    # -- requests ------------------------------------------------------------------------------

    def _request_handlers(self) -> dict[int, Callable[[_Client, list[str]], None]]:
        return {
            In.REQ_MKT_DATA: self._req_mkt_data,
            In.CANCEL_MKT_DATA: self._cancel_mkt_data,
            In.REQ_OPEN_ORDERS: self._req_open_orders,
            In.REQ_ALL_OPEN_ORDERS: self._req_open_orders,
            In.REQ_AUTO_OPEN_ORDERS: lambda client, fields: None,
            In.REQ_ACCT_DATA: self._req_account_updates,
            In.REQ_EXECUTIONS: self._req_executions,
            In.REQ_IDS: self._req_ids,
            In.REQ_CONTRACT_DATA: self._req_contract_details,
            In.REQ_MANAGED_ACCTS: self._req_managed_accounts,
            In.REQ_CURRENT_TIME: self._req_current_time,
            In.REQ_FUNDAMENTAL_DATA: self._req_fundamental_data,
            In.CANCEL_FUNDAMENTAL_DATA: lambda client, fields: None,
            In.REQ_MARKET_DATA_TYPE: self._req_market_data_type,
            In.REQ_POSITIONS: self._req_positions,
            In.CANCEL_POSITIONS: self._cancel_positions,
            In.REQ_ACCOUNT_SUMMARY: self._req_account_summary,
            In.CANCEL_ACCOUNT_SUMMARY: self._cancel_account_summary,
            In.REQ_POSITIONS_MULTI: self._req_positions_multi,
            In.CANCEL_POSITIONS_MULTI: self._cancel_positions_multi,
            In.REQ_ACCOUNT_UPDATES_MULTI: self._req_account_updates_multi,
            In.CANCEL_ACCOUNT_UPDATES_MULTI: self._cancel_account_updates_multi,
            In.REQ_PNL: self._req_pnl,
            In.CANCEL_PNL: self._cancel_pnl,
            In.REQ_PNL_SINGLE: self._req_pnl_single,
            In.CANCEL_PNL_SINGLE: self._cancel_pnl_single,
            In.REQ_COMPLETED_ORDERS: self._req_completed_orders,
            In.REQ_HISTORICAL_DATA: self._req_historical_data,
            In.CANCEL_HISTORICAL_DATA: self._cancel_historical_data,
        }

    def _error(self, client: _Client, req_id: int, code: int, message: str | None = None) -> None:
        client.send(P.error(client.server_version, req_id, code, message))

    def _invalid_account(self, client: _Client, req_id: int, account: str) -> None:
        self._error(
            client,
            req_id,
            321,
            f"Error validating request.-'bB' : cause - Account {account} is not managed",
        )

    def _req_open_orders(self, client: _Client, fields: list[str]) -> None:
        client.send(P.open_order_end())

    def _req_completed_orders(self, client: _Client, fields: list[str]) -> None:
        client.send(P.completed_orders_end())

    def _req_executions(self, client: _Client, fields: list[str]) -> None:
        client.send(P.exec_details_end(as_int(fields[2])))

    def _req_ids(self, client: _Client, fields: list[str]) -> None:
        client.send(P.next_valid_id(self._next_order_id))

    def _req_managed_accounts(self, client: _Client, fields: list[str]) -> None:
        client.send(P.managed_accounts(self._managed))

    def _req_current_time(self, client: _Client, fields: list[str]) -> None:
        client.send(P.current_time(int(self.clock())))

    def _req_market_data_type(self, client: _Client, fields: list[str]) -> None:
        kind = as_int(fields[2], 1)
        client.market_data_type = kind if kind in (1, 2, 3, 4) else 1

    def _req_account_updates(self, client: _Client, fields: list[str]) -> None:
        subscribe = as_bool(fields[2])
        account = fields[3] if len(fields) > 3 else ""
        if not subscribe:
            client.account_updates = None
            client.account_updates_sent.clear()
            client.portfolio_sent.clear()
            return
        if not account and len(self._managed) == 1:
            account = self._managed[0]
        if not self._served(account):
            self._invalid_account(client, -1, account)
            client.send(P.account_download_end(account))
            return
        client.account_updates = account  # one account at a time: this replaces any other
        client.account_updates_sent.clear()
        client.portfolio_sent.clear()
        for tag, value, ccy in self.state.account_rows(account):
            client.account_updates_sent[(tag, ccy)] = value
            client.send(P.account_value(tag, value, ccy, account))
        for holding in self.state.holdings(account):
            fields_out = self._portfolio_fields(account, holding)
            client.portfolio_sent[holding.con_id] = fields_out
            client.send(fields_out)
        client.send(P.account_time(time.strftime("%H:%M", time.localtime(self.clock()))))
        client.send(P.account_download_end(account))

    def _req_account_updates_multi(self, client: _Client, fields: list[str]) -> None:
        req_id = as_int(fields[2])
        account = fields[3] if len(fields) > 3 else ""
        ledger_only = as_bool(fields[5]) if len(fields) > 5 else False
        if account.lower() == "all":
            account = ""
        if account and not self._served(account):
            self._invalid_account(client, req_id, account)
            return
        sub = _MultiSub(account=account, ledger_only=ledger_only)
        client.account_multi[req_id] = sub
        for account_id in self._served_or_all(account):
            base = self.state.accounts[account_id].base_currency
            for tag, value, ccy in self.state.account_rows(account_id):
                if ledger_only and not _ledger_or_nlv(tag, ccy, base):
                    continue
                sub.sent[(account_id, tag, ccy)] = value
                client.send(P.account_update_multi(req_id, account_id, "", tag, value, ccy))
        client.send(P.account_update_multi_end(req_id))

    def _cancel_account_updates_multi(self, client: _Client, fields: list[str]) -> None:
        client.account_multi.pop(as_int(fields[2]), None)

    def _req_account_summary(self, client: _Client, fields: list[str]) -> None:
        req_id = as_int(fields[2])
        requested = [
            tag.strip() for tag in (fields[4] if len(fields) > 4 else "").split(",") if tag.strip()
        ]
        tags: list[str] = []
        for tag in requested:
            if tag.lower() == "all":
                tags.extend([*SUMMARY_TAGS, "$LEDGER:ALL"])
            else:
                tags.append(tag)
        summary = _SummarySub(tags=list(dict.fromkeys(tags)))
        client.summaries[req_id] = summary
        for account_id in self._managed:
            for tag, value, ccy in self.state.summary_rows(account_id, summary.tags):
                summary.sent[(account_id, tag, ccy)] = value
                client.send(P.account_summary(req_id, account_id, tag, value, ccy))
        client.send(P.account_summary_end(req_id))

    def _cancel_account_summary(self, client: _Client, fields: list[str]) -> None:
        client.summaries.pop(as_int(fields[2]), None)

    def _req_positions(self, client: _Client, fields: list[str]) -> None:
        client.positions = True
        for account in self._managed:
            for holding in self.state.holdings(account):
                client.send(self._position_fields(account, holding))
        client.send(P.position_end())

    def _cancel_positions(self, client: _Client, fields: list[str]) -> None:
        client.positions = False

    def _req_positions_multi(self, client: _Client, fields: list[str]) -> None:
        req_id = as_int(fields[2])
        account = fields[3] if len(fields) > 3 else ""
        if account.lower() == "all":
            account = ""
        if account and not self._served(account):
            self._invalid_account(client, req_id, account)
            return
        client.positions_multi[req_id] = account
        for account_id in self._served_or_all(account):
            for holding in self.state.holdings(account_id):
                client.send(self._position_multi_fields(req_id, account_id, holding))
        client.send(P.position_multi_end(req_id))

    def _cancel_positions_multi(self, client: _Client, fields: list[str]) -> None:
        client.positions_multi.pop(as_int(fields[2]), None)

    def _req_pnl(self, client: _Client, fields: list[str]) -> None:
        req_id = as_int(fields[1])
        account = fields[2] if len(fields) > 2 else ""
        if not self._served(account):
            self._invalid_account(client, req_id, account)
            return
        client.pnl[req_id] = account
        client.send(self._pnl_fields(req_id, account))

    def _cancel_pnl(self, client: _Client, fields: list[str]) -> None:
        client.pnl.pop(as_int(fields[1]), None)

    def _req_pnl_single(self, client: _Client, fields: list[str]) -> None:
        req_id = as_int(fields[1])
        account = fields[2] if len(fields) > 2 else ""
        con_id = as_int(fields[4]) if len(fields) > 4 else 0
        if not self._served(account):
            self._invalid_account(client, req_id, account)
            return
        client.subscribe_pnl_single(req_id, account, con_id)
        client.send(self._pnl_single_fields(req_id, account, con_id))

    def _cancel_pnl_single(self, client: _Client, fields: list[str]) -> None:
        client.cancel_pnl_single(as_int(fields[1]))

    def _query(self, fields: list[str], start: int) -> _ContractQuery:
        """The contract of a request whose fields from ``start`` are conId, symbol, secType,
        lastTradeDate, strike, right, multiplier, exchange, primaryExchange, currency."""
        strike = fields[start + 4].strip()
        return _ContractQuery(
            con_id=as_int(fields[start]),
            symbol=fields[start + 1].strip(),
            sec_type=fields[start + 2].strip(),
            exchange=fields[start + 7].strip(),
            currency=fields[start + 9].strip(),
            last_trade_date=fields[start + 3].strip(),
            strike=float(strike) if strike and strike.upper() != P.UNSET_TEXT.upper() else 0.0,
            right=fields[start + 5].strip(),
        )

    def _candidates(self, query: _ContractQuery) -> list[Instrument]:
        """Every instrument the query describes (several: ambiguous)."""
        if query.con_id:
            instrument = self.state.by_con_id.get(query.con_id)
            if instrument is None or (
                query.symbol and query.symbol.upper() != instrument.wire_symbol.upper()
            ):
                return []
            return [instrument]
        if not query.symbol:
            return []
        return [i for i in self.state.instruments.values() if query.matches(i)]

    def _find(self, query: _ContractQuery) -> Instrument | None:
        """The one instrument the query describes, or None (unknown or ambiguous)."""
        found = self._candidates(query)
        return found[0] if len(found) == 1 else None

    def _req_mkt_data(self, client: _Client, fields: list[str]) -> None:
        req_id = as_int(fields[2])
        query = self._query(fields, 3)
        index = 15
        if query.sec_type == "BAG" and index < len(fields):
            index += 1 + 4 * as_int(fields[index])
        if index < len(fields):
            has_delta_neutral = as_bool(fields[index])
            index += 4 if has_delta_neutral else 1
        snapshot = as_bool(fields[index + 1]) if index + 1 < len(fields) else False
        instrument = self._find(query)
        if instrument is None:
            self._error(client, req_id, 200)
            return
        client.send(P.market_data_type(req_id, client.market_data_type))
        self._send_ticks(client, req_id, instrument, with_close=True)
        if snapshot:
            client.send(P.tick_snapshot_end(req_id))
        else:
            client.subscribe_market_data(req_id, instrument.con_id)

    def _cancel_mkt_data(self, client: _Client, fields: list[str]) -> None:
        client.cancel_market_data(as_int(fields[2]))

    def _req_contract_details(self, client: _Client, fields: list[str]) -> None:
        req_id = as_int(fields[2])
        found = self._candidates(self._query(fields, 3))
        if not found:
            self._error(client, req_id, 200)
            return
        exchange = fields[10].strip() if len(fields) > 10 and fields[10].strip() else "SMART"
        for instrument in found:  # an ambiguous description lists every match, as IB does
            client.send(self._contract_details_fields(client, req_id, instrument, exchange))
        client.send(P.contract_details_end(req_id))

    def _contract_details_fields(
        self, client: _Client, req_id: int, instrument: Instrument, exchange: str
    ) -> P.Message:
        underlying = self.state.instruments.get(instrument.underlying or "")
        return P.contract_details(
            client.server_version,
            req_id,
            symbol=instrument.wire_symbol,
            sec_type=instrument.sec_type,
            exchange=exchange,
            primary_exchange=instrument.exchange,
            currency=instrument.currency,
            con_id=instrument.con_id,
            multiplier=instrument.multiplier,
            long_name=instrument.long_name,
            stock_type=instrument.stock_type,
            industry=instrument.industry,
            category=instrument.category,
            option=_option_terms(instrument),
            under_con_id=underlying.con_id if underlying is not None else 0,
        )

    def _req_historical_data(self, client: _Client, fields: list[str]) -> None:
        # 20|reqId|contract (12 fields)|includeExpired|endDateTime|barSize|duration|useRTH|
        # whatToShow|formatDate|[BAG legs]|keepUpToDate|chartOptions  (no version from v124)
        req_id = as_int(fields[1])
        query = self._query(fields, 2)
        end_text, bar_size, duration, what = (fields[i].strip() for i in (15, 16, 17, 19))
        index = 21
        if query.sec_type == "BAG" and index < len(fields):
            index += 1 + 4 * as_int(fields[index])
        keep_up_to_date = as_bool(fields[index]) if index < len(fields) else False
        instrument = self._find(query)
        if instrument is None:
            self._error(client, req_id, 200)
            return
        span = _duration_days(duration)
        if span is None:
            self._error(client, req_id, 162, f"{_HMDS}Invalid duration string {duration!r}")
            return
        if bar_size.lower() not in _DAILY_BAR_SIZES or what.upper() not in _BAR_SOURCES:
            self._error(
                client,
                req_id,
                162,
                f"{_HMDS}the simulated gateway serves daily bars of {', '.join(_BAR_SOURCES)} "
                f"only (asked: {bar_size!r} {what!r})",
            )
            return
        session = self._session_date()
        end = _end_date(end_text) or session
        cutoff = end - timedelta(days=span)
        bars = [
            bar
            for bar in self.state.daily_bars(instrument.symbol, session)
            if cutoff.strftime("%Y%m%d") < bar.date <= end.strftime("%Y%m%d")
        ]
        if not bars:
            source = what.upper().replace("_", " ").title()
            self._error(
                client,
                req_id,
                162,
                f"{_HMDS}HMDS query returned no data: {instrument.wire_symbol}@"
                f"{query.exchange or 'SMART'} {source}",
            )
            return
        start_text = f"{cutoff:%Y%m%d} 00:00:00"
        stamp = end_text or time.strftime("%Y%m%d %H:%M:%S", time.gmtime(self.clock()))
        client.send(P.historical_data(req_id, start_text, stamp, bars))
        if keep_up_to_date:
            client.history_updates[req_id] = instrument.con_id

    def _cancel_historical_data(self, client: _Client, fields: list[str]) -> None:
        client.history_updates.pop(as_int(fields[2]), None)

    def _session_date(self) -> date:
        """The current session: today in New York, or the last weekday before a weekend."""
        today = datetime.fromtimestamp(self.clock(), _NEW_YORK).date()
        while today.weekday() >= 5:
            today -= timedelta(days=1)
        return today

    def _req_fundamental_data(self, client: _Client, fields: list[str]) -> None:
        # 52|2|reqId|conId|symbol|secType|exchange|primaryExchange|currency|localSymbol|report|...
        req_id = as_int(fields[2])
        query = _ContractQuery(
            con_id=as_int(fields[3]),
            symbol=fields[4].strip(),
            sec_type=fields[5].strip(),
            exchange=fields[6].strip(),
            currency=fields[8].strip() if len(fields) > 8 else "",
        )
        report = fields[10].strip() if len(fields) > 10 else ""
        instrument = self._find(query)
        self.fundamentals_requested.append(instrument.symbol if instrument else query.symbol)
        if not self.scenario.gateway.fundamentals_entitled:
            self._error(client, req_id, 10358)
            return
        if instrument is None:
            self._error(client, req_id, 200)
            return
        if report != "ReportSnapshot" or instrument.shares_outstanding is None:
            self._error(client, req_id, 430)
            return
        xml = P.report_snapshot_xml(
            symbol=instrument.symbol,
            long_name=instrument.long_name,
            exchange=instrument.exchange,
            currency=instrument.currency,
            shares_outstanding=instrument.shares_outstanding,
        )
        client.send(P.fundamental_data(req_id, xml))


def _option_terms(instrument: Instrument) -> P.OptionTerms | None:
    """The option fields of a contract (None for anything else)."""
    if not instrument.is_option:
        return None
    return P.OptionTerms(
        last_trade_date=instrument.last_trade_date,
        strike=instrument.strike,
        right=instrument.right,
        local_symbol=instrument.local_symbol,
    )


_HMDS = "Historical Market Data Service error message:"
_DAILY_BAR_SIZES = ("1 day", "1 days")
_BAR_SOURCES = ("TRADES", "ADJUSTED_LAST", "MIDPOINT", "BID", "ASK")
"""What reqHistoricalData serves (one set of bars: the simulator has no spread or dividends)."""
_DURATION_DAYS = {"S": 1 / 86_400, "D": 1, "W": 7, "M": 30, "Y": 365}
try:
    _NEW_YORK: tzinfo = ZoneInfo("America/New_York")
except ZoneInfoNotFoundError:  # a machine without tz data: sessions by UTC date
    _NEW_YORK = UTC


def _duration_days(text: str) -> int | None:
    """IB's durationStr ("1 Y", "30 D", "60 S") as calendar days; None if malformed."""
    parts = text.upper().split()
    if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in _DURATION_DAYS:
        return None
    return max(1, math.ceil(int(parts[0]) * _DURATION_DAYS[parts[1]]))


def _end_date(text: str) -> date | None:
    """The date of reqHistoricalData's endDateTime ("" = now: None)."""
    digits = text.strip()[:8]
    if len(digits) < 8 or not digits.isdigit():
        return None
    return datetime.strptime(digits, "%Y%m%d").date()


class _ProtocolError(Exception):
    """A client broke the framing; the connection is dropped."""


def _short(value: Any, limit: int = 120) -> str:
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def serve(
    scenario: Scenario | str | None,
    host: str = "127.0.0.1",
    port: int = 7497,
    speed: float | None = 1.0,
    account_push_interval: float | None = None,
    price_updates_per_second: float | None = None,
) -> None:
    """Serve a scenario (default: the built-in sell-off) until cancelled.

    The timeline starts when the first client has started the API, so a monitor launched
    after the gateway sees the whole story. It plays once (or loops when the scenario says
    ``loop = true``); afterwards the gateway keeps serving the final state. ``speed=None``
    uses the scenario's own speed.
    """
    scenario = load_scenario(scenario or DEFAULT_SCENARIO)
    gateway = SimulatedGateway(
        scenario,
        host,
        port,
        speed=speed,
        account_push_interval=account_push_interval,
        price_updates_per_second=price_updates_per_second,
    )
    await gateway.start()
    try:
        if scenario.steps:
            log.info("the %s timeline starts when the first client connects", scenario.name)
            await gateway.wait_until(lambda: bool(gateway.clients), timeout=math.inf)
            await gateway.run_timeline(loop=scenario.loop)
        await asyncio.Event().wait()
    finally:
        await gateway.stop()
