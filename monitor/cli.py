"""The ``margin-monitor`` command line.

Every command takes ``--config PATH`` (or ``$MARGIN_MONITOR_CONFIG``). A configuration problem
prints one message naming the key and exits non-zero without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
from collections.abc import Sequence
from typing import Any

import structlog

from monitor.gateway import GatewayConnector, GatewayError
from monitor.logs import configure_logging, redactor
from monitor.settings import ConfigError, Settings, insecure_permissions_warning, load_settings
from monitor.sim.scenarios import ScenarioError, load_scenario, scenario_json_schema
from monitor.sim.server import DEFAULT_SCENARIO, serve
from rules.model import AccountSnapshot, Finding, Severity, worst

log = structlog.get_logger("monitor.cli")

# Snapshot figures in each account of ``check --json`` (None when IB sent no values).
REPORTED_FIGURES = (
    "base_currency",
    "net_liquidation",
    "excess_liquidity",
    "cushion",
    "gross_position_value",
    "maint_margin_req",
    "init_margin_req",
    "equity_with_loan",
    "available_funds",
    "sma",
    "margin_loan",
    "leverage",
)
EXIT_CODES = {Severity.OK: 0, Severity.WARNING: 1, Severity.CRITICAL: 2, Severity.UNKNOWN: 3}
FIGURES = (
    ("net_liquidation", "Net liquidation"),
    ("equity_with_loan", "Equity with loan"),
    ("gross_position_value", "Gross position value"),
    ("maint_margin_req", "Maintenance margin"),
    ("init_margin_req", "Initial margin"),
    ("excess_liquidity", "Excess liquidity"),
    ("available_funds", "Available funds"),
    ("sma", "SMA"),
    ("look_ahead_excess_liquidity", "Look-ahead excess liq."),
    ("cash_balance", "Cash balance"),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except ConfigError as error:
        print(f"margin-monitor: {redactor.clean(str(error))}", file=sys.stderr)
        return 3 if args.command == "check" else 2
    except ScenarioError as error:  # demo and simulate-gateway: a bad --scenario
        print(f"margin-monitor: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


def build_parser() -> argparse.ArgumentParser:
    """All sub-commands with their options."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", help="TOML configuration file")
    parser = argparse.ArgumentParser(
        prog="margin-monitor",
        description="Read-only margin watchdog for Interactive Brokers accounts.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", parents=[common], help="run the monitoring daemon")
    run.set_defaults(handler=cmd_run)

    check = commands.add_parser(
        "check",
        parents=[common],
        help="connect, evaluate every account once, print, exit 0/1/2/3 (Nagios convention)",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(handler=cmd_check)

    demo = commands.add_parser(
        "demo", parents=[common], help="run the monitor against the built-in simulated gateway"
    )
    demo.add_argument("--scenario", default="selloff", help="built-in name or TOML file")
    demo.add_argument(
        "--speed", type=positive_number, default=None, help="scenario time per second"
    )
    demo.set_defaults(handler=cmd_demo)

    sim = commands.add_parser(
        "simulate-gateway", parents=[common], help="serve a simulated IB Gateway on a port"
    )
    sim.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sim.add_argument("--port", type=int, default=7497)
    sim.add_argument("--scenario", default=None, help="built-in name or TOML file")
    sim.add_argument(
        "--speed",
        type=positive_number,
        default=None,
        help="scenario seconds per second (default: its own)",
    )
    sim.add_argument(
        "--cadence",
        type=positive_number,
        default=None,
        help="push account values only every N seconds (IB's real cadence is 180)",
    )
    sim.add_argument(
        "--price-rate",
        type=positive_number,
        default=None,
        metavar="N",
        help="random-walk price updates per second (default: the scenario's, usually 0); "
        "with --scenario generated:ACCOUNTSxHOLDINGSxCONTRACTS for an advisor book",
    )
    sim.add_argument(
        "--schema", action="store_true", help="print the JSON Schema of a scenario file and exit"
    )
    sim.set_defaults(handler=cmd_simulate)

    test = commands.add_parser(
        "notify-test", parents=[common], help="send a test notification through the routing"
    )
    test.add_argument("--severity", choices=["info", "warning", "critical"], default="info")
    test.set_defaults(handler=cmd_notify_test)

    peak = commands.add_parser(
        "reset-peak",
        parents=[common],
        help="reset the stored NLV peak of an account (after a withdrawal)",
    )
    peak.add_argument("--account", required=True)
    peak.add_argument("--value", type=float, default=None, help="new peak (default: forget it)")
    peak.set_defaults(handler=cmd_reset_peak)

    from monitor import summary

    summary.add_command(commands, common)
    return parser


def positive_number(text: str) -> float:
    """argparse type of --speed and --cadence: a finite number above zero."""
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"must be a number above zero, got {text}")
    return number


def register_secrets(settings: Settings) -> None:
    """Tell the log redactor every secret: whole URLs and their token-like parts."""
    from monitor.notifier import secret_fragments

    for secret in settings.secrets():
        redactor.register([secret, *secret_fragments(secret)])


def prepare(args: argparse.Namespace, *, quiet: bool = False) -> Settings:
    """Load settings and set up logging (secrets registered with the redactor first)."""
    settings = load_settings(args.config)
    register_secrets(settings)
    level = "WARNING" if quiet else settings.monitor.log_level
    configure_logging(level, settings.monitor.log_file, settings.monitor.log_format)
    warning = insecure_permissions_warning(args.config, settings)
    if warning:
        log.warning("insecure configuration file", advice=warning)
    return settings


# -- run -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGINT/SIGTERM."""
    from monitor.daemon import run_daemon

    settings = prepare(args)
    return asyncio.run(run_daemon(settings))


def install_signal_handlers(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT and SIGTERM."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)


# -- check -----------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    """Evaluate every account once and print the result."""
    settings = prepare(args, quiet=True)
    report = asyncio.run(run_check(settings))
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(render_check(report))
    return EXIT_CODES[Severity(report["status"])]


async def run_check(settings: Settings) -> dict[str, Any]:
    """Connect, snapshot every account, evaluate, disconnect; the ``check --json`` object."""
    from monitor.service import MonitorService
    from monitor.store import Store

    ib = settings.ib
    connector = GatewayConnector(
        ib.host, ib.port, ib.client_id, ib.accounts, ib.timeout, fundamentals=ib.fundamentals
    )
    try:
        await connector.connect()
    except GatewayError as error:
        return {"status": "unknown", "error": redactor.clean(str(error)), "accounts": []}
    try:
        await connector.wait_ready(min(ib.timeout, 5.0))
        state_file = settings.monitor.state_path / "monitor.sqlite3"
        service = MonitorService(
            settings,
            connector=connector,
            # the daemon's history (peak, a year-ago cost) when there is one; never create it
            store=None if state_file.exists() else Store(":memory:"),
        )
        accounts = []
        for account in connector.accounts():
            snapshot, findings = service.findings_for(account)
            accounts.append(account_report(account, snapshot, findings))
    finally:
        await connector.disconnect()
    if not accounts:
        return {
            "status": "unknown",
            "error": "the gateway reported no managed accounts (or none of [ib] accounts)",
            "accounts": [],
        }
    severities = [Severity(f["severity"]) for a in accounts for f in a["findings"]]
    return {"status": worst(severities).value, "accounts": accounts}


def account_report(
    account: str, snapshot: AccountSnapshot | None, findings: list[Finding]
) -> dict[str, Any]:
    """One account's entry in ``check --json``."""
    entry: dict[str, Any] = {"account": account}
    entry.update({name: getattr(snapshot, name, None) for name in REPORTED_FIGURES})
    entry["positions"] = len(snapshot.positions) if snapshot else 0
    entry["status"] = worst(f.severity for f in findings).value
    entry["findings"] = [finding.to_dict() for finding in findings]
    return entry


def render_check(report: dict[str, Any]) -> str:
    """The readable table printed by ``check`` without ``--json``."""
    lines = [f"status: {report['status'].upper()}"]
    if report.get("error"):
        lines.append(f"error: {report['error']}")
    for entry in report["accounts"]:
        base = entry["base_currency"] or ""
        lines.append("")
        lines.append(f"== {entry['account']} ({base}) — {entry['status'].upper()}")
        for key, label in FIGURES:
            value = entry.get(key)
            if value is not None:
                lines.append(f"  {label:<24}{_money(value, base)}")
        if entry.get("cushion") is not None:
            lines.append(f"  {'Cushion':<24}{entry['cushion'] * 100:>16.2f}%")
        if entry.get("leverage") is not None:
            lines.append(f"  {'Leverage':<24}{entry['leverage']:>16.2f}x")
        lines.append("")
        lines.append(f"  {'rule':<24}{'severity':<10}{'value':>14}{'threshold':>14}  message")
        for finding in entry["findings"]:
            lines.append(
                f"  {finding['rule']:<24}{finding['severity']:<10}"
                f"{_number(finding['value']):>14}{_number(finding['threshold']):>14}  "
                f"{finding['message']}"
            )
            if finding.get("action") and finding["severity"] in ("warning", "critical"):
                lines.append(f"  {'':<24}-> {finding['action']}")
    return "\n".join(lines)


def _money(value: float, currency: str) -> str:
    return f"{currency} {value:>16,.2f}"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) < 10:
        return f"{value:.4f}"
    return f"{value:,.2f}"


# -- demo and simulator ----------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the monitor against the simulated gateway playing a scripted sell-off."""
    from monitor.daemon import run_demo

    settings = load_settings(args.config) if args.config else Settings()
    register_secrets(settings)
    configure_logging("WARNING", None, "console")
    return asyncio.run(run_demo(settings, args.scenario, args.speed))


def cmd_simulate(args: argparse.Namespace) -> int:
    """Serve the simulated gateway until interrupted (or print the scenario JSON Schema)."""
    if args.schema:
        print(json.dumps(scenario_json_schema(), indent=2))
        return 0
    scenario = load_scenario(args.scenario or DEFAULT_SCENARIO)
    configure_logging("INFO", None, "console")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "the simulated gateway is listening beyond loopback; the TWS API has no authentication",
            host=args.host,
        )
    print(
        f"simulated IB Gateway on {args.host}:{args.port} "
        f"(scenario: {scenario.name}); Ctrl-C to stop",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                scenario,
                host=args.host,
                port=args.port,
                speed=args.speed,
                account_push_interval=args.cadence,
                price_updates_per_second=args.price_rate,
            )
        )
    return 0


# -- notify-test and reset-peak --------------------------------------------------------------


def cmd_notify_test(args: argparse.Namespace) -> int:
    """Send one test message per matching target and report what each did."""
    from monitor.service import MonitorService

    settings = prepare(args, quiet=True)
    if not settings.notify.all_targets():
        print("no notification targets configured ([notify] urls or [[notify.targets]])")
        return 2
    service = MonitorService(settings)
    results = asyncio.run(service.notifier.send_test(args.severity))
    failures = 0
    for result in results:
        status = "ok" if result.ok else f"FAILED: {result.error}"
        failures += 0 if result.ok else 1
        print(f"{result.name:<20} {status}")
    if not results:
        print(f"no target receives severity {args.severity!r}")
        return 1
    return 1 if failures else 0


def cmd_reset_peak(args: argparse.Namespace) -> int:
    """Forget (or set) the NLV peak the drawdown rule measures from."""
    from monitor.store import Store

    settings = prepare(args, quiet=True)
    store = Store(settings.monitor.state_path / "monitor.sqlite3")
    store.reset_peak(args.account, args.value)
    shown = "forgotten (the next value becomes the peak)" if args.value is None else args.value
    print(f"peak for {args.account}: {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
