"""Books beyond long-only stock, end to end: a deficit, a short-only book, options, a hedged
book, through the real ib_async against the simulated gateway, ``check --json`` and the daemon
with real Apprise posting to a local receiver. Every figure is worked by hand in the docstrings.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from support import make_settings, until

from monitor.app import build_service, run_daemon
from monitor.cli import main
from monitor.sim.receiver import Receiver

DEFICITS = """
    # DU7100001: cash -80,000, XYZ 1,000 @ 70 -> MV 70,000, NLV -10,000 (ELV too), maint 25% =
    #   17,500, EL -27,500. IB's Cushion is forced to 2.75 (EL / NLV of two negatives).
    # DU7100002: cash -20,000, XYZ 1,000 @ 70 -> NLV 50,000, maint 17,500, EL 32,500, but
    #   NetLiquidation is sent as IB's unset double 1.797E308 and EL overridden to -1,000.
    name = "deficits"
    [gateway]
    account_push_interval = 0
    [instruments.XYZ]
    price = 70.0
    [[accounts]]
    id = "DU7100001"
    cash = { USD = -80000.0 }
    values = { Cushion = "2.75" }
    positions = [{ symbol = "XYZ", quantity = 1000 }]
    [[accounts]]
    id = "DU7100002"
    cash = { USD = -20000.0 }
    values = { NetLiquidation = "1.7976931348623157E308", ExcessLiquidity = "-1000.00" }
    positions = [{ symbol = "XYZ", quantity = 1000 }]
"""

HEDGED = """
    # DU7200001: AAA 1,300 @ 100 long at 25% (32,500), ZZZ 750 @ 100 short at 30% (22,500),
    #   cash 45,000: NLV = ELV = 45,000 + 130,000 - 75,000 = 100,000; maint 55,000; EL 45,000.
    #   k = 130,000 - 75,000 - 55,000 = 0: no uniform move empties EL. Net (130,000 - 75,000) /
    #   100,000 = 0.55x; gross 205,000 / 100,000 = 2.05x, above the 2.0x cap.
    name = "hedged"
    [gateway]
    account_push_interval = 0
    [instruments.AAA]
    price = 100.0
    [instruments.ZZZ]
    price = 100.0
    maint_rate = 0.30
    init_rate = 0.30
    [[accounts]]
    id = "DU7200001"
    cash = { USD = 45000.0 }
    positions = [{ symbol = "AAA", quantity = 1300 }, { symbol = "ZZZ", quantity = -750 }]
"""

CRASH = """
    # DU7300001: cash -20,000, XYZ 1,000 @ 100: NLV 80,000, maint 25,000, EL 55,000 (cushion
    #   68.75%, net 1.25x, loan 25%, a fall of 55,000 / 75,000 = 73% to liquidation; only the
    #   one holding's concentration warns).
    #   A gap down to 15: MV 15,000, NLV -5,000, maint 3,750, EL -8,750.
    name = "crash"
    [gateway]
    account_push_interval = 0
    [instruments.XYZ]
    price = 100.0
    [[accounts]]
    id = "DU7300001"
    cash = { USD = -20000.0 }
    positions = [{ symbol = "XYZ", quantity = 1000 }]
"""


def by_rule(entry: dict) -> dict[str, dict]:
    """An account entry's findings by rule id."""
    return {finding["rule"]: finding for finding in entry["findings"]}


def check_json(simulated_gateway, scenario, tmp_path, capsys) -> tuple[int, dict]:
    """``margin-monitor check --json`` against the scenario: exit code and parsed output."""

    async def run() -> int:
        async with simulated_gateway(scenario) as gateway:
            config = tmp_path / "config.toml"
            config.write_text(
                f'[ib]\nport = {gateway.port}\ntimeout = 5\n[monitor]\nstate_dir = "{tmp_path}"\n'
            )
            config.chmod(0o600)
            return await asyncio.to_thread(main, ["check", "--json", "--config", str(config)])

    code = asyncio.run(run())
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_check_json_on_accounts_in_deficit(simulated_gateway, scenario_file, tmp_path, capsys):
    """A deficit is critical whatever NLV is, and no meaningless ratio is shown.

    DU7100001 (NLV -10,000, EL -27,500, IB's Cushion 2.75): status critical; cushion, gross
    and net leverage null with the reason; the cushion finding critical "LIQUIDATING" without
    a value, its deposit (0.22 x -10,000 + 27,500) / 0.78 = 32,435.90 (32,435.897... rounded
    up) and IBKR's line (12% x 17,500 + 27,500 = 29,600) below it; min_equity fails on the
    negative NLV (a deposit of 2,100 + 10,000 = 12,100). DU7100002 (NLV unset, EL -1,000):
    critical too, its cushion finding saying NLV is unknown. Exit code 2."""
    code, report = check_json(simulated_gateway, scenario_file(DEFICITS), tmp_path, capsys)
    assert code == 2 and report["status"] == "critical"
    entries = {entry["account"]: entry for entry in report["accounts"]}

    negative = entries["DU7100001"]
    assert negative["status"] == "critical"
    assert negative["net_liquidation"] == -10_000.0 and negative["excess_liquidity"] == -27_500.0
    assert negative["cushion"] is None and negative["leverage"] is None
    assert negative["net_leverage"] is None
    assert "NetLiquidation is USD -10,000.00" in negative["null_reasons"]["cushion"]
    assert set(negative["null_reasons"]) == {"cushion", "leverage", "net_leverage"}
    findings = by_rule(negative)
    cushion = findings["cushion"]
    assert cushion["severity"] == "critical" and cushion["value"] is None
    assert cushion["message"].startswith("LIQUIDATING: ExcessLiquidity is USD -27,500.00")
    assert cushion["action"].startswith("Deposit about USD 32,435.90 to restore a 22% cushion")
    assert cushion["remedies"] == [
        {
            "actions": [
                {
                    "kind": "deposit",
                    "amount": 32_435.9,
                    "currency": "USD",
                    "symbols": [],
                    "rate": None,
                    "quantity": None,
                }
            ]
        }
    ]
    assert findings["min_equity"]["severity"] == "warning"
    assert "Deposit about USD 12,100.00" in findings["min_equity"]["action"]
    assert findings["leverage"]["severity"] == "critical"  # unbounded: no equity
    assert findings["leverage"]["value"] is None

    unset = entries["DU7100002"]
    assert unset["status"] == "critical" and unset["net_liquidation"] is None
    assert unset["null_reasons"]["cushion"] == "NetLiquidation was not reported"
    cushion = by_rule(unset)["cushion"]
    assert cushion["severity"] == "critical" and "NetLiquidation is unknown" in cushion["message"]
    assert by_rule(unset)["leverage"]["severity"] == "unknown"  # says why, hides nothing
    assert "NetLiquidation" in by_rule(unset)["leverage"]["message"]


def test_check_json_on_shorts_and_options(simulated_gateway, tmp_path, capsys):
    """The built-in ``shorts_options`` scenario (figures in its header).

    DU6000001, short-only: shorts 21,000, maintenance 12,000, EL 18,000, NLV 30,000. k = 0 -
    21,000 - 12,000 = -33,000: a RISE of 18,000 / 33,000 = 54.5% empties EL; the table shows
    rises: +10%: (18,000 - 3,300) / (30,000 - 2,100) = 52.7%. Net leverage -21,000 / 30,000 =
    -0.7 (net short), gross 0.7x.
    DU6000002: SPY 50,000 long (in ELV), long calls 1,600 and short puts 1,800 (options, not in
    ELV): k = 50,000 - 0 - 44,300 = 5,700, a fall of 55,700 / 5,700 = 977% would be needed:
    none; the message says options are held. Net (51,600 - 1,800) / 99,800 = 0.499.
    Concentration warns on both (a short holding is bought back, never "sold")."""
    code, report = check_json(simulated_gateway, "shorts_options", tmp_path, capsys)
    entries = {entry["account"]: entry for entry in report["accounts"]}

    shorts = entries["DU6000001"]
    assert shorts["net_leverage"] == pytest.approx(-0.7)
    assert shorts["leverage"] == pytest.approx(0.7)
    distance = by_rule(shorts)["distance_to_liquidation"]
    assert distance["severity"] == "ok"
    assert distance["value"] == pytest.approx(18_000 / 33_000)
    assert distance["details"]["direction"] == "rise"
    assert distance["message"].startswith("A uniform rise of 54.5% would bring ExcessLiquidity")
    moves = distance["details"]["cushion_after_moves"]
    assert list(moves) == ["+10%", "+12%", "+20%"]
    assert moves["+10%"] == pytest.approx(14_700 / 27_900)
    assert by_rule(shorts)["leverage"]["message"].startswith("Net exposure 0.7x short")

    options = entries["DU6000002"]
    assert options["net_leverage"] == pytest.approx(49_800 / 99_800)
    distance = by_rule(options)["distance_to_liquidation"]
    assert distance["value"] is None and distance["severity"] == "ok"
    assert "it would take 977.2%, more than 100%" in distance["message"]
    assert "options held" in distance["message"]
    # The only alerts: XYZ short is 10,000 / 30,000 = 33.3% of NLV, bought back to 19%:
    # 10,000 - 5,700 = 4,300; SPY is 50,000 / 99,800 = 50.1%, sold to 49%: 1,098.
    assert by_rule(shorts)["concentration"]["action"].startswith(
        "Buy back about USD 4,300.00 of XYZ (to 19% of NLV)"
    )
    assert code == 1 and report["status"] == "warning"


def test_check_json_on_a_hedged_book(simulated_gateway, scenario_file, tmp_path, capsys):
    """A hedged book (figures in HEDGED): no uniform move liquidates it, falls and rises both
    in the table; net 0.55x sits inside the envelope while gross 2.05x breaks its cap: sell or
    buy back 205,000 - 1.95 x 100,000 = 10,000 of positions, or deposit 205,000 / 1.95 -
    100,000 = 5,128.21."""
    code, report = check_json(simulated_gateway, scenario_file(HEDGED), tmp_path, capsys)
    (entry,) = report["accounts"]
    findings = by_rule(entry)
    distance = findings["distance_to_liquidation"]
    assert distance["value"] is None and distance["severity"] == "ok"
    assert distance["message"].startswith("The book is hedged")
    assert set(distance["details"]["cushion_after_moves"]) == {
        "-10%", "-12%", "-20%", "+10%", "+12%", "+20%"
    }  # fmt: skip
    assert findings["leverage"]["severity"] == "ok"
    assert findings["leverage"]["value"] == pytest.approx(0.55)
    gross = findings["gross_leverage"]
    assert gross["severity"] == "critical" and gross["value"] == pytest.approx(2.05)
    assert gross["action"] == (
        "Sell or buy back about USD 10,000.00 of positions or deposit about USD 5,128.21 to "
        "bring gross leverage to 1.95x, where the alert clears"
    )
    assert code == 2


@pytest.mark.slow
def test_the_daemon_alerts_when_an_account_falls_straight_into_a_deficit(
    simulated_gateway, scenario_file, tmp_path
):
    """A healthy cushion, then a gap down to NLV -5,000 and EL -8,750 (figures in CRASH) in one
    push: the daemon raises the critical cushion alert at once (an unknown finding would never
    fire), and the account's status is critical."""

    async def scenario() -> tuple[list[str], str, str]:
        with Receiver() as receiver:
            async with simulated_gateway(scenario_file(CRASH)) as gateway:
                settings = make_settings(tmp_path, gateway.port, [receiver.url])
                service = build_service(settings)
                stop = asyncio.Event()
                daemon = asyncio.create_task(run_daemon(settings, stop, service))
                await until(lambda: "DU7300001" in service.views, 10, "a first evaluation")
                await service.settle(timeout=5)
                view = service.views["DU7300001"]
                healthy = next(f for f in view.findings if f.rule == "cushion").severity.value
                gateway.set_prices({"XYZ": 15.0})
                messages = await receiver.wait_until_async(
                    lambda got: any("DU7300001 cushion" in m.title for m in got), timeout=10
                )
                status = service.views["DU7300001"].status.value
                stop.set()
                await asyncio.wait_for(daemon, 15)
                return [m.title for m in messages], healthy, status

    titles, healthy, status = asyncio.run(scenario())
    assert healthy == "ok"
    assert "[CRITICAL] DU7300001 cushion" in titles
    assert status == "critical"
