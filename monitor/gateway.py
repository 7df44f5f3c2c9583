"""The connector to TWS or IB Gateway: the only module that imports ib_async.

It connects read-only, keeps every managed account's values and positions as IB pushes them,
and turns IB's strings into immutable :class:`rules.model.AccountSnapshot` values: empty
strings and IB's 1.7976931348623157E308 "unset" double become ``None``, values are keyed by
(tag, currency) so a non-USD base account is read right, and duplicated pushes (ib_async
subscribes both reqAccountUpdates and reqAccountUpdatesMulti) collapse onto one key.

The connector never places, modifies or cancels orders: nothing here calls an order method,
and ``connectAsync(readonly=True)`` keeps ib_async from even asking for open orders.

Supervision runs on the monotonic clock (a wall-clock step changes nothing): the link is looked
at every second; a frame that stays incomplete for :data:`FRAME_TIMEOUT` seconds or announces
more than :data:`MAX_FRAME` bytes (:class:`FrameWatch`) drops the connection at once, and a
link quiet for ``probe_after`` seconds is probed with reqCurrentTime. Ages (of the values, of a
disconnect) are measured on the same clock; the wall clock only stamps what people read.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import structlog
from ib_async import IB, Contract, RequestError, Stock

from monitor.clock import Clock, utc_now
from rules.model import IB_MARGIN_TAGS, AccountSnapshot, Position

log = structlog.get_logger("monitor.gateway")

UNSET_DOUBLE = 1.7976931348623157e308
CONNECTIVITY_LOST = 1100
RESTORED_DATA_LOST = 1101
RESTORED_DATA_KEPT = 1102
CLIENT_ID_IN_USE = 326
#: What an error 326 tells the daemon's user to change.
CLIENT_ID_ADVICE = "set [ib] client_id to a number no other API client uses"
SERVER_CONNECTIVITY_BROKEN = 2110
FUNDAMENTALS_NOT_ALLOWED = 10358
#: Errors that only answer a request the connector awaits, whose caller says what they mean
#: (200 no such contract, 162 no daily bars, 430 no fundamentals for this security): logged
#: at debug here, so each is one line.
ANSWERED_TO_CALLER = frozenset({162, 200, 430})
#: IB ``stockType`` values of funds and notes: they have no shares outstanding worth asking
#: for (IB answers 430 to the fundamentals request of every ETF).
FUND_TYPES = frozenset({"ETF", "ETN", "ETC", "ETP", "ETMF", "FUND", "CEF", "CLOSED-END FUND"})
#: The longest frame accepted: IB's own API client refuses anything longer (ibapi's
#: ``MAX_MSG_LEN``, 16 MB less a byte); a longer length prefix can only be a broken stream.
MAX_FRAME = 0xFFFFFF
#: A frame that has begun must be complete within this many seconds (loopback or a LAN
#: delivers even a large historical-data answer in well under a second).
FRAME_TIMEOUT = 5.0
#: How often the supervisor looks at the link.
SUPERVISE_EVERY = 1.0
#: reqMarketDataType: live where subscribed, else IB's delayed data (free for most symbols).
DELAYED_IF_NOT_SUBSCRIBED = 3


#: How positions are priced between IB's account pushes: one reqPnLSingle per distinct contract
#: on one holder account, shared by every account holding it (the default), or one per
#: (account, holding) as before issue 14 (kept for comparison: bench/scale.py).
PER_CONTRACT = "per_contract"
PER_HOLDING = "per_holding"
PRICE_STREAMS = (PER_CONTRACT, PER_HOLDING)

#: While not every holding is priced, how often the connector logs how far it has got (s).
PRICING_REPORT_EVERY = 10.0

#: Accounts whose values are subscribed one by one at connect (ib_async stops at 50 by default).
MAX_ACCOUNTS = 10_000

#: The pseudo-account that stands for the link itself until an account has been seen.
LINK_ACCOUNT = "gateway@"


def is_link_account(account: str) -> bool:
    """True for the pseudo-account of a gateway link (``gateway@host:port``)."""
    return account.startswith(LINK_ACCOUNT)


class GatewayError(Exception):
    """The gateway cannot be used; the message says what the operator should do."""


def parse_number(text: str | float | None) -> float | None:
    """An IB value string as a float; ``None`` for empty, non-numeric, NaN, inf or IB's unset."""
    if text is None:
        return None
    if isinstance(text, int | float):
        number = float(text)
    else:
        cleaned = text.strip().replace(",", "")
        if not cleaned:
            return None
        try:
            number = float(cleaned)
        except ValueError:
            return None
    if not math.isfinite(number) or abs(number) >= UNSET_DOUBLE * 0.999:
        return None
    return number


@dataclass(frozen=True, slots=True)
class RawPosition:
    """A position as IB describes it, before conversion to base currency."""

    symbol: str
    con_id: int
    sec_type: str
    currency: str
    quantity: float
    multiplier: float = 1.0
    market_price: float | None = None
    market_value: float | None = None
    average_cost: float | None = None
    exchange: str = ""


@dataclass(frozen=True, slots=True)
class AccountValues:
    """Account values keyed by (tag, currency), parsed once."""

    values: dict[tuple[str, str], float | None] = field(default_factory=dict)
    texts: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, str]]) -> AccountValues:
        """Build from ``(tag, value, currency)`` rows; a later row for the same key wins."""
        values: dict[tuple[str, str], float | None] = {}
        texts: dict[tuple[str, str], str] = {}
        for tag, value, currency in rows:
            key = (tag, currency or "")
            texts[key] = value
            values[key] = parse_number(value)
        return cls(values, texts)

    def base_currency(self) -> str | None:
        """The account's base currency: the currency IB quotes NetLiquidation in."""
        for tag in ("NetLiquidation", "NetLiquidation-S", "ExcessLiquidity", "EquityWithLoanValue"):
            for (name, currency), _ in self.values.items():
                if name == tag and currency and currency != "BASE":
                    return currency
        for (name, currency), rate in self.values.items():
            if name == "ExchangeRate" and currency not in ("", "BASE") and rate == 1.0:
                return currency
        text = self.texts.get(("Currency", "BASE")) or ""
        return text.strip() or None

    def margin_value(self, tag: str, base: str | None) -> float | None:
        """A margin tag in base currency: account total first, then the securities segment."""
        for name in (tag, f"{tag}-S"):
            for currency in (base or "", "BASE", ""):
                key = (name, currency)
                if key in self.values and self.values[key] is not None:
                    return self.values[key]
        return None

    def ledger_value(self, tag: str, base: str | None) -> float | None:
        """A ledger tag's base-currency total (the ``BASE`` row)."""
        for currency in ("BASE", base or ""):
            value = self.values.get((tag, currency))
            if value is not None:
                return value
        return None

    def cash_balances(self) -> dict[str, float]:
        """Currency -> cash in that currency: TotalCashBalance per currency, CashBalance where
        IB sent no TotalCashBalance (the ``BASE`` total is not a currency)."""
        balances: dict[str, float] = {}
        for tag in ("CashBalance", "TotalCashBalance"):  # the later tag wins
            for (name, currency), value in self.values.items():
                if name == tag and currency not in ("", "BASE") and value is not None:
                    balances[currency] = value
        return balances

    def exchange_rates(self) -> dict[str, float]:
        """Currency -> units of base per unit, from the ExchangeRate rows."""
        return {
            currency: rate
            for (tag, currency), rate in self.values.items()
            if tag == "ExchangeRate" and currency not in ("", "BASE") and rate and rate > 0
        }


def build_snapshot(
    account: str,
    rows: Iterable[tuple[str, str, str]],
    positions: Iterable[RawPosition],
    as_of: datetime,
    stock_types: dict[int, str] | None = None,
) -> AccountSnapshot:
    """Turn one account's raw IB values and positions into an immutable snapshot."""
    parsed = AccountValues.from_rows(rows)
    base = parsed.base_currency() or "USD"
    figures: dict[str, Any] = {
        name: parsed.margin_value(tag, base) for name, tag in IB_MARGIN_TAGS.items()
    }
    cushion = parsed.margin_value("Cushion", "")
    nlv, el = figures["net_liquidation"], figures["excess_liquidity"]
    if cushion is None and nlv is not None and el is not None and nlv > 0:
        cushion = el / nlv
    next_change = parsed.margin_value("LookAheadNextChange", "")
    rates = parsed.exchange_rates()
    rates.setdefault(base, 1.0)
    stock_types = stock_types or {}
    converted = tuple(
        _to_position(raw, rates, stock_types.get(raw.con_id)) for raw in positions if raw.quantity
    )
    account_type = parsed.texts.get(("AccountType", "")) or None
    return AccountSnapshot(
        account=account,
        base_currency=base,
        as_of=as_of,
        cushion=cushion,
        look_ahead_next_change=(
            datetime.fromtimestamp(next_change, UTC) if next_change and next_change > 0 else None
        ),
        cash_balance=_first_number(
            parsed.ledger_value("TotalCashBalance", base), parsed.ledger_value("CashBalance", base)
        ),
        accrued_cash=parsed.ledger_value("AccruedCash", base),
        cash_balances=parsed.cash_balances(),
        account_type=account_type,
        exchange_rates=rates,
        positions=converted,
        **figures,
    )


def _first_number(*values: float | None) -> float | None:
    """The first value that is not None (a tag's fallback value, e.g. CashBalance)."""
    return next((value for value in values if value is not None), None)


def _to_position(raw: RawPosition, rates: dict[str, float], stock_type: str | None) -> Position:
    rate = rates.get(raw.currency)
    value = raw.market_value
    price = raw.market_price
    if value is None and price is not None:
        value = price * raw.quantity * raw.multiplier
    if price is None and value is not None and raw.quantity:
        price = value / (raw.quantity * raw.multiplier)
    return Position(
        symbol=raw.symbol,
        con_id=raw.con_id,
        sec_type=raw.sec_type,
        quantity=raw.quantity,
        currency=raw.currency,
        market_price=price,
        market_value=value,
        market_value_base=value * rate if value is not None and rate else None,
        average_cost=raw.average_cost,
        stock_type=stock_type,
        multiplier=raw.multiplier,
        exchange=raw.exchange,
    )


def _multiplier(contract: Contract) -> float:
    return parse_number(contract.multiplier or "") or 1.0


class FrameWatch:
    """Follows the length-prefixed frames of the gateway's byte stream, beside ib_async.

    ib_async buffers a frame until its announced length has arrived: a prefix promising more
    than ever comes (a frame cut short on a socket that stays open) or an absurd one (2**31
    bytes) leaves it waiting for ever, deaf to every later message, on a socket that looks
    healthy. Fed the same bytes (the connection's ``hasData`` event), this knows when the
    frame being read began (:meth:`stalled_for`) and flags a prefix beyond :data:`MAX_FRAME`
    at once (:attr:`oversized`).
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self.reset()

    def reset(self) -> None:
        """Forget the stream (a new connection starts with a new frame)."""
        self._header = b""
        self._remaining = 0
        self.started: float | None = None
        self.oversized: int | None = None

    def feed(self, data: bytes) -> None:
        """Account for a chunk of the stream."""
        view, index, size = memoryview(data), 0, len(data)
        while index < size and self.oversized is None:
            if self._remaining:
                taken = min(self._remaining, size - index)
                self._remaining -= taken
                index += taken
                if not self._remaining:
                    self.started = None
                continue
            if not self._header:
                self.started = self.monotonic()
            taken = min(4 - len(self._header), size - index)
            self._header += bytes(view[index : index + taken])
            index += taken
            if len(self._header) < 4:
                break
            length = int.from_bytes(self._header, "big")
            self._header = b""
            if length > MAX_FRAME:
                self.oversized = length
            elif length:
                self._remaining = length
            else:
                self.started = None

    def stalled_for(self) -> float:
        """Seconds the frame being read has been incomplete (0 between frames)."""
        return 0.0 if self.started is None else self.monotonic() - self.started

    def problem(self, timeout: float) -> str | None:
        """Why the stream is wedged, or ``None`` while it is not."""
        if self.oversized is not None:
            return f"a frame announced {self.oversized} bytes (at most {MAX_FRAME} are sane)"
        stalled = self.stalled_for()
        if stalled > timeout:
            return f"a frame stayed incomplete for {stalled:.1f} s"
        return None


@dataclass(frozen=True, slots=True)
class BenchmarkSpec:
    """The market benchmark to follow: a stock or ETF, and how far back its prior peak goes."""

    symbol: str
    exchange: str = "SMART"
    currency: str = "USD"
    lookback_days: int = 365

    @property
    def duration(self) -> str:
        """reqHistoricalData's durationStr covering ``lookback_days`` (years past 365 days)."""
        days = self.lookback_days
        return f"{-(-days // 365)} Y" if days > 365 else f"{days} D"


@dataclass(frozen=True, slots=True)
class BenchmarkQuote:
    """The benchmark now: its price, its highest close (or streamed price) and the day of it;
    ``note`` says where a figure comes from or why it is missing."""

    symbol: str
    price: float | None = None
    peak: float | None = None
    peak_on: date | None = None
    note: str | None = None


@dataclass
class _Benchmark:
    """What the connector holds about the benchmark (daily closes, the streamed price)."""

    spec: BenchmarkSpec
    closes: list[tuple[date, float]] = field(default_factory=list)
    history_error: str | None = None
    pending: bool = False
    ticker: Any = None
    streamed_peak: float | None = None
    streamed_peak_on: date | None = None


@dataclass
class LinkState:
    """What the service needs to know about the gateway link."""

    connected: bool = False
    live: bool = False
    disconnected_since: datetime | None = None
    not_live_since: datetime | None = None  # connected, but the gateway lost IB (1100/2110)
    last_message: datetime | None = None
    last_error: str | None = None
    reconnects: int = 0


UpdateCallback = Callable[[str], None]
#: ``on_price(con_id, account)``: a streamed value moved; ``account`` is ``None`` when the
#: contract's shared stream moved (every holder's value), else the one holding that moved.
PriceCallback = Callable[[int, str | None], None]


class GatewayConnector:
    """Keeps a read-only ib_async connection and serves per-account snapshots.

    ``on_update(account)`` is called whenever anything about an account changes (values,
    positions, streamed position values); the service decides when to evaluate.
    ``on_link(state)`` is called when the link goes up, down, or loses live data.
    ``on_trade(account)`` is called when an account's position changed (a trade: worth
    evaluating before accounts whose values merely refreshed).
    ``on_price(con_id, account)`` is called when a streamed position value moved: with
    ``price_streams="per_contract"`` (the default) one reqPnLSingle per distinct contract runs
    on one holder account and its value per unit prices every account holding it
    (``account`` is then ``None``); the stream moves to another holder when its holder closes
    the position, and ends when nobody holds it. Requests are paced by ib_async (45 a second,
    IB allows 50), streams first, contract look-ups after.
    """

    def __init__(
        self,
        host: str,
        port: int,
        client_id: int,
        accounts: Iterable[str] = (),
        timeout: float = 10.0,
        *,
        clock: Clock = utc_now,
        on_update: UpdateCallback | None = None,
        on_link: Callable[[LinkState], None] | None = None,
        fundamentals: bool = True,
        reconnect_min: float = 1.0,
        reconnect_max: float = 60.0,
        probe_after: float = 60.0,
        frame_timeout: float = FRAME_TIMEOUT,
        monotonic: Callable[[], float] = time.monotonic,
        benchmark: BenchmarkSpec | None = None,
        client_id_advice: str = CLIENT_ID_ADVICE,
        price_streams: str = PER_CONTRACT,
    ) -> None:
        if price_streams not in PRICE_STREAMS:
            raise ValueError(f"price_streams must be one of {PRICE_STREAMS}, got {price_streams!r}")
        self.price_streams = price_streams
        self.host, self.port, self.client_id = host, port, client_id
        self.client_id_advice = client_id_advice  # the fix an error 326 names
        self._benchmark = _Benchmark(benchmark) if benchmark is not None else None
        self.wanted_accounts = [account.strip() for account in accounts if account.strip()]
        self.timeout = timeout
        self.clock = clock
        self.monotonic = monotonic
        self.frame_timeout = frame_timeout
        self._frames = FrameWatch(monotonic)
        self._wedged = asyncio.Event()
        self._down_since: float | None = monotonic()
        self._not_live_since: float | None = None
        self._last_read = monotonic()
        self._values_seen: dict[str, float] = {}
        self.on_update = on_update or (lambda account: None)
        self.on_link = on_link or (lambda state: None)
        self.on_price: PriceCallback = lambda con_id, account: None
        self.on_trade: UpdateCallback = lambda account: None
        self.fundamentals = fundamentals
        self.reconnect_min, self.reconnect_max = reconnect_min, reconnect_max
        self.probe_after = probe_after
        self.state = LinkState(disconnected_since=clock())
        self.ib = self._new_ib()
        self._accounts: list[str] = []
        self._last_values: dict[str, datetime] = {}
        self._stock_types: dict[int, str] = {}
        self._shares_outstanding: dict[str, float] = {}
        self._pnl_subscribed: set[tuple[str, int]] = set()  # per holding
        self._holding_values: dict[tuple[str, int], float] = {}  # per holding: its value
        self._streams: dict[int, str] = {}  # per contract: conId -> the holder streaming it
        self._unit_values: dict[int, float] = {}  # conId -> value of one unit held (its ccy)
        self._holders: dict[int, set[str]] = {}  # conId -> watched accounts holding it
        self._unpriced: set[Any] = set()  # streams (conId, or (account, conId)) not heard yet
        self._connected_at: float | None = None
        self._next_pricing_report = 0.0
        self._rows: dict[str, list[tuple[str, str, str]]] = {}  # per account, until a value
        self._client_id_in_use = False
        self._client_id_refused = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._changed = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        self._fundamentals_lock = asyncio.Lock()
        self._details_pending: set[int] = set()
        self._closing = False

    # -- connection ------------------------------------------------------------------------

    def _new_ib(self) -> IB:
        ib = IB()
        ib.RaiseRequestErrors = True
        # ib_async subscribes each account's values (reqAccountUpdatesMulti) at connect only up
        # to 50 accounts; an advisor login with more would get no account values at all.
        ib.MaxSyncedSubAccounts = MAX_ACCOUNTS
        ib.accountValueEvent += self._on_account_value
        ib.positionEvent += self._on_position
        ib.updatePortfolioEvent += self._on_portfolio
        ib.pnlSingleEvent += self._on_pnl_single
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnected
        ib.client.conn.hasData += self._on_data
        return ib

    def _on_data(self, data: bytes) -> None:
        """Every chunk the gateway sends: the link is being read; watch its frames."""
        self._last_read = self.monotonic()
        self._frames.feed(data)
        if self._frames.oversized is not None:
            self._wedged.set()

    @property
    def endpoint(self) -> str:
        """``host:port`` for messages."""
        return f"{self.host}:{self.port}"

    @property
    def link_account(self) -> str:
        """The pseudo-account the link is watched as until an account has been seen."""
        return f"{LINK_ACCOUNT}{self.endpoint}"

    async def connect(self) -> None:
        """Connect once, read-only; raise :class:`GatewayError` with advice when that fails."""
        self._client_id_in_use = False
        self._client_id_refused = asyncio.Event()
        self._closing = False
        self._connected_at = None  # positions downloaded while connecting are placed after
        self._disconnected.clear()
        if self.ib.isConnected():
            self.ib.disconnect()
        self._frames.reset()
        self._wedged.clear()
        try:
            await self._connect_unless_refused()
        except GatewayError:
            raise
        except Exception as error:
            # Order matters: TimeoutError and ConnectionError are both OSError subclasses.
            if self._client_id_in_use:
                raise GatewayError(self._client_id_message()) from None
            if isinstance(error, ConnectionRefusedError):
                raise GatewayError(self._unreachable_message(error)) from None
            if isinstance(error, TimeoutError | ConnectionError):
                raise GatewayError(
                    f"the gateway at {self.endpoint} did not complete the API handshake "
                    f"({type(error).__name__}); check that API access is enabled in TWS/IB "
                    "Gateway (Configure > API > Settings) and that 127.0.0.1 is a trusted IP"
                ) from None
            if isinstance(error, OSError):
                raise GatewayError(self._unreachable_message(error)) from None
            raise
        if self._client_id_in_use or not self.ib.isConnected():
            raise GatewayError(self._client_id_message())
        managed = self.ib.managedAccounts()
        missing = [account for account in self.wanted_accounts if account not in managed]
        if missing:
            log.warning(
                "configured accounts not managed by this login",
                missing=missing,
                managed=managed,
            )
        self._accounts = [
            a for a in managed if not self.wanted_accounts or a in self.wanted_accounts
        ]
        now, moment = self.clock(), self.monotonic()
        for account in self._accounts:
            self._last_values.setdefault(account, now)
            self._values_seen.setdefault(account, moment)
        self.state.connected = True
        self.state.live = True
        self.state.disconnected_since = None
        self.state.not_live_since = None
        self.state.last_message = now
        self._down_since = self._not_live_since = None
        self._last_read = moment
        self._clear_streams()
        self._connected_at = moment
        self._next_pricing_report = PRICING_REPORT_EVERY
        log.info("connected", endpoint=self.endpoint, accounts=self._accounts)
        self._subscribe_position_values()
        self._subscribe_benchmark()
        self.on_link(self.state)
        for account in self._accounts:
            self.on_update(account)

    async def _connect_unless_refused(self) -> None:
        """``connectAsync``, cut short when IB refuses the client id (error 326).

        The gateway then closes the socket before the API starts, and ib_async would wait out
        its whole timeout before failing with a bare TimeoutError.
        """
        attempt = asyncio.ensure_future(
            self.ib.connectAsync(
                self.host,
                self.port,
                clientId=self.client_id,
                timeout=self.timeout,
                readonly=True,
                account=self.wanted_accounts[0] if len(self.wanted_accounts) == 1 else "",
            )
        )
        refused = asyncio.ensure_future(self._client_id_refused.wait())
        try:
            await asyncio.wait({attempt, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            refused.cancel()
            if not attempt.done():
                attempt.cancel()
                with contextlib.suppress(BaseException):
                    await attempt
        if attempt.cancelled():
            self.ib.disconnect()
            raise GatewayError(self._client_id_message())
        attempt.result()

    def _unreachable_message(self, error: BaseException) -> str:
        return (
            f"cannot reach TWS/IB Gateway at {self.endpoint} ({error.__class__.__name__}); "
            "is it running with API access enabled? Ports: TWS 7497 paper / 7496 live, "
            "IB Gateway 4002 paper / 4001 live"
        )

    def _client_id_message(self) -> str:
        return (
            f"client id {self.client_id} is already in use at {self.endpoint} (IB error 326); "
            f"{self.client_id_advice}"
        )

    async def disconnect(self) -> None:
        """Close the connection on purpose (idempotent)."""
        self._closing = True
        for task in list(self._background):
            task.cancel()
        if self.ib.isConnected():
            self.ib.disconnect()

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until ``stop``: reconnect with backoff and jitter, probe when quiet."""
        delay = self.reconnect_min
        while not stop.is_set():
            try:
                await self.connect()
                delay = self.reconnect_min
                await self._hold(stop)
            except GatewayError as error:
                self.state.last_error = str(error)
                log.warning("gateway unavailable", error=str(error), retry_in=round(delay, 1))
            except Exception as error:  # never let one bad connection end the daemon
                self.state.last_error = f"{type(error).__name__}: {error}"
                log.exception("gateway connection failed", retry_in=round(delay, 1))
            self._mark_down()
            if stop.is_set():
                break
            jittered = min(delay * random.uniform(0.8, 1.2), self.reconnect_max)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), jittered)
            delay = min(delay * 2, self.reconnect_max)
            self.state.reconnects += 1
        await self.disconnect()

    async def _hold(self, stop: asyncio.Event) -> None:
        """Wait while connected, looking at the link every second: drop it when a frame is
        wedged, probe it (reqCurrentTime) when nothing has been read for ``probe_after``."""
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set() and self.ib.isConnected():
                down = asyncio.ensure_future(self._disconnected.wait())
                wedged = asyncio.ensure_future(self._wedged.wait())
                done, _ = await asyncio.wait(
                    {stop_wait, down, wedged},
                    timeout=SUPERVISE_EVERY,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                down.cancel()
                wedged.cancel()
                if stop_wait in done or down in done:
                    return
                problem = self._frames.problem(self.frame_timeout)
                if problem is not None:
                    log.warning(
                        "gateway link wedged; reconnecting", endpoint=self.endpoint, problem=problem
                    )
                    self.ib.disconnect()
                    return
                if self.quiet_for() >= self.probe_after:
                    await self._probe()
                self._report_pricing()
        finally:
            stop_wait.cancel()

    async def _probe(self) -> None:
        try:
            await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), self.timeout)
            self.state.last_message = self.clock()
            self._last_read = self.monotonic()
        except Exception:
            log.warning("gateway did not answer a probe; reconnecting", endpoint=self.endpoint)
            self.ib.disconnect()

    # -- how the link is doing, on the monotonic clock --------------------------------------

    def quiet_for(self) -> float:
        """Seconds since the gateway last sent anything."""
        return max(0.0, self.monotonic() - self._last_read)

    def down_for(self) -> float | None:
        """Seconds since the link went down (``None`` while connected)."""
        if self.state.connected or self._down_since is None:
            return None
        return max(0.0, self.monotonic() - self._down_since)

    def not_live_for(self) -> float | None:
        """Seconds since the gateway lost IB (1100) while connected (``None`` when live)."""
        if self._not_live_since is None:
            return None
        return max(0.0, self.monotonic() - self._not_live_since)

    def values_age(self, account: str) -> float | None:
        """Seconds since IB last pushed ``account``'s values (``None`` if it never did)."""
        seen = self._values_seen.get(account)
        return None if seen is None else max(0.0, self.monotonic() - seen)

    def reading(self) -> bool:
        """True while connected, live and really reading: no frame wedged, and something
        heard within a probe's reach (``probe_after`` plus the request timeout)."""
        if not (self.state.connected and self.state.live):
            return False
        if self._frames.problem(self.frame_timeout) is not None:
            return False
        return self.quiet_for() <= self.probe_after + self.timeout

    def _mark_down(self) -> None:
        if self.state.connected or self.state.disconnected_since is None:
            self.state.disconnected_since = self.clock()
        if self.state.connected or self._down_since is None:
            self._down_since = self.monotonic()
        self._not_live_since = None
        self._connected_at = None
        was_connected = self.state.connected
        self.state.connected = False
        self.state.live = False
        self.state.not_live_since = None
        if was_connected:
            self.on_link(self.state)

    # -- events ----------------------------------------------------------------------------

    def _touch(self, account: str) -> None:
        now = self.clock()
        self.state.last_message = now
        self._changed.set()
        if account in self._accounts or not self._accounts:
            self.on_update(account)

    def _on_account_value(self, value: Any) -> None:
        self._rows.pop(value.account, None)
        if self._connected_at is not None and value.account not in self._accounts:
            self._join(value.account)
        self._last_values[value.account] = self.clock()
        self._values_seen[value.account] = self.monotonic()
        self._touch(value.account)

    def _on_position(self, position: Any) -> None:
        if self._connected_at is not None and self.ib.isConnected():
            self._join(position.account)
            if position.account in self._accounts:
                self._place(position.account, position.contract, float(position.position))
                self.on_trade(position.account)
        self._touch(position.account)

    def _on_portfolio(self, item: Any) -> None:
        self._touch(item.account)

    def _on_pnl_single(self, pnl: Any) -> None:
        """A streamed value: per contract, the holder's value per unit prices every holder."""
        con_id, account = pnl.conId, pnl.account
        value = parse_number(pnl.value)
        if self.price_streams == PER_HOLDING:
            if value is None or self._holding_values.get((account, con_id)) == value:
                return
            self._holding_values[(account, con_id)] = value
            self._heard((account, con_id))
            self._changed.set()
            self.on_price(con_id, account)
            return
        if self._streams.get(con_id) != account:
            return  # a former holder's last message
        quantity = parse_number(pnl.position)
        if value is None or not quantity:
            return  # the holder is closing the position: its position event moves the stream
        unit = value / quantity
        if self._unit_values.get(con_id) == unit:
            return
        self._unit_values[con_id] = unit
        self._heard(con_id)
        self._changed.set()
        self.on_price(con_id, None)

    def _report_pricing(self) -> None:
        """Every 10 s while streams have not all spoken: how far pricing has got."""
        if not self._unpriced or self._connected_at is None:
            return
        elapsed = self.monotonic() - self._connected_at
        if elapsed < self._next_pricing_report:
            return
        self._next_pricing_report = elapsed + PRICING_REPORT_EVERY
        streams = self.stream_count()
        log.info(
            "pricing holdings",
            streams_heard=streams - len(self._unpriced),
            streams=streams,
            price_streams=self.price_streams,
            seconds=round(elapsed, 1),
        )

    def _heard(self, key: Any) -> None:
        """A stream's first value: once every stream has spoken, say how long it took."""
        if key not in self._unpriced:
            return
        self._unpriced.discard(key)
        if not self._unpriced and self._connected_at is not None:
            log.info(
                "every holding priced",
                holdings=sum(len(accounts) for accounts in self._holders.values()),
                streams=self.stream_count(),
                price_streams=self.price_streams,
                seconds=round(self.monotonic() - self._connected_at, 2),
            )

    def _on_disconnected(self) -> None:
        self._disconnected.set()
        if not self._closing:
            log.warning("disconnected from gateway", endpoint=self.endpoint)
        self._mark_down()

    def _on_error(self, req_id: int, code: int, message: str, contract: Any = None) -> None:
        if code == CLIENT_ID_IN_USE:
            self._client_id_in_use = True
            self._client_id_refused.set()
            log.error("client id in use", client_id=self.client_id, endpoint=self.endpoint)
        elif code in (CONNECTIVITY_LOST, SERVER_CONNECTIVITY_BROKEN):
            if self.state.live or self.state.not_live_since is None:
                self.state.not_live_since = self.clock()
                self._not_live_since = self.monotonic()
            self.state.live = False
            log.warning("gateway lost its connection to IB; data is not live", code=code)
            self.on_link(self.state)
        elif code == RESTORED_DATA_LOST:
            # Still not live: what ib_async holds predates the outage, and IB dropped every
            # subscription. The reconnect re-requests everything and marks the data live.
            log.warning("gateway reconnected to IB but lost data; resubscribing", code=code)
            self._spawn(self._resubscribe())
        elif code == RESTORED_DATA_KEPT:
            log.info("gateway reconnected to IB with data kept", code=code)
            self.state.live = True
            self.state.not_live_since = None
            self._not_live_since = None
            self.on_link(self.state)
        elif 2100 <= code < 2200 or code in (FUNDAMENTALS_NOT_ALLOWED, 10167):
            log.debug("gateway notice", code=code, message=message)
        elif code in ANSWERED_TO_CALLER and req_id > 0:
            log.debug("gateway answer to a request", code=code, message=message, req_id=req_id)
        else:
            log.warning("gateway error", code=code, message=message, req_id=req_id)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _resubscribe(self) -> None:
        """After 1101 every subscription is gone: reconnect, which re-requests everything."""
        self.ib.disconnect()

    def _clear_streams(self) -> None:
        """A new connection has no subscriptions (nor values to trust) yet."""
        self._rows.clear()
        self._pnl_subscribed.clear()
        self._holding_values.clear()
        self._streams.clear()
        self._unit_values.clear()
        self._holders.clear()
        self._unpriced.clear()

    def _subscribe_position_values(self) -> None:
        """Price every watched holding (streams first: look-ups queue behind them)."""
        if not self.ib.isConnected():
            return
        for position in self.ib.positions():
            if position.account in self._accounts:
                self._place(position.account, position.contract, float(position.position))

    def _join(self, account: str) -> None:
        """An account that joined the login (managedAccounts) mid-session is watched too."""
        if account in self._accounts or is_link_account(account):
            return
        if account not in self.ib.managedAccounts():
            return
        if self.wanted_accounts and account not in self.wanted_accounts:
            return
        self._accounts.append(account)
        self._last_values.setdefault(account, self.clock())
        self._values_seen.setdefault(account, self.monotonic())
        self._spawn(self._subscribe_values(account))
        log.info("account joined the login", account=account)

    async def _subscribe_values(self, account: str) -> None:
        """Subscribe a joined account's values (connect subscribed the others')."""
        try:
            await asyncio.wait_for(self.ib.reqAccountUpdatesMultiAsync(account), self.timeout)
        except Exception as error:  # its values stay missing: the health rule says so
            log.warning("account values not subscribed", account=account, error=str(error))

    def _place(self, account: str, contract: Contract, quantity: float) -> None:
        """Record who holds ``contract`` and keep its price streaming (or stop it)."""
        con_id = contract.conId
        holders = self._holders.setdefault(con_id, set())
        if quantity:
            holders.add(account)
        else:
            holders.discard(account)
        if self.price_streams == PER_HOLDING:
            key = (account, con_id)
            if quantity and key not in self._pnl_subscribed:
                self._pnl_subscribed.add(key)
                self._unpriced.add(key)
                self.ib.reqPnLSingle(account, "", con_id)
        else:
            self._stream(con_id)
        if quantity and con_id not in self._stock_types:
            self._stock_types[con_id] = ""
            self._details_pending.add(con_id)
            self._spawn(self._look_up(contract))

    def _stream(self, con_id: int) -> None:
        """One stream per held contract, on a holder: moved when that holder closes it (the
        last value keeps pricing the others meanwhile), cancelled when nobody holds it."""
        holders = self._holders.get(con_id)
        current = self._streams.get(con_id)
        if holders and current in holders:
            return
        if current is not None:
            del self._streams[con_id]
            with contextlib.suppress(Exception):
                self.ib.cancelPnLSingle(current, "", con_id)
        if not holders:
            self._holders.pop(con_id, None)
            self._unit_values.pop(con_id, None)
            self._unpriced.discard(con_id)
            log.debug("price stream ended", con_id=con_id, holder=current)
            return
        holder = min(holders)
        self._streams[con_id] = holder
        if con_id not in self._unit_values:
            self._unpriced.add(con_id)
        self.ib.reqPnLSingle(holder, "", con_id)
        if current is not None:
            log.debug("price stream moved", con_id=con_id, holder=holder, former=current)

    def stream_count(self) -> int:
        """reqPnLSingle subscriptions running now."""
        if self.price_streams == PER_HOLDING:
            return len(self._pnl_subscribed)
        return len(self._streams)

    def streams(self) -> dict[int, str]:
        """Per contract: conId -> the account its price streams from."""
        return dict(self._streams)

    def holders(self, con_id: int) -> frozenset[str]:
        """The watched accounts holding ``con_id`` now."""
        return frozenset(self._holders.get(con_id, ()))

    def holder_count(self, con_id: int) -> int:
        """How many watched accounts hold ``con_id`` now."""
        return len(self._holders.get(con_id, ()))

    def unit_value(self, con_id: int) -> float | None:
        """The streamed value of one unit held of ``con_id``, in its currency (per contract)."""
        return self._unit_values.get(con_id)

    def holding_value(self, account: str, con_id: int, quantity: float) -> float | None:
        """The streamed market value of ``account``'s ``quantity`` of ``con_id``."""
        if self.price_streams == PER_HOLDING:
            return self._holding_values.get((account, con_id))
        unit = self._unit_values.get(con_id)
        return None if unit is None else unit * quantity

    async def _look_up(self, contract: Contract) -> None:
        """Fetch stockType (ETF vs COMMON) and, where entitled, shares outstanding."""
        try:
            await self._look_up_details(contract)
        finally:
            self._details_pending.discard(contract.conId)
            self._touch_holders(contract.conId)

    async def _look_up_details(self, contract: Contract) -> None:
        lookup = Contract(conId=contract.conId, exchange=contract.exchange or "SMART")
        try:
            details = await asyncio.wait_for(self.ib.reqContractDetailsAsync(lookup), self.timeout)
        except Exception as error:
            log.info("no contract details", symbol=contract.symbol, error=str(error))
            details = []
        if details:
            self._stock_types[contract.conId] = details[0].stockType or ""
        if not (self.fundamentals and contract.secType == "STK"):
            return
        if self._stock_types.get(contract.conId, "").upper() in FUND_TYPES:
            return  # a fund has no shares outstanding to ask for (IB answers 430)
        async with self._fundamentals_lock:  # one at a time: the first 10358 stops the rest
            if not self.fundamentals:
                return
            try:
                xml = await asyncio.wait_for(
                    self.ib.reqFundamentalDataAsync(lookup, "ReportSnapshot"), self.timeout
                )
            except RequestError as error:
                if error.code == FUNDAMENTALS_NOT_ALLOWED:
                    log.info("no fundamentals entitlement; shares outstanding come from config")
                    self.fundamentals = False
                return
            except Exception:
                return
            shares = parse_shares_outstanding(xml or "")
            if shares:
                self._shares_outstanding[contract.symbol] = shares

    def _touch_holders(self, con_id: int) -> None:
        """Ask for a fresh evaluation of the accounts holding ``con_id`` (its facts arrived)."""
        self._changed.set()
        for account in self._holders.get(con_id, ()):
            self.on_update(account)

    def _touch_all(self) -> None:
        """Ask for a fresh evaluation of every account (new contract facts arrived)."""
        self._changed.set()
        for account in self._accounts:
            self.on_update(account)

    # -- the market benchmark ----------------------------------------------------------------

    def _subscribe_benchmark(self) -> None:
        """Ask for the benchmark's daily closes (its prior peak) and stream its price."""
        bench = self._benchmark
        if bench is None or not self.ib.isConnected():
            return
        spec = bench.spec
        contract = Stock(spec.symbol, spec.exchange, spec.currency)
        bench.pending, bench.ticker = True, None
        self.ib.reqMarketDataType(DELAYED_IF_NOT_SUBSCRIBED)
        self._spawn(self._load_benchmark_history(contract))

    async def _load_benchmark_history(self, contract: Contract) -> None:
        """Qualify the contract, fetch its daily closes over the lookback (TRADES, regular
        hours), then stream its price; any failure is kept as the reason the figures lack."""
        bench = self._benchmark
        assert bench is not None
        spec = bench.spec
        qualified: Contract | None = None
        unknown = (
            f"IB knows no {spec.symbol} on {spec.exchange} in {spec.currency} (check "
            "[rules.drawdown] benchmark)"
        )
        try:
            try:
                found = await asyncio.wait_for(
                    self.ib.qualifyContractsAsync(contract), self.timeout
                )
            except RequestError as error:
                found = []
                unknown += f": error {error.code}, {error.message}"
            qualified = next((c for c in found if isinstance(c, Contract) and c.conId), None)
            if qualified is None:
                bench.history_error = unknown
            else:
                bars = await asyncio.wait_for(
                    self.ib.reqHistoricalDataAsync(
                        qualified, "", spec.duration, "1 day", "TRADES", True, formatDate=1
                    ),
                    self.timeout * 3,
                )
                bench.closes = [
                    (_bar_day(bar.date), float(bar.close))
                    for bar in bars or []
                    if parse_number(bar.close) and float(bar.close) > 0
                ]
                bench.history_error = None if bench.closes else "IB sent no daily bars"
        except RequestError as error:
            bench.history_error = f"IB refused the daily bars: error {error.code}, {error.message}"
        except TimeoutError:
            bench.history_error = "IB did not answer the request for daily bars"
        except Exception as error:  # a benchmark problem never breaks the connection
            bench.history_error = f"daily bars failed: {type(error).__name__}: {error}"
        finally:
            bench.pending = False
            self._touch_all()
        if bench.history_error:
            log.warning(
                "benchmark history unavailable", symbol=spec.symbol, error=bench.history_error
            )
        if qualified is not None and self.ib.isConnected():
            bench.ticker = self.ib.reqMktData(qualified, "", False, False)

    def benchmark_quote(self) -> BenchmarkQuote | None:
        """The benchmark's price (streamed, else the last daily close) and its prior peak
        (highest daily close or streamed price), or ``None`` when none is followed."""
        bench = self._benchmark
        if bench is None:
            return None
        symbol = bench.spec.symbol
        ticker = bench.ticker
        price = None
        if ticker is not None:
            for candidate in (ticker.last, ticker.close):
                number = parse_number(candidate)
                if number is not None and number > 0:
                    price = number
                    break
        today = self.clock().date()
        if price is not None and (bench.streamed_peak is None or price > bench.streamed_peak):
            bench.streamed_peak, bench.streamed_peak_on = price, today
        note = None
        if price is None and bench.closes:
            price, note = bench.closes[-1][1], "no streamed price yet: the last daily close"
        candidates = list(bench.closes)
        if bench.streamed_peak is not None and bench.streamed_peak_on is not None:
            candidates.append((bench.streamed_peak_on, bench.streamed_peak))
        peak_on, peak = max(candidates, key=lambda item: item[1]) if candidates else (None, None)
        if peak is None:
            note = bench.history_error or (
                "daily bars still loading" if bench.pending else "no data from IB yet"
            )
        elif price is None:
            note = "no price from IB yet"
        return BenchmarkQuote(symbol, price, peak, peak_on, note)

    def ready(self) -> bool:
        """True when every account has values, every position a market value and a type, and
        the benchmark's daily bars have arrived (or failed)."""
        if self._details_pending:
            return False
        if self._benchmark is not None and self._benchmark.pending:
            return False
        for account in self._accounts:
            snapshot = self.snapshot(account)
            if snapshot is None or snapshot.net_liquidation is None:
                return False
            if any(position.market_value is None for position in snapshot.positions):
                return False
        return True

    async def wait_ready(self, timeout: float) -> bool:
        """Wait (bounded) until :meth:`ready`; position values stream in after connecting."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.ready():
            remaining = deadline - loop.time()
            if remaining <= 0 or not self.ib.isConnected():
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    # -- snapshots -------------------------------------------------------------------------

    def accounts(self) -> list[str]:
        """The accounts this connector watches (managed and configured)."""
        return list(self._accounts)

    @property
    def shares_outstanding(self) -> dict[str, float]:
        """Shares outstanding learned from IB fundamental data, by symbol."""
        return dict(self._shares_outstanding)

    def last_values_at(self, account: str) -> datetime | None:
        """When IB last pushed account values for ``account``."""
        return self._last_values.get(account)

    def snapshot(self, account: str) -> AccountSnapshot | None:
        """The account as IB last described it, or ``None`` when IB sent nothing for it."""
        rows = self._rows.get(account)
        if rows is None:  # ib_async filters every account's values on each call: keep them
            rows = [
                (value.tag, value.value, value.currency)
                for value in self.ib.accountValues(account)
                if not value.modelCode
            ]
            self._rows[account] = rows
        if not rows:
            return None
        return build_snapshot(
            account,
            rows,
            self._raw_positions(account),
            self._last_values.get(account) or self.clock(),
            {con_id: kind for con_id, kind in self._stock_types.items() if kind},
        )

    def _raw_positions(self, account: str) -> list[RawPosition]:
        portfolio = {item.contract.conId: item for item in self.ib.portfolio(account)}
        result = []
        for position in self.ib.positions(account):
            contract = position.contract
            quantity = float(position.position)
            item = portfolio.get(contract.conId)
            price = value = None
            if item is not None:
                price, value = parse_number(item.marketPrice), parse_number(item.marketValue)
            streamed = self.holding_value(account, contract.conId, quantity)
            if streamed is not None:
                value, price = streamed, None
            result.append(
                RawPosition(
                    symbol=contract.symbol or contract.localSymbol or str(contract.conId),
                    con_id=contract.conId,
                    sec_type=contract.secType,
                    currency=contract.currency,
                    quantity=quantity,
                    multiplier=_multiplier(contract),
                    market_price=price,
                    market_value=value,
                    average_cost=parse_number(position.avgCost),
                    exchange=contract.primaryExchange or contract.exchange or "",
                )
            )
        return result


def _bar_day(value: Any) -> date:
    """A daily bar's date (ib_async parses ``formatDate=1`` daily bars into dates)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return datetime.strptime(str(value)[:8], "%Y%m%d").date()


def parse_shares_outstanding(xml: str) -> float | None:
    """Shares outstanding from a ReportSnapshot document (``<SharesOut>``), else ``None``."""
    import xml.etree.ElementTree as ElementTree

    if not xml.strip():
        return None
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        if element.tag.lower() in ("sharesout", "sharesoutstanding"):
            number = parse_number((element.text or "").strip())
            if number and number > 0:
                return number
    return None
