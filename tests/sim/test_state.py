"""The simulated accounts' figures: recomputed from prices, cash and positions, and received
by ib_async as IB would send them (margin-rules.md sections 1, 2 and 5)."""

from __future__ import annotations

import time

import pytest
from gateway_support import connect, reg_t, run, value
from support import until

from monitor.sim.scenarios import load_scenario
from monitor.sim.server import SimulatedGateway
from monitor.sim.state import SimState

# -- figures computed by hand -----------------------------------------------------------------

DEFICIT = {
    "instruments": {
        "AAA": {"price": 200.0},
        "BBB": {"price": 100.0},
        "CCC": {"price": 50.0, "currency": "EUR"},
    },
    "accounts": [
        {
            "id": "DU1",
            "cash": {"USD": -20000.0, "EUR": 5000.0},
            "fx": {"EUR": 1.10},
            "positions": [
                {"symbol": "AAA", "quantity": 100},
                {"symbol": "BBB", "quantity": -50, "maint_rate": 0.30},
                {"symbol": "CCC", "quantity": 100},
            ],
        }
    ],
}


def test_a_long_short_two_currency_account_in_deficit():
    """Long AAA 100 @ 200, short BBB 50 @ 100 (maintenance 30%), long CCC 100 @ EUR 50; cash
    USD -20,000 and EUR 5,000 at 1.10 USD per EUR; other rates 25%, Reg T 50%.

    cash = -20,000 + 5,000 x 1.10 = -14,500; stock = 20,000 - 5,000 + 5,500 = 20,500
    NLV = 6,000; GPV = 20,000 + 5,000 + 5,500 = 30,500
    maint = 20,000 x .25 + 5,000 x .30 + 5,500 x .25 = 5,000 + 1,500 + 1,375 = 7,875
    EL = 6,000 - 7,875 = -1,875 (already in deficit); cushion = -1,875 / 6,000 = -0.3125
    init = 30,500 x .25 = 7,625, AF = -1,625; leverage = 30,500 / 6,000
    SMA: Reg T excess 6,000 - 30,500 x .5 = -9,250, floored at 10% of equity: 600.

    Then AAA -10% (180) and EUR to 1.20: cash = -20,000 + 6,000 = -14,000; stock = 18,000
    - 5,000 + 6,000 = 19,000; NLV 5,000; maint = 4,500 + 1,500 + 1,500 = 7,500; EL = -2,500,
    cushion -0.5; daily PnL (180 - 200) x 100 = -2,000; the SMA does not fall with a move.
    """
    state = SimState(load_scenario(DEFICIT), clock=lambda: 1_800_000_000.0)
    figures = state.figures("DU1")
    assert figures["NetLiquidation"] == pytest.approx(6000.0)
    assert figures["GrossPositionValue"] == pytest.approx(30500.0)
    assert figures["MaintMarginReq"] == pytest.approx(7875.0)
    assert figures["ExcessLiquidity"] == pytest.approx(-1875.0)
    assert figures["Cushion"] == pytest.approx(-0.3125)
    assert figures["InitMarginReq"] == pytest.approx(7625.0)
    assert figures["AvailableFunds"] == pytest.approx(-1625.0)
    assert figures["Leverage-S"] == pytest.approx(30500.0 / 6000.0)
    assert figures["SMA"] == pytest.approx(600.0)
    rows = {(tag, ccy): text for tag, text, ccy in state.account_rows("DU1")}
    assert rows[("TotalCashBalance", "BASE")] == "-14500.00"
    assert rows[("StockMarketValue", "BASE")] == "20500.00"
    assert rows[("TotalCashBalance", "EUR")] == "5000.00"
    assert rows[("NetLiquidationByCurrency", "EUR")] == "10000.00"
    assert rows[("ExchangeRate", "EUR")] == "1.1000000"
    assert rows[("Cushion", "")] == "-0.312500"

    assert state.move_prices({"AAA": -0.10}) == ["AAA"]
    state.set_fx("DU1", {"EUR": 1.20})
    figures = state.figures("DU1")
    assert figures["NetLiquidation"] == pytest.approx(5000.0)
    assert figures["GrossPositionValue"] == pytest.approx(29000.0)
    assert figures["MaintMarginReq"] == pytest.approx(7500.0)
    assert figures["ExcessLiquidity"] == pytest.approx(-2500.0)
    assert figures["Cushion"] == pytest.approx(-0.5)
    assert figures["DailyPnL"] == pytest.approx(-2000.0)
    assert figures["SMA"] == pytest.approx(600.0)


# -- figures as clients receive them ----------------------------------------------------------


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
                    5,
                    f"GPV {market_value}",
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
                await until(
                    lambda cushion=cushion: value(ib, account, "Cushion", "") == cushion,
                    5,
                    "the recomputed cushion",
                )
                received = float(value(ib, account, "ExcessLiquidity", "USD"))
                nlv = float(value(ib, account, "NetLiquidation", "USD"))
                maint = float(value(ib, account, "MaintMarginReq", "USD"))
                assert received == pytest.approx(figures["ExcessLiquidity"], abs=0.01)
                assert received == pytest.approx(nlv - maint, abs=0.02)
                assert float(cushion) == pytest.approx(received / nlv, abs=1e-5)
            assert float(value(ib, account, "Cushion", "")) < 0.10
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
            await until(
                lambda: value(ib, account, "SMA", "USD") == "-7500.00", 5, "the SMA override"
            )
            assert value(ib, account, "SMA-S", "USD") == "-7500.00"
            assert value(ib, account, "Cushion", "") == ""
            assert value(ib, account, "ExcessLiquidity", "USD") == "1.7976931348623157E308"
            figures = gateway.figures(account)
            assert "Cushion" not in figures and "ExcessLiquidity" not in figures
            assert figures["SMA"] == -7500.0
            gateway.clear_values(account)
            await until(
                lambda: value(ib, account, "SMA", "USD") == "-5000.00",
                5,
                "the SMA back to its value",
            )
            assert value(ib, account, "ExcessLiquidity", "USD") == "47500.00"
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
                5,
                "summary push after an FX move",
            )
            ib.disconnect()

    run(body())


# -- the built-in scenarios' stories ----------------------------------------------------------


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
