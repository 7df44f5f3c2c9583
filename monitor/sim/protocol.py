"""Wire format of the TWS API socket protocol, as the simulated gateway speaks it.

Framing: after the ``API\\0`` prefix every message is a 4-byte big-endian length followed by
ASCII fields, each ended by NUL. The builders below return the field lists of the server ->
client messages at the negotiated server version (the simulator offers 176: ib_async gets 176,
the PyPI ``ibapi`` 9.81 client gets 157, ibapi 10.x gets 176). Field counts follow ib_async's
``decoder.py`` and ibapi's ``decoder.py`` exactly: ib_async unpacks several messages by
position (portfolioValue 20 fields, position 16, tickPrice 7) and ibapi 9.81 rejects a
"wrap" message whose field count differs from its wrapper method's parameters.

Numbers are written the way TWS writes them: quantities as integers when integral (ibapi
9.81 and ib_async parse the pnlSingle position with ``int()``), money with two decimals.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

SERVER_VERSION = 176
"""Highest version offered: at <= 200 every client stays on the text protocol."""
MIN_CLIENT_VERSION = 100
"""Below this the client predates length-prefixed messages; the connection is refused."""
MAX_FRAME = 0xFFFFFF
"""Largest frame accepted from a client (16 MB, TWS's own limit)."""
Message = list[object]
"""The fields of one message, in order (``frame`` turns them into bytes)."""
UNSET_DOUBLE = 1.7976931348623157e308
UNSET_TEXT = "1.7976931348623157E308"

# server versions at which a layout changes (ibapi server_versions.py)
V_MD_SIZE_MULTIPLIER = 110
V_FRACTIONAL_SIZE = 163
V_SIZE_RULES = 164
V_ADVANCED_ORDER_REJECT = 166


class In:
    """Request ids a client sends (ibapi ``message.OUT``)."""

    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCT_DATA = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DATA = 9
    REQ_MKT_DEPTH = 10
    CANCEL_MKT_DEPTH = 11
    REQ_NEWS_BULLETINS = 12
    CANCEL_NEWS_BULLETINS = 13
    REQ_HISTORICAL_DATA = 20
    CANCEL_HISTORICAL_DATA = 25
    REQ_SCANNER_SUBSCRIPTION = 22
    REQ_REAL_TIME_BARS = 50
    CANCEL_REAL_TIME_BARS = 51
    REQ_HEAD_TIMESTAMP = 87
    REQ_HISTOGRAM_DATA = 88
    REQ_HISTORICAL_TICKS = 96
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    EXERCISE_OPTIONS = 21
    REQ_CURRENT_TIME = 49
    REQ_FUNDAMENTAL_DATA = 52
    CANCEL_FUNDAMENTAL_DATA = 53
    REQ_GLOBAL_CANCEL = 58
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_POSITIONS_MULTI = 74
    CANCEL_POSITIONS_MULTI = 75
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_PNL = 92
    CANCEL_PNL = 93
    REQ_PNL_SINGLE = 94
    CANCEL_PNL_SINGLE = 95
    REQ_COMPLETED_ORDERS = 99
    REQ_CALC_IMPLIED_VOLAT = 54
    REQ_CALC_OPTION_PRICE = 55
    REQ_SEC_DEF_OPT_PARAMS = 78
    REQ_MATCHING_SYMBOLS = 81
    REQ_SMART_COMPONENTS = 83
    REQ_NEWS_ARTICLE = 84
    REQ_HISTORICAL_NEWS = 86
    REQ_TICK_BY_TICK_DATA = 97


ORDER_MESSAGE_IDS: dict[int, str] = {
    In.PLACE_ORDER: "placeOrder",
    In.CANCEL_ORDER: "cancelOrder",
    In.EXERCISE_OPTIONS: "exerciseOptions",
    In.REQ_GLOBAL_CANCEL: "reqGlobalCancel",
}
"""Messages that place, modify or cancel orders: recorded, never acted upon."""


class Out:
    """Message ids the server sends (ibapi ``message.IN``)."""

    TICK_PRICE = 1
    TICK_SIZE = 2
    ERR_MSG = 4
    ACCT_VALUE = 6
    PORTFOLIO_VALUE = 7
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    MANAGED_ACCTS = 15
    CURRENT_TIME = 49
    FUNDAMENTAL_DATA = 51
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    TICK_SNAPSHOT_END = 57
    HISTORICAL_DATA = 17
    HISTORICAL_DATA_UPDATE = 90
    MARKET_DATA_TYPE = 58
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    POSITION_MULTI = 71
    POSITION_MULTI_END = 72
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    PNL = 94
    PNL_SINGLE = 95
    COMPLETED_ORDERS_END = 102


class Tick:
    """Tick types used for market data (live and delayed)."""

    BID = 1
    ASK = 2
    LAST = 4
    LAST_SIZE = 5
    CLOSE = 9
    DELAYED_BID = 66
    DELAYED_ASK = 67
    DELAYED_LAST = 68
    DELAYED_LAST_SIZE = 71
    DELAYED_CLOSE = 75


# error codes and the texts real gateways send with them
ERROR_TEXTS: dict[int, str] = {
    162: "Historical Market Data Service error message:HMDS query returned no data",
    200: "No security definition has been found for the request",
    321: "Error validating request",
    354: "Requested market data is not subscribed.",
    326: "Unable to connect as the client id is already in use. Retry with a unique client id.",
    430: "We are sorry, but fundamentals data for the security specified is not available.",
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
    1300: "TWS socket port has been reset and this connection is being dropped.",
    2103: "Market data farm connection is broken:usfarm",
    2104: "Market data farm connection is OK:usfarm",
    2105: "HMDS data farm connection is broken:ushmds",
    2106: "HMDS data farm connection is OK:ushmds",
    2110: "Connectivity between Trader Workstation and server is broken. It will be restored "
    "automatically.",
    2157: "Sec-def data farm connection is broken:secdefnj",
    2158: "Sec-def data farm connection is OK:secdefnj",
    10276: "News feed is not allowed.",
    10358: "Fundamentals data is not allowed.",
}
FARM_NOTICES = (2104, 2106, 2158)
READ_ONLY_CODE = 321
READ_ONLY_TEXT = (
    "Error validating request:-'bh' : cause - The API interface is currently in Read-Only mode."
)
"""IB's answer to an order message when the API is read-only (TWS/Gateway "Read-Only API"
setting). Code and text as IB Gateway sends them, quoted in IbcAlpha/IBC issue #10 (2018,
``error; 1; 321; Error validating request:-'bh' : cause - The API interface is currently in
Read-Only mode.``) and issue #341 (2026, IB Gateway 1037: the same 321 for every order)."""
ORDER_REQ_ID_FIELD: dict[int, int | None] = {
    In.PLACE_ORDER: 1,  # 3|orderId|... (no version field from server version 145)
    In.CANCEL_ORDER: 2,  # 4|1|orderId|manualOrderCancelTime
    In.EXERCISE_OPTIONS: 2,  # 21|2|reqId|...
    In.REQ_GLOBAL_CANCEL: None,  # 58|1: not tied to an order (reqId -1)
}
"""Where each order message carries the id its error refers to."""
UNSERVED: dict[int, tuple[int, int]] = {
    In.REQ_MKT_DEPTH: (2, 354),  # 10|5|reqId|...
    In.REQ_REAL_TIME_BARS: (2, 354),  # 50|3|reqId|...
    In.REQ_CALC_IMPLIED_VOLAT: (2, 354),  # 54|3|reqId|...
    In.REQ_CALC_OPTION_PRICE: (2, 354),  # 55|3|reqId|...
    In.REQ_TICK_BY_TICK_DATA: (1, 354),  # 97|reqId|...
    In.REQ_HEAD_TIMESTAMP: (1, 162),  # 87|reqId|...
    In.REQ_HISTOGRAM_DATA: (1, 162),  # 88|reqId|...
    In.REQ_HISTORICAL_TICKS: (1, 162),  # 96|reqId|...
    In.REQ_SCANNER_SUBSCRIPTION: (1, 162),  # 22|reqId|... (no version from server 143)
    In.REQ_SEC_DEF_OPT_PARAMS: (1, 200),  # 78|reqId|...
    In.REQ_MATCHING_SYMBOLS: (1, 200),  # 81|reqId|pattern
    In.REQ_SMART_COMPONENTS: (1, 200),  # 83|reqId|bboExchange
    In.REQ_NEWS_ARTICLE: (1, 10276),  # 84|reqId|...
    In.REQ_HISTORICAL_NEWS: (1, 10276),  # 86|reqId|...
}
"""Requests the simulator has no data for -> (reqId field, error code): the answer a real
gateway gives when it has none either (354 without a market data subscription, 162 when the
historical data farm or the scanner returns nothing, 200 when no contract matches, 10276
without a news subscription), so a client's request ends at once instead of at its timeout."""
SILENT: frozenset[int] = frozenset({11, 13, 14, 23, 51, 56, 57, 89, 98, 101, 103})
"""Cancels (and setServerLogLevel) of requests the simulator does not serve: a real gateway
answers none of them either."""
UNSUPPORTED_CODE = 321
UNSUPPORTED_TEXT = (
    "Error validating request: cause - message id {id} is not supported by the simulated "
    "gateway (it serves what margin-monitor asks for: account data, positions, PnL, contract "
    "details, market data snapshots, fundamentals and daily history)"
)
"""The 321 answer to any other request the simulator does not serve, with reqId -1 (its
position in the message is not known): an error the client logs, never silence."""


# -- field formatting ------------------------------------------------------------------------


def fmt_number(value: float) -> str:
    """A number as TWS writes a plain numeric field: integral values without ``.0``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(round(float(value), 8))


def fmt_money(value: float) -> str:
    """Money with two decimals, as in account values (``"-10000.00"``)."""
    return f"{value:.2f}"


def fmt_ratio(value: float) -> str:
    """A fraction such as the Cushion (``"0.312745"``)."""
    return f"{value:.6f}"


def encode_field(value: object) -> str:
    """One field's text: bools as 1/0, None as empty, floats via :func:`fmt_number`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return fmt_number(value)
    return str(value)


def frame(fields: Sequence[object]) -> bytes:
    """Serialize fields into one length-prefixed frame."""
    payload = "".join(encode_field(field) + "\0" for field in fields).encode("ascii", "replace")
    return struct.pack(">I", len(payload)) + payload


def encode_tail(fields: Sequence[object]) -> bytes:
    """The fields after a message's reqId, encoded once and shared by every subscription."""
    return "".join(encode_field(field) + "\0" for field in fields).encode("ascii", "replace")


def frame_with_req_id(head: bytes, req_id: int, tail: bytes) -> bytes:
    """``head`` (the fields before the reqId, encoded), the reqId, then ``tail``: the same bytes
    as :func:`frame` of the whole message, built without re-encoding the shared part."""
    body = b"%s%d\0%s" % (head, req_id, tail)
    return len(body).to_bytes(4, "big") + body


PNL_SINGLE_HEAD = b"95\0"
"""pnlSingle's fields before its reqId."""
TICK_PRICE_HEAD = b"1\x006\x00"
"""tickPrice's fields before its reqId (message id and version)."""


def split_fields(payload: bytes) -> list[str]:
    """The NUL-terminated fields of one frame's payload."""
    text = payload.decode("utf-8", errors="replace")
    fields = text.split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


_VERSION_RANGE = re.compile(r"v(\d+)(?:\.\.(\d+))?")


def parse_version_range(text: str) -> tuple[int, int] | None:
    """``"v157..178 +opts"`` -> (157, 178); ``None`` when it is not a version range."""
    match = _VERSION_RANGE.match(text.strip())
    if not match:
        return None
    low = int(match.group(1))
    high = int(match.group(2) or low)
    return low, high


def as_int(text: str, default: int = 0) -> int:
    """An integer field; empty means ``default``; a non-number raises ``ValueError``."""
    text = text.strip()
    if not text:
        return default
    return int(float(text)) if "." in text or "e" in text.lower() else int(text)


def as_bool(text: str) -> bool:
    """A boolean field ("1"/"0", also "True"/"False")."""
    return text.strip().lower() in ("1", "true")


# -- server -> client messages ---------------------------------------------------------------


def error(server_version: int, req_id: int, code: int, message: str | None = None) -> Message:
    """``4|2|reqId|code|message[|advancedOrderRejectJson]`` (last field from v166)."""
    fields: Message = [Out.ERR_MSG, 2, req_id, code, message or ERROR_TEXTS.get(code, "")]
    if server_version >= V_ADVANCED_ORDER_REJECT:
        fields.append("")
    return fields


def managed_accounts(accounts: Sequence[str]) -> Message:
    """``15|1|DU111,DU222``."""
    return [Out.MANAGED_ACCTS, 1, ",".join(accounts)]


def next_valid_id(order_id: int) -> Message:
    """``9|1|id``."""
    return [Out.NEXT_VALID_ID, 1, order_id]


def current_time(epoch: int) -> Message:
    """``49|1|epochSeconds``."""
    return [Out.CURRENT_TIME, 1, epoch]


def account_value(tag: str, value: str, currency: str, account: str) -> Message:
    """``6|2|tag|value|currency|account``."""
    return [Out.ACCT_VALUE, 2, tag, value, currency, account]


def account_time(hhmm: str) -> Message:
    """``8|1|HH:MM``."""
    return [Out.ACCT_UPDATE_TIME, 1, hhmm]


def account_download_end(account: str) -> Message:
    """``54|1|account``."""
    return [Out.ACCT_DOWNLOAD_END, 1, account]


@dataclass(frozen=True, slots=True)
class OptionTerms:
    """What an option adds to a contract's fields (a stock has none)."""

    last_trade_date: str
    """YYYYMMDD."""
    strike: float
    right: str
    """"C" or "P"."""
    local_symbol: str
    """The OCC code, e.g. ``SPY   261218P00400000``."""


def _contract_head(
    con_id: int, symbol: str, sec_type: str, multiplier: float, option: OptionTerms | None = None
) -> Message:
    """conId|symbol|secType|lastTradeDate|strike|right|multiplier (stocks: no expiry)."""
    mult = "" if multiplier == 1 else fmt_number(multiplier)
    if option is None:
        return [con_id, symbol, sec_type, "", "0", "", mult]
    return [
        con_id, symbol, sec_type, option.last_trade_date, fmt_number(option.strike),
        option.right, mult,
    ]  # fmt: skip


def _local_symbol(symbol: str, option: OptionTerms | None) -> str:
    return symbol if option is None else option.local_symbol


def portfolio_value(
    *,
    account: str,
    con_id: int,
    symbol: str,
    sec_type: str,
    multiplier: float,
    primary_exchange: str,
    currency: str,
    position: float,
    market_price: float,
    market_value: float,
    average_cost: float,
    unrealized_pnl: float,
    realized_pnl: float,
    option: OptionTerms | None = None,
) -> Message:
    """``7|8|conId|symbol|...|account``: exactly 20 fields."""
    return [
        Out.PORTFOLIO_VALUE,
        8,
        *_contract_head(con_id, symbol, sec_type, multiplier, option),
        primary_exchange,
        currency,
        _local_symbol(symbol, option),
        symbol,  # tradingClass
        fmt_number(position),
        fmt_number(round(market_price, 8)),
        fmt_money(market_value),
        fmt_number(round(average_cost, 8)),
        fmt_money(unrealized_pnl),
        fmt_money(realized_pnl),
        account,
    ]


def position(
    *,
    account: str,
    con_id: int,
    symbol: str,
    sec_type: str,
    multiplier: float,
    exchange: str,
    currency: str,
    quantity: float,
    average_cost: float,
    option: OptionTerms | None = None,
) -> Message:
    """``61|3|account|conId|...|position|avgCost``: exactly 16 fields."""
    return [
        Out.POSITION_DATA,
        3,
        account,
        *_contract_head(con_id, symbol, sec_type, multiplier, option),
        exchange,
        currency,
        _local_symbol(symbol, option),
        symbol,
        fmt_number(quantity),
        fmt_number(round(average_cost, 8)),
    ]


def position_end() -> Message:
    """``62|1``."""
    return [Out.POSITION_END, 1]


def position_multi(
    *,
    req_id: int,
    account: str,
    con_id: int,
    symbol: str,
    sec_type: str,
    multiplier: float,
    exchange: str,
    currency: str,
    quantity: float,
    average_cost: float,
    model_code: str = "",
    option: OptionTerms | None = None,
) -> Message:
    """``71|1|reqId|account|conId|...|position|avgCost|modelCode``: 18 fields."""
    return [
        Out.POSITION_MULTI,
        1,
        req_id,
        account,
        *_contract_head(con_id, symbol, sec_type, multiplier, option),
        exchange,
        currency,
        _local_symbol(symbol, option),
        symbol,
        fmt_number(quantity),
        fmt_number(round(average_cost, 8)),
        model_code,
    ]


def position_multi_end(req_id: int) -> Message:
    """``72|1|reqId``."""
    return [Out.POSITION_MULTI_END, 1, req_id]


def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> Message:
    """``63|1|reqId|account|tag|value|currency``."""
    return [Out.ACCOUNT_SUMMARY, 1, req_id, account, tag, value, currency]


def account_summary_end(req_id: int) -> Message:
    """``64|1|reqId``."""
    return [Out.ACCOUNT_SUMMARY_END, 1, req_id]


def account_update_multi(
    req_id: int, account: str, model_code: str, tag: str, value: str, currency: str
) -> Message:
    """``73|1|reqId|account|modelCode|tag|value|currency``."""
    return [Out.ACCOUNT_UPDATE_MULTI, 1, req_id, account, model_code, tag, value, currency]


def account_update_multi_end(req_id: int) -> Message:
    """``74|1|reqId``."""
    return [Out.ACCOUNT_UPDATE_MULTI_END, 1, req_id]


def pnl(req_id: int, daily: float, unrealized: float, realized: float) -> Message:
    """``94|reqId|dailyPnL|unrealizedPnL|realizedPnL`` (no version field)."""
    return [Out.PNL, req_id, fmt_money(daily), fmt_money(unrealized), fmt_money(realized)]


def pnl_single(
    req_id: int, quantity: float, daily: float, unrealized: float, realized: float, value: float
) -> Message:
    """``95|reqId|position|dailyPnL|unrealizedPnL|realizedPnL|value`` (no version field)."""
    return [
        Out.PNL_SINGLE,
        req_id,
        fmt_number(quantity),
        fmt_money(daily),
        fmt_money(unrealized),
        fmt_money(realized),
        fmt_money(value),
    ]


def open_order_end() -> Message:
    """``53|1``."""
    return [Out.OPEN_ORDER_END, 1]


def completed_orders_end() -> Message:
    """``102`` (no version field)."""
    return [Out.COMPLETED_ORDERS_END]


def exec_details_end(req_id: int) -> Message:
    """``55|1|reqId``."""
    return [Out.EXECUTION_DATA_END, 1, req_id]


def tick_price(req_id: int, tick_type: int, price: float, size: float, attrib: int = 0) -> Message:
    """``1|6|reqId|tickType|price|size|attribMask``: exactly 7 fields."""
    return [Out.TICK_PRICE, 6, req_id, tick_type, fmt_number(price), fmt_number(size), attrib]


def tick_size(req_id: int, tick_type: int, size: float) -> Message:
    """``2|6|reqId|tickType|size``."""
    return [Out.TICK_SIZE, 6, req_id, tick_type, fmt_number(size)]


def market_data_type(req_id: int, kind: int) -> Message:
    """``58|1|reqId|type`` (1 live, 2 frozen, 3 delayed, 4 delayed frozen)."""
    return [Out.MARKET_DATA_TYPE, 1, req_id, kind]


def tick_snapshot_end(req_id: int) -> Message:
    """``57|1|reqId``."""
    return [Out.TICK_SNAPSHOT_END, 1, req_id]


def fundamental_data(req_id: int, data: str) -> Message:
    """``51|1|reqId|xml``."""
    return [Out.FUNDAMENTAL_DATA, 1, req_id, data.replace("\0", "")]


def contract_details(
    server_version: int,
    req_id: int,
    *,
    symbol: str,
    sec_type: str,
    exchange: str,
    primary_exchange: str,
    currency: str,
    con_id: int,
    multiplier: float,
    long_name: str,
    stock_type: str,
    industry: str = "",
    category: str = "",
    min_tick: float = 0.01,
    option: OptionTerms | None = None,
    under_con_id: int = 0,
) -> Message:
    """contractDetails (10) at ``server_version``.

    Before v164 the message carries a version field (8) and the obsolete mdSizeMultiplier;
    from v164 neither, and minSize, sizeIncrement and suggestedSizeIncrement follow stockType.
    An option carries its expiry, strike and right, its OCC local symbol, the underlying's
    conId, symbol and secType, and its expiry again as realExpirationDate.
    """
    fields: Message = [Out.CONTRACT_DATA]
    if server_version < V_SIZE_RULES:
        fields.append(8)
    head = _contract_head(con_id, symbol, sec_type, multiplier, option)
    fields += [
        req_id,
        symbol,
        sec_type,
        *head[3:6],  # lastTradeDateOrContractMonth, strike, right
        exchange,
        currency,
        _local_symbol(symbol, option),
        symbol,  # marketName
        symbol,  # tradingClass
        con_id,
        fmt_number(min_tick),
    ]
    if V_MD_SIZE_MULTIPLIER <= server_version < V_SIZE_RULES:
        fields.append(1)  # mdSizeMultiplier
    fields += [
        "" if multiplier == 1 else fmt_number(multiplier),
        "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,DAY,GAT,GTC,GTD,LIT,LMT,MIT,MKT,"
        "MOC,MTL,NONALGO,OCA,REL,STP,STPLMT,TRAIL,TRAILLIMIT,WHATIF",
        f"SMART,{primary_exchange},ARCA,BATS,IEX" if primary_exchange else "SMART",
        1,  # priceMagnifier
        under_con_id,
        long_name,
        primary_exchange,
        "" if option is None else option.last_trade_date[:6],  # contractMonth
        industry,
        category,
        "",  # subcategory
        "US/Eastern",
        "20261123:0400-20261123:2000;20261124:0400-20261124:2000",
        "20261123:0930-20261123:1600;20261124:0930-20261124:1600",
        "",  # evRule
        "",  # evMultiplier
        0,  # secIdListCount
        1,  # aggGroup
        "" if option is None else symbol,  # underSymbol
        "" if option is None else "STK",  # underSecType
        "26,26,26,26,26",  # marketRuleIds
        "" if option is None else option.last_trade_date,  # realExpirationDate
        stock_type,
    ]
    if server_version == V_FRACTIONAL_SIZE:
        fields.append("100")  # suggestedSizeIncrement, v163 only
    if server_version >= V_SIZE_RULES:
        fields += ["0.0001", "0.0001", "100"]  # minSize, sizeIncrement, suggestedSizeIncrement
    return fields


@dataclass(frozen=True, slots=True)
class Bar:
    """One historical bar."""

    date: str
    """``YYYYMMDD`` for daily bars."""
    open: float
    high: float
    low: float
    close: float
    volume: float
    average: float
    bar_count: int


def _bar_prices(bar: Bar) -> list[str]:
    return [fmt_number(round(price, 4)) for price in (bar.open, bar.high, bar.low, bar.close)]


def historical_data(req_id: int, start: str, end: str, bars: Sequence[Bar]) -> Message:
    """``17|reqId|startDate|endDate|count|{date|open|high|low|close|volume|WAP|barCount}*``.

    From server version 124 (SYNT_REALTIME_BARS) there is no version field; before 196 the end
    of the data is this message itself (ib_async 2.1 calls historicalDataEnd after the bars).
    """
    fields: Message = [Out.HISTORICAL_DATA, req_id, start, end, len(bars)]
    for bar in bars:
        fields += [
            bar.date,
            *_bar_prices(bar),
            fmt_number(bar.volume),
            fmt_number(round(bar.average, 4)),
            bar.bar_count,
        ]
    return fields


def historical_data_update(req_id: int, bar: Bar) -> Message:
    """``90|reqId|barCount|date|open|close|high|low|WAP|volume`` (keepUpToDate)."""
    open_, high, low, close = _bar_prices(bar)
    return [
        Out.HISTORICAL_DATA_UPDATE,
        req_id,
        bar.bar_count,
        bar.date,
        open_,
        close,
        high,
        low,
        fmt_number(round(bar.average, 4)),
        fmt_number(bar.volume),
    ]


def contract_details_end(req_id: int) -> Message:
    """``52|1|reqId``."""
    return [Out.CONTRACT_DATA_END, 1, req_id]


def report_snapshot_xml(
    *, symbol: str, long_name: str, exchange: str, currency: str, shares_outstanding: float
) -> str:
    """A small ReportSnapshot document in Refinitiv's layout, carrying ``<SharesOut>``."""
    shares = f"{shares_outstanding:.1f}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ReportSnapshot Major="1" Minor="0" Revision="1">\n'
        "  <CoIDs>\n"
        f'    <CoID Type="RepNo">SIM{zlib.crc32(symbol.encode()) % 100000:05d}</CoID>\n'
        f'    <CoID Type="CompanyName">{_xml_text(long_name)}</CoID>\n'
        "  </CoIDs>\n"
        "  <Issues>\n"
        '    <Issue ID="1" Type="C" Desc="Common Stock" Order="1">\n'
        f'      <IssueID Type="Ticker">{_xml_text(symbol)}</IssueID>\n'
        f'      <Exchange Code="{_xml_text(exchange)}" Country="USA">'
        f"{_xml_text(exchange)}</Exchange>\n"
        "    </Issue>\n"
        "  </Issues>\n"
        "  <CoGeneralInfo>\n"
        '    <CoStatus Code="1">Active</CoStatus>\n'
        '    <CoType Code="EQU">Equity Issue</CoType>\n'
        f'    <SharesOut Date="2026-09-30" TotalFloat="{shares}">{shares}</SharesOut>\n'
        f'    <ReportingCurrency Code="{_xml_text(currency)}">{_xml_text(currency)}'
        "</ReportingCurrency>\n"
        "  </CoGeneralInfo>\n"
        "</ReportSnapshot>\n"
    )


def _xml_text(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
