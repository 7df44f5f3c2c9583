"""Daily bars for a market benchmark (issue 10.8): reqHistoricalData answered in the layout
ib_async 2.1 decodes at server version 176, the benchmark streaming though no account holds
it, and the errors a real gateway sends for what it cannot serve."""

from __future__ import annotations

from datetime import date

import pytest
from gateway_support import connect, run
from ib_async import Stock
from ib_async.wrapper import RequestError
from support import until

from monitor.sim.scenarios import ScenarioError, load_scenario

TUESDAY = 1_795_513_600.0  # 2026-11-24 04:46 New York: a weekday session
"""A fixed clock, so the bars' dates are known."""


async def bars_of(ib, symbol: str, duration: str = "1 Y", **options):
    """reqHistoricalData of daily bars, the way a monitor would ask for a benchmark."""
    options.setdefault("whatToShow", "TRADES")
    return await ib.reqHistoricalDataAsync(
        Stock(symbol, "SMART", "USD"),
        endDateTime=options.pop("endDateTime", ""),
        durationStr=duration,
        barSizeSetting=options.pop("barSizeSetting", "1 day"),
        useRTH=True,
        timeout=5,
        **options,
    )


def test_a_years_daily_bars_show_the_prior_peak_and_the_drawdown(simulated_gateway):
    """market_drawdown: 260 closes rising from 480 to the peak 600.00 thirty sessions before
    the current one, then falling towards today's 522.00; the current session's bar closes at
    the current price. "1 Y" of daily bars (365 calendar days back from 2026-11-24) is every
    weekday from 2025-11-25: 261 bars; max close 600.00 on 2026-10-13 (30 weekdays earlier);
    drawdown 1 - 522 / 600 = 13.0%. ADJUSTED_LAST gives the same bars; "30 D" (from Monday
    2026-10-26) the last 22."""

    async def body() -> None:
        async with simulated_gateway("market_drawdown", clock=lambda: TUESDAY) as gateway:
            ib = await connect(gateway.port)
            bars = await bars_of(ib, "SPY")
            assert len(bars) == 261
            assert (bars[0].date, bars[-1].date) == (date(2025, 11, 25), date(2026, 11, 24))
            peak = max(bars, key=lambda bar: bar.close)
            assert (peak.close, peak.date) == (600.0, date(2026, 10, 13))
            assert bars[-1].close == 522.0 and bars[0].close == 480.0
            assert 1 - bars[-1].close / peak.close == pytest.approx(0.13)
            assert all(bar.low <= min(bar.open, bar.close) for bar in bars)
            assert all(bar.volume == 1_000_000 for bar in bars)
            adjusted = await bars_of(ib, "SPY", whatToShow="ADJUSTED_LAST")
            assert [bar.close for bar in adjusted] == [bar.close for bar in bars]
            month = await bars_of(ib, "SPY", "30 D")
            assert len(month) == 22 and month[0].date == date(2026, 10, 26)
            ib.disconnect()

    run(body())


def test_the_benchmark_streams_though_no_account_holds_it(simulated_gateway):
    """reqMktData on SPY (held by no account) ticks at 522, then at 511.56 after a -2% move;
    a keepUpToDate bar request sees the current bar follow the price."""

    async def body() -> None:
        async with simulated_gateway("market_drawdown", clock=lambda: TUESDAY) as gateway:
            ib = await connect(gateway.port)
            assert all(p.contract.symbol != "SPY" for p in ib.positions())
            [spy] = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
            ticker = ib.reqMktData(spy)
            await until(lambda: ticker.last == 522.0, 5, "SPY's first tick")
            live = await bars_of(ib, "SPY", "5 D", keepUpToDate=True)
            assert live[-1].close == 522.0
            gateway.move_prices({"SPY": -0.02})
            await until(lambda: ticker.last == 511.56, 5, "SPY's tick after the move")
            await until(lambda: live[-1].close == 511.56, 5, "the current bar follows")
            assert live[-1].date == date(2026, 11, 24) and live[-1].open == live[-2].close
            ib.disconnect()

    run(body())


def test_what_a_real_gateway_refuses(simulated_gateway):
    """An unknown contract is error 200; a known one without history, an intraday bar size or
    a malformed duration is error 162 (the historical data farm's message)."""

    async def body() -> None:
        async with simulated_gateway("market_drawdown", clock=lambda: TUESDAY) as gateway:
            ib = await connect(gateway.port)
            for symbol, options, code, text in [
                ("NOPE", {}, 200, "No security definition"),
                ("VTI", {}, 162, "HMDS query returned no data: VTI@SMART Trades"),
                ("SPY", {"barSizeSetting": "1 hour"}, 162, "daily bars"),
                ("SPY", {"duration": "1 X"}, 162, "Invalid duration string"),
            ]:
                duration = options.pop("duration", "1 Y")
                with pytest.raises(RequestError) as raised:
                    await bars_of(ib, symbol, duration, **options)
                assert raised.value.code == code and text in raised.value.message
            assert ib.isConnected()
            ib.disconnect()

    run(body())


def test_a_history_of_given_closes_and_its_checks():
    """closes = [...] are served as given; a generated path's peak must be its highest point;
    closes and peak together are refused with one line."""
    scenario = load_scenario(
        {
            "instruments": {"SPY": {"price": 410.0, "history": {"closes": [400.0, 450.0, 420.0]}}},
            "accounts": [{"id": "DU1"}],
        }
    )
    spy = scenario.resolved_instruments["SPY"]
    assert spy.history == (400.0, 450.0, 420.0) and spy.close == 420.0  # daily PnL base
    with pytest.raises(ScenarioError, match=r"history.peak: the peak \(500\) must be at least"):
        load_scenario(
            {
                "instruments": {"SPY": {"price": 510.0, "history": {"peak": 500.0}}},
                "accounts": [{"id": "DU1"}],
            }
        )
    with pytest.raises(ScenarioError, match="give either closes"):
        load_scenario(
            {
                "instruments": {
                    "SPY": {"price": 410.0, "history": {"closes": [400.0], "peak": 500.0}}
                },
                "accounts": [{"id": "DU1"}],
            }
        )
