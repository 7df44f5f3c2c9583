"""End to end: the real ib_async talks to the simulated gateway over loopback, real Apprise posts
to a local receiver, real SQLite holds the state."""

from __future__ import annotations

import asyncio
import json

import pytest
from support import make_settings

from monitor.app import build_service, run_daemon
from monitor.cli import main, run_check
from monitor.settings import load_settings
from monitor.sim.receiver import ReceivedMessage, Receiver
from rules import RULES


def cushion_messages(messages: list[ReceivedMessage], account: str) -> list[str]:
    """Titles of the cushion notifications for one account, in arrival order."""
    return [m.title for m in messages if m.title.split()[1:3] == [account, "cushion"]]


@pytest.mark.slow
def test_selloff_notifies_warning_then_critical_then_recovery(simulated_gateway, tmp_path):
    """The scripted sell-off: exactly one warning, one escalation to critical, one recovery."""

    async def scenario() -> tuple[list[str], list[ReceivedMessage], int]:
        with Receiver() as receiver:
            async with simulated_gateway("selloff", speed=10) as gateway:
                settings = make_settings(tmp_path, gateway.port, [receiver.url])
                stop = asyncio.Event()
                daemon = asyncio.create_task(run_daemon(settings, stop))
                await gateway.wait_for_clients(1, timeout=10)
                await gateway.run_timeline()
                messages = await receiver.wait_until_async(
                    lambda got: any("RESOLVED" in t for t in cushion_messages(got, "DU1000001")),
                    timeout=15,
                )
                stop.set()
                await asyncio.wait_for(daemon, 15)
                return (
                    cushion_messages(messages, "DU1000001"),
                    messages,
                    len(gateway.orders_received),
                )

    titles, messages, orders = asyncio.run(scenario())
    assert titles == [
        "[WARNING] DU1000001 cushion",
        "[CRITICAL] DU1000001 cushion (escalated from warning)",
        "[RESOLVED] DU1000001 cushion (was critical)",
    ]
    assert not [m for m in messages if "DU1000002" in m.title], "the healthy account stays quiet"
    assert orders == 0
    critical = next(m for m in messages if m.title.startswith("[CRITICAL] DU1000001 cushion"))
    assert "Sell about USD" in critical.message
    assert critical.notification_id


def test_healthy_accounts_send_nothing(simulated_gateway, tmp_path):
    """While every account is healthy, `run` posts nothing (the evaluation still happens)."""

    async def scenario() -> tuple[int, int]:
        with Receiver() as receiver:
            async with simulated_gateway("healthy") as gateway:
                settings = make_settings(tmp_path, gateway.port, [receiver.url])
                service = build_service(settings)
                stop = asyncio.Event()
                daemon = asyncio.create_task(run_daemon(settings, stop, service))
                await gateway.wait_until(
                    lambda: set(service.views) == {"DU2000001", "DU2000002"}, timeout=10
                )
                await service.settle(timeout=5)
                stop.set()
                await asyncio.wait_for(daemon, 15)
                return len(receiver.messages), service.evaluations

    received, evaluations = asyncio.run(scenario())
    assert evaluations >= 2
    assert received == 0


def test_check_json_reports_every_account_and_rule(simulated_gateway, tmp_path):
    """`check --json`: each managed account's figures and one finding per rule, ok included."""

    async def scenario() -> dict:
        async with simulated_gateway("healthy") as gateway:
            settings = make_settings(tmp_path, gateway.port, [])
            return await run_check(settings)

    report = asyncio.run(scenario())
    assert report["status"] == "ok"
    accounts = {entry["account"]: entry for entry in report["accounts"]}
    assert set(accounts) == {"DU2000001", "DU2000002"}
    for entry in accounts.values():
        assert entry["base_currency"] == "USD"
        assert entry["net_liquidation"] > 0
        assert 0 < entry["cushion"] <= 1
        for key in ("excess_liquidity", "gross_position_value", "maint_margin_req"):
            assert isinstance(entry[key], float)
        assert [f["rule"] for f in entry["findings"]] == list(RULES)
        assert all(f["severity"] == "ok" for f in entry["findings"])


def test_check_exit_codes_follow_nagios(simulated_gateway, tmp_path, capsys):
    """Exit 0 healthy, 2 when a cushion is critical, 3 when the gateway cannot be reached."""

    async def serve_and_check(scenario: str, moves: dict | None) -> int:
        async with simulated_gateway(scenario) as gateway:
            if moves:
                gateway.move_prices(moves)
            settings_path = tmp_path / f"{scenario}.toml"
            settings_path.write_text(
                f'[ib]\nport = {gateway.port}\ntimeout = 5\n[monitor]\nstate_dir = "{tmp_path}"\n'
            )
            return await asyncio.to_thread(main, ["check", "--config", str(settings_path)])

    assert asyncio.run(serve_and_check("healthy", None)) == 0
    assert asyncio.run(serve_and_check("selloff", {"all": -0.32})) == 2
    out = capsys.readouterr().out
    assert out.startswith("MARGIN OK - ") and "\nMARGIN CRITICAL - " in out and "cushion" in out

    closed = tmp_path / "closed.toml"
    closed.write_text(f'[ib]\nport = 9\ntimeout = 2\n[monitor]\nstate_dir = "{tmp_path}"\n')
    assert main(["check", "--json", "--config", str(closed)]) == 3
    unknown = json.loads(capsys.readouterr().out)
    assert unknown["status"] == "unknown"
    assert "cannot reach" in unknown["error"]


@pytest.mark.parametrize(
    ("scenario", "rule", "severity"),
    [
        ("leveraged_etf", "leveraged_etf", {"warning", "critical"}),
        ("concentrated", "concentration", {"warning", "critical"}),
        ("concentrated", "shares_outstanding", {"warning", "critical"}),
        ("three_fund", "allocation_drift", {"warning", "critical"}),
        ("sma_lookahead", "sma", {"warning", "critical"}),
        ("sma_lookahead", "look_ahead", {"critical"}),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_rule_coverage_scenarios_trip_their_rule(
    simulated_gateway, tmp_path, scenario, rule, severity
):
    """Each built-in rule scenario trips its rule through the real connector and `check`."""

    async def run() -> dict:
        async with simulated_gateway(scenario) as gateway:
            settings_path = tmp_path / "config.toml"
            settings_path.write_text(
                f'[ib]\nport = {gateway.port}\ntimeout = 5\n[monitor]\nstate_dir = "{tmp_path}"\n'
                "[rules.allocation_drift]\ntargets = { SCHD = 0.4, VOO = 0.4, BND = 0.2 }\n"
            )
            return await run_check(load_settings(settings_path))

    report = asyncio.run(run())
    findings = [f for entry in report["accounts"] for f in entry["findings"] if f["rule"] == rule]
    assert any(f["severity"] in severity for f in findings), findings
    tripped = next(f for f in findings if f["severity"] in severity)
    assert tripped["action"], "a breach always says what to do"


def test_eur_base_account_reports_in_euros(simulated_gateway, tmp_path):
    """A EUR base account's figures and actions are in EUR, positions converted from USD."""

    async def run() -> dict:
        async with simulated_gateway("eur_base") as gateway:
            return await run_check(make_settings(tmp_path, gateway.port, []))

    report = asyncio.run(run())
    entry = report["accounts"][0]
    assert entry["base_currency"] == "EUR"
    actions = [f["action"] for f in entry["findings"] if f["action"]]
    assert all("USD " not in action for action in actions)


@pytest.mark.slow
def test_accelerated_trading_day_then_summary_for_that_date(tmp_path, capsys):
    """A whole simulated session (accelerated), then `summary --date D` prints the day's
    figures and `--send` delivers them with the charts to a local receiver."""
    from monitor.demo import run_demo, session_open

    state = tmp_path / "state"
    with Receiver() as receiver:
        config = tmp_path / "config.toml"
        config.write_text(
            f'[notify]\nurls = ["{receiver.url}"]\n[monitor]\nstate_dir = "{state}"\n'
            "[rules.financing_cost]\nbenchmark_rate = 0.0433\n"
        )
        config.chmod(0o600)
        settings = load_settings(config)
        assert asyncio.run(run_demo(settings, "trading_day", 3000.0, state_dir=state)) == 0
        day = session_open().date().isoformat()
        capsys.readouterr()
        assert main(["summary", "--config", str(config), "--date", day]) == 0
        text = capsys.readouterr().out
        for expected in (
            "DU8000001",
            "NLV: open USD 102,840.00",
            "Cushion: min",
            "Leverage:",
            "Margin loan USD 57,200.00",
            "Distance to liquidation",
            "-20%",
            "cushion fired",
            "cushion escalated",
            "cushion resolved",
            "disconnected",
        ):
            assert expected in text, expected
        before = len(receiver.messages)
        assert main(["summary", "--config", str(config), "--date", day, "--send"]) == 0
        messages = receiver.wait_for(before + 1, timeout=10)
    sent = messages[-1]
    assert sent.type == "info" and day in sent.title
    assert {a["filename"] for a in sent.attachments} >= {f"summary-DU8000001-{day}.png"}
