"""Books beyond long-only USD stock (margin-rules.md sections 2 and 6), as ib_async receives
them from the simulated gateway: options, shorts on IB's default schedule, several currencies.
Figures are worked by hand in each docstring (and in the scenario files' comments)."""

from __future__ import annotations

import asyncio

import pytest
from gateway_support import connect, raw_start, run, value
from ib_async import Option, Stock
from support import until

from monitor.sim.scenarios import load_scenario
from monitor.sim.state import SimState, short_requirement_per_share

SHORTS, OPTIONS = "DU6000001", "DU6000002"


def figure(ib, account: str, tag: str, currency: str) -> float:
    """An account value ib_async holds, as a number (fails the test when absent)."""
    text = value(ib, account, tag, currency)
    assert text is not None, f"{account} {tag} {currency} not received"
    return float(text)


def figures(ib, account: str, expected: dict[tuple[str, str], float]) -> dict:
    """The (tag, currency) values ib_async holds for ``expected``'s keys, as numbers."""
    return {key: figure(ib, account, *key) for key in expected}


@pytest.mark.parametrize(
    ("price", "per_share"),
    [
        (50.0, 15.0),
        (16.68, 0.3 * 16.68),
        (16.67, 5.0),
        (5.0, 5.0),
        (4.99, 4.99),
        (2.51, 2.51),
        (2.5, 2.5),
        (1.0, 2.5),
    ],
)
def test_ibs_default_short_schedule(price, per_share):
    """30% above 16.67; 5.00/share from 5 to 16.67; 100% under 5; 2.50/share at or under
    2.50 (margin-rules.md section 2)."""
    assert short_requirement_per_share(price) == pytest.approx(per_share)


def test_options_count_in_nlv_and_gpv_not_in_elv_through_ib_async(simulated_gateway):
    """DU6000002: cash 50,000; SPY 100 @ 500; long 2 SPY 550 C @ 8.00; short 3 SPY 450 P @ 6.00.

    NLV = 50,000 + 50,000 + 1,600 - 1,800 = 99,800; ELV = cash + stocks = 100,000;
    GPV = 50,000 + 1,600 + 1,800 = 53,400; maint = 12,500 (SPY 25%) + 0 (long call)
    + 1,800 + 20% x 3 x 100 x 500 = 31,800 (short puts) = 44,300; EL = 55,700.
    The call falls to 3.00: NLV 98,800, ELV and EL unchanged, GPV 52,400, OptionMarketValue
    (BASE) 600 - 1,800 = -1,200. Positions, portfolio rows, contract details and pnlSingle
    carry secType OPT, the right, strike, expiry and multiplier 100; pnlSingle's value is
    quantity x price x 100.
    """

    async def body() -> None:
        async with simulated_gateway("shorts_options", pnl_interval=0) as gateway:
            ib = await connect(gateway.port)
            expected = {
                ("NetLiquidation", "USD"): 99_800.0,
                ("EquityWithLoanValue", "USD"): 100_000.0,
                ("GrossPositionValue", "USD"): 53_400.0,
                ("MaintMarginReq", "USD"): 44_300.0,
                ("ExcessLiquidity", "USD"): 55_700.0,
                ("OptionMarketValue", "BASE"): -200.0,
                ("StockMarketValue", "BASE"): 50_000.0,
                ("NetLiquidationByCurrency", "USD"): 99_800.0,
            }
            assert figures(ib, OPTIONS, expected) == expected
            assert value(ib, SHORTS, "OptionMarketValue", "BASE") is None  # holds no option

            held = {p.contract.localSymbol: p for p in ib.positions(OPTIONS)}
            put = held["SPY   261218P00450000"]
            assert (put.contract.secType, put.contract.symbol, put.contract.right) == (
                "OPT",
                "SPY",
                "P",
            )
            assert put.contract.strike == 450.0
            assert put.contract.lastTradeDateOrContractMonth == "20261218"
            assert put.contract.multiplier == "100"
            assert (put.position, put.avgCost) == (-3.0, 600.0)  # cost per contract

            await ib.reqAccountUpdatesAsync(OPTIONS)
            rows = {item.contract.localSymbol: item for item in ib.portfolio(OPTIONS)}
            call = rows["SPY   261218C00550000"]
            assert (call.marketPrice, call.marketValue, call.averageCost) == (8.0, 1_600.0, 800.0)
            assert rows["SPY   261218P00450000"].marketValue == -1_800.0

            details = await ib.reqContractDetailsAsync(Option("SPY", "20261218", 450, "P", "SMART"))
            assert len(details) == 1
            contract = details[0].contract
            assert (contract.conId, contract.secType, contract.multiplier) == (
                700000450,
                "OPT",
                "100",
            )
            assert (details[0].underConId, details[0].underSymbol) == (756733, "SPY")
            assert (
                len(await ib.reqContractDetailsAsync(Option("SPY", "20261218", exchange="SMART")))
                == 2
            )

            single = ib.reqPnLSingle(OPTIONS, "", 700000550)
            await until(lambda: single.value == pytest.approx(1_600.0), 5, "the call's pnlSingle")
            gateway.set_prices({"SPY_C550": 3.0})
            await until(lambda: single.value == pytest.approx(600.0), 5, "2 x 3.00 x 100")
            await until(lambda: value(ib, OPTIONS, "NetLiquidation", "USD") == "98800.00", 5, "NLV")
            assert figure(ib, OPTIONS, "EquityWithLoanValue", "USD") == 100_000.0
            assert figure(ib, OPTIONS, "ExcessLiquidity", "USD") == 55_700.0
            assert figure(ib, OPTIONS, "GrossPositionValue", "USD") == 52_400.0
            assert figure(ib, OPTIONS, "OptionMarketValue", "BASE") == -1_200.0
            ib.disconnect()

    run(body())


def test_a_short_options_requirement_follows_its_underlying():
    """SPY to 480, the put to 9.00, the call to 2.00: ELV = 50,000 + 48,000 = 98,000;
    maint = 12,000 (SPY) + 2,700 + 20% x 144,000 = 31,500 -> 43,500; EL 54,500;
    NLV = 98,000 + 400 - 2,700 = 95,700. A scenario rate of 30% on the put instead:
    2,700 + 43,200 = 45,900 -> maint 57,900."""
    state = SimState(load_scenario("shorts_options"), clock=lambda: 1_800_000_000.0)
    state.set_prices({"SPY": 480.0, "SPY_P450": 9.0, "SPY_C550": 2.0})
    figures = state.figures(OPTIONS)
    assert figures["EquityWithLoanValue"] == pytest.approx(98_000.0)
    assert figures["MaintMarginReq"] == pytest.approx(43_500.0)
    assert figures["ExcessLiquidity"] == pytest.approx(54_500.0)
    assert figures["NetLiquidation"] == pytest.approx(95_700.0)
    state.set_rates(OPTIONS, {"SPY_P450": {"maint_rate": 0.30}})
    assert state.figures(OPTIONS)["MaintMarginReq"] == pytest.approx(57_900.0)


def test_a_short_only_book_on_ibs_default_schedule_through_ib_async(simulated_gateway):
    """DU6000001, no rates given: XYZ -200 @ 50 (15.00/share), MID -500 @ 10 (5.00/share),
    LOW -1,000 @ 4 (100%), PEN -1,000 @ 2 (2.50/share); cash 51,000.

    Market values negative (-10,000, -5,000, -4,000, -2,000); NLV = 51,000 - 21,000 = 30,000;
    GPV = 21,000 (absolute); maint = 3,000 + 2,500 + 4,000 + 2,500 = 12,000; EL 18,000.
    XYZ squeezed 20% to 60 (18.00/share): NLV 28,000, GPV 23,000, maint 12,600, EL 15,400.
    """

    async def body() -> None:
        async with simulated_gateway("shorts_options", pnl_interval=0) as gateway:
            ib = await connect(gateway.port)
            expected = {
                ("NetLiquidation", "USD"): 30_000.0,
                ("GrossPositionValue", "USD"): 21_000.0,
                ("MaintMarginReq", "USD"): 12_000.0,
                ("ExcessLiquidity", "USD"): 18_000.0,
                ("StockMarketValue", "BASE"): -21_000.0,
            }
            assert figures(ib, SHORTS, expected) == expected
            await ib.reqAccountUpdatesAsync(SHORTS)
            values = {item.contract.symbol: item.marketValue for item in ib.portfolio(SHORTS)}
            assert values == {"XYZ": -10_000.0, "MID": -5_000.0, "LOW": -4_000.0, "PEN": -2_000.0}
            gateway.move_prices({"XYZ": 0.2})
            await until(
                lambda: value(ib, SHORTS, "MaintMarginReq", "USD") == "12600.00", 5, "squeeze"
            )
            assert figure(ib, SHORTS, "NetLiquidation", "USD") == 28_000.0
            assert figure(ib, SHORTS, "GrossPositionValue", "USD") == 23_000.0
            assert figure(ib, SHORTS, "ExcessLiquidity", "USD") == 15_400.0
            ib.disconnect()

    run(body())


def test_a_short_with_a_given_rate_keeps_it():
    """A short given maint_rate 0.30 uses it whatever its price: -1,000 @ 4 -> 1,200 (the
    default schedule would say 4,000)."""
    scenario = {
        "instruments": {"LOW": {"price": 4.0}},
        "accounts": [
            {
                "id": "DU1",
                "cash": {"USD": 10_000.0},
                "positions": [{"symbol": "LOW", "quantity": -1000, "maint_rate": 0.30}],
            }
        ],
    }
    state = SimState(load_scenario(scenario), clock=lambda: 1_800_000_000.0)
    assert state.figures("DU1")["MaintMarginReq"] == pytest.approx(1_200.0)


def test_an_advisor_login_with_a_usd_and_a_gbp_account(simulated_gateway):
    """DU3100001 reports in USD, DU3100002 in GBP; each currency has its own ledger rows and the
    BASE rows are their sum at IB's ExchangeRate.

    DU3100002: cash GBP 10,000 and USD -30,000 at 0.79 -> TotalCashBalance BASE -13,700.00;
    NLV = -13,700 + 18,000 (ULVR) + 59,250 (VTI 75,000 USD) = 63,550.00 GBP; AccruedCash GBP
    -12.50 and USD -110.00 -> BASE -99.40 (the AccruedCash segment row, in GBP, says the same).
    DU3100001: cash USD -20,000 and GBP 1,000 at 1.27 -> BASE -18,730.00 USD; NLV 36,985.00.
    The dollar to 0.80: DU3100002 NLV = -14,000 + 18,000 + 60,000 = 64,000.00 GBP.
    """

    async def body() -> None:
        async with simulated_gateway("advisor_currencies") as gateway:
            ib = await connect(gateway.port)
            gbp, usd = "DU3100002", "DU3100001"
            assert figure(ib, gbp, "NetLiquidation", "GBP") == 63_550.0
            assert value(ib, gbp, "NetLiquidation", "USD") is None  # margin tags in the base
            assert figure(ib, gbp, "TotalCashBalance", "GBP") == 10_000.0
            assert figure(ib, gbp, "TotalCashBalance", "USD") == -30_000.0
            assert figure(ib, gbp, "CashBalance", "USD") == -30_000.0
            assert figure(ib, gbp, "TotalCashBalance", "BASE") == -13_700.0
            assert figure(ib, gbp, "ExchangeRate", "USD") == 0.79
            assert figure(ib, gbp, "ExchangeRate", "GBP") == 1.0
            assert figure(ib, gbp, "AccruedCash", "USD") == -110.0
            assert figure(ib, gbp, "AccruedCash", "BASE") == -99.4
            assert figure(ib, gbp, "AccruedCash", "GBP") == -99.4
            assert figure(ib, gbp, "StockMarketValue", "USD") == 75_000.0
            assert figure(ib, usd, "NetLiquidation", "USD") == 36_985.0
            assert figure(ib, usd, "TotalCashBalance", "BASE") == -18_730.0
            assert figure(ib, usd, "TotalCashBalance", "GBP") == 1_000.0
            assert figure(ib, usd, "ExchangeRate", "GBP") == 1.27
            for account in (gbp, usd):  # BASE = sum of the currencies at the exchange rates
                rates = {
                    v.currency: float(v.value)
                    for v in ib.accountValues(account)
                    if v.tag == "ExchangeRate" and v.currency != "BASE"
                }
                total = sum(
                    float(v.value) * rates[v.currency]
                    for v in ib.accountValues(account)
                    if v.tag == "TotalCashBalance" and v.currency in rates
                )
                assert figure(ib, account, "TotalCashBalance", "BASE") == pytest.approx(total)
            gateway.set_fx(None, {"USD": 0.80})
            await until(
                lambda: value(ib, gbp, "NetLiquidation", "GBP") == "64000.00", 5, "dollar firms"
            )
            assert figure(ib, usd, "NetLiquidation", "USD") == 36_985.0  # quotes GBP only
            ib.disconnect()

    run(body())


def test_a_eur_account_with_a_chf_debit_and_usd_stocks(simulated_gateway):
    """DU7100001 (EUR): SPY 60 @ 560 + MSFT 40 @ 420 = 50,400 USD at 0.92 = 46,368 EUR; cash
    EUR 8,000 and CHF -25,000 at 1.06 -> BASE -18,500; NLV 27,868.00; maint 11,592.00; EL
    16,276.00; AccruedCash CHF -45.00, EUR 3.00 -> BASE -44.70. reqAccountSummary with
    $LEDGER:ALL gives every currency's TotalCashBalance, the CHF debit among them. The franc
    to 1.10: NLV 26,868.00."""

    async def body() -> None:
        async with simulated_gateway("eur_chf_debit") as gateway:
            ib = await connect(gateway.port)
            account = "DU7100001"
            assert figure(ib, account, "NetLiquidation", "EUR") == 27_868.0
            assert figure(ib, account, "ExcessLiquidity", "EUR") == 16_276.0
            assert figure(ib, account, "TotalCashBalance", "CHF") == -25_000.0
            assert figure(ib, account, "TotalCashBalance", "USD") == 0.0
            assert figure(ib, account, "TotalCashBalance", "BASE") == -18_500.0
            assert figure(ib, account, "ExchangeRate", "CHF") == 1.06
            assert figure(ib, account, "AccruedCash", "CHF") == -45.0
            assert figure(ib, account, "AccruedCash", "BASE") == pytest.approx(-44.7)
            summary = await ib.accountSummaryAsync(account)
            ledger = {(v.tag, v.currency): v.value for v in summary}
            assert ledger[("TotalCashBalance", "CHF")] == "-25000.00"
            assert ledger[("AccruedCash", "CHF")] == "-45.00"
            assert ledger[("NetLiquidation", "EUR")] == "27868.00"
            gateway.set_fx(None, {"CHF": 1.10})
            await until(
                lambda: value(ib, account, "NetLiquidation", "EUR") == "26868.00", 5, "CHF up"
            )
            ib.disconnect()

    run(body())


def test_a_stock_beside_its_options_and_an_ambiguous_description(simulated_gateway):
    """With options on SPY, a stock request for SPY finds the ETF (and streams it); a market
    data request without a secType matches the stock and both options, and gets error 200 as
    IB answers an ambiguous description; contract details list every match instead."""

    def ambiguous_market_data(port: int) -> list[str]:
        client = raw_start(port, 7)
        contract = (0, "SPY", "", "", 0, "", "", "SMART", "", "USD", "", "")
        # reqMktData: id, version, reqId, contract, deltaNeutral, ticks, snapshot, regulatory, opts
        client.send_fields(1, 11, 42, *contract, 0, "", 0, 0, "")
        while (error := client.read_until("4"))[2] != "42":
            pass  # the farm notices come first, with reqId -1
        client.close()
        return error

    async def body() -> None:
        async with simulated_gateway("shorts_options") as gateway:
            ib = await connect(gateway.port)
            [spy] = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
            assert (spy.conId, spy.secType) == (756733, "STK")
            ticker = ib.reqMktData(spy)
            await until(lambda: ticker.last == 500.0, 5, "SPY ticks")
            details = await ib.reqContractDetailsAsync(Option("SPY", exchange="SMART"))
            assert {d.contract.conId for d in details} == {700000450, 700000550}
            ib.disconnect()
            error = await asyncio.to_thread(ambiguous_market_data, gateway.port)
            assert error[2:4] == ["42", "200"]

    run(body())
