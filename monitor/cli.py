"""The ``margin-monitor`` command line: every command, on top of everything, imported by nothing.

Every command takes ``--config PATH`` (or ``$MARGIN_MONITOR_CONFIG``). Bad input never ends in
a traceback: a configuration problem (a key, an Apprise URL Apprise cannot use, a port in use),
a state directory that cannot be used, a second daemon on the same state directory or a bad
scenario prints one message saying what to fix and exits with :data:`EXIT_CONFIG` (``check``:
3, unknown, the Nagios convention). Commands build what they run with the builders of
:mod:`monitor.app`; those (and the demo and the summary, which bring ib_async, Apprise,
APScheduler or matplotlib) are imported inside the command that needs them, so ``--help``
starts without them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import structlog

from monitor.logs import configure_logging, redactor
from monitor.report import EXIT_CODES, account_report, report, unknown
from monitor.settings import (
    ConfigError,
    Settings,
    config_path,
    insecure_permissions_warning,
    load_settings,
    problems_message,
)
from monitor.sim.scenarios import ScenarioError, load_scenario, scenario_json_schema
from monitor.sim.server import DEFAULT_SCENARIO, serve
from monitor.store import StoreError
from rules.catalog import unit_of
from rules.clock import zone
from rules.model import Severity
from rules.text import Unit, format_value

log = structlog.get_logger("monitor.cli")

#: Exit status of a problem the user must fix (configuration, state directory, a second
#: daemon): the systemd unit does not restart on it (``RestartPreventExitStatus=2``).
EXIT_CONFIG = 2

# The money figures of ``check``'s readable table, in the order shown.
FIGURES = (
    ("net_liquidation", "Net liquidation"),
    ("equity_with_loan", "Equity with loan"),
    ("gross_position_value", "Gross position value"),
    ("maint_margin_req", "Maintenance margin"),
    ("init_margin_req", "Initial margin"),
    ("excess_liquidity", "Excess liquidity"),
    ("available_funds", "Available funds"),
    ("sma", "SMA"),
    ("margin_loan", "Margin loan"),
)
#: The ratios to NLV in ``check``'s table: null (with the reason) unless NLV is positive.
RATIOS: tuple[tuple[str, str, Unit], ...] = (
    ("cushion", "Cushion", "percent"),
    ("net_leverage", "Net leverage", "multiple"),
    ("leverage", "Gross leverage", "multiple"),
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
    except (ConfigError, StoreError) as error:
        print(f"margin-monitor: {redactor.clean(str(error))}", file=sys.stderr)
        return 3 if args.command == "check" else EXIT_CONFIG
    except ScenarioError as error:  # demo and simulate-gateway: a bad --scenario
        print(f"margin-monitor: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except RecursionError:  # a scenario file nested deeper than any parser goes
        print("margin-monitor: the scenario file is nested too deeply", file=sys.stderr)
        return EXIT_CONFIG
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

    summary = commands.add_parser(
        "summary", parents=[common], help="build a day's summary from stored history"
    )
    summary.add_argument(
        "--date",
        type=date.fromisoformat,
        default=None,
        help="YYYY-MM-DD (default: today in [summary] timezone)",
    )
    summary.add_argument("--account", action="append", default=None, help="repeatable")
    summary.add_argument("--format", choices=["text", "json", "markdown"], default="text")
    summary.add_argument("--send", action="store_true", help="send it through the notifier")
    summary.add_argument(
        "--chart", type=Path, default=None, help="write the (first account's) chart PNG here"
    )
    summary.set_defaults(handler=cmd_summary)
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
        redactor.register(secret_fragments(secret))


def check_targets(settings: Settings, path: str | None) -> None:
    """Refuse an Apprise URL that Apprise cannot use, naming its place (secrets masked)."""
    from monitor.app import target_problems

    problems = target_problems(settings)
    if problems:
        raise ConfigError(problems_message(problems, config_path(path)))


def prepare(args: argparse.Namespace, *, quiet: bool = False) -> Settings:
    """Load and check the settings, then set up logging (secrets registered first)."""
    settings = load_settings(args.config)
    register_secrets(settings)
    check_targets(settings, args.config)
    level = "WARNING" if quiet else settings.monitor.log_level
    log_file = settings.monitor.log_file
    try:
        configure_logging(level, log_file, settings.monitor.log_format)
    except OSError as error:
        raise ConfigError(
            f"[monitor] log_file {log_file} cannot be written: {error.strerror or error}"
        ) from None
    warning = insecure_permissions_warning(args.config, settings)
    if warning:
        log.warning("insecure configuration file", advice=warning)
    return settings


# -- run -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGINT/SIGTERM."""
    from monitor.app import run_daemon

    settings = prepare(args)
    return asyncio.run(run_daemon(settings))


# -- check -----------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    """Evaluate every account once and print the result."""
    settings = prepare(args, quiet=True)
    result = asyncio.run(run_check(settings))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(render_check(result))
    return EXIT_CODES[Severity(result["status"])]


async def run_check(settings: Settings) -> dict[str, Any]:
    """Connect, snapshot every account, evaluate, disconnect; the ``check --json`` object.

    The rules read the daemon's history (peak, a year-ago cost) when there is one; without
    it an in-memory store stands in, so ``check`` never creates the state file.
    """
    from monitor.app import build_connector, build_service, build_store
    from monitor.gateway import GatewayError

    connector = build_connector(settings)
    try:
        await connector.connect()
    except GatewayError as error:
        return unknown(redactor.clean(str(error)))
    in_memory = not settings.monitor.database_path.exists()
    try:
        await connector.wait_ready(min(settings.ib.timeout, 5.0))
        try:
            store = build_store(settings, in_memory=in_memory)
        except StoreError:  # the history cannot be read: judge the account without it
            store = build_store(settings, in_memory=True)
        with store:
            service = build_service(settings, connector=connector, store=store)
            accounts = [
                account_report(account, *service.findings_for(account))
                for account in connector.accounts()
            ]
    finally:
        await connector.disconnect()
    return report(accounts)


def render_check(result: dict[str, Any]) -> str:
    """The readable table printed by ``check`` without ``--json``."""
    lines = [f"status: {result['status'].upper()}"]
    if result.get("error"):
        lines.append(f"error: {result['error']}")
    for entry in result["accounts"]:
        base = entry["base_currency"] or ""
        lines.append("")
        lines.append(f"== {entry['account']} ({base}) — {entry['status'].upper()}")
        for key, label in FIGURES:
            value = entry.get(key)
            if value is not None:
                lines.append(f"  {label:<24}{format_value(value, 'money', base):>20}")
        reasons = entry.get("null_reasons") or {}
        for key, label, unit in RATIOS:
            if entry.get(key) is not None:
                lines.append(f"  {label:<24}{format_value(entry[key], unit):>20}")
            elif key in reasons:
                lines.append(f"  {label:<24}{'n/a':>20}  ({reasons[key]})")
        lines.append("")
        lines.append(f"  {'rule':<24}{'severity':<10}{'value':>18}{'threshold':>18}  message")
        for finding in entry["findings"]:
            unit = unit_of(finding["rule"])
            value = format_value(finding["value"], unit, base)
            threshold = format_value(finding["threshold"], unit, base)
            lines.append(
                f"  {finding['rule']:<24}{finding['severity']:<10}"
                f"{value:>18}{threshold:>18}  {finding['message']}"
            )
            if finding.get("action") and finding["severity"] in ("warning", "critical"):
                lines.append(f"  {'':<24}-> {finding['action']}")
    return "\n".join(lines)


# -- demo and simulator ----------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the monitor against the simulated gateway playing a scripted sell-off."""
    from monitor.demo import run_demo

    settings = load_settings(args.config) if args.config else Settings()
    register_secrets(settings)
    check_targets(settings, args.config)
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
    from monitor.app import build_notifier, build_store

    settings = prepare(args, quiet=True)
    if not settings.notify.all_targets():
        print("no notification targets configured ([notify] urls or [[notify.targets]])")
        return 2
    # A test is sent directly, never through the outbox: no state file is needed for it.
    with build_store(settings, in_memory=True) as store:
        results = asyncio.run(build_notifier(settings, store).send_test(args.severity))
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
    from monitor.app import build_store

    settings = prepare(args, quiet=True)
    with build_store(settings) as store:
        store.reset_peak(args.account, args.value)
    shown = "forgotten (the next value becomes the peak)" if args.value is None else args.value
    print(f"peak for {args.account}: {shown}")
    return 0


# -- summary ---------------------------------------------------------------------------------


def cmd_summary(args: argparse.Namespace) -> int:
    """Print (and optionally send) a day's summary; 1 when there is no history or a send failed."""
    from monitor.app import build_notifier, build_store
    from monitor.summary import (
        build_summaries,
        chart_levels,
        render_chart,
        render_markdown,
        render_text,
        send_on_request,
    )

    settings = prepare(args, quiet=True)
    summary_zone = zone(settings.summary.timezone)
    day = args.date or datetime.now(summary_zone).date()
    database = settings.monitor.database_path
    if not database.exists():
        print(
            f"no history yet: {database} does not exist (run the monitor first)",
            file=sys.stderr,
        )
        return 1
    with build_store(settings) as store:
        summaries, samples = build_summaries(store, settings, day, args.account)
        if args.format == "json":
            print(json.dumps([s.to_dict() for s in summaries], indent=2))
        elif args.format == "markdown":
            print(render_markdown(summaries, summary_zone))
        else:
            print(render_text(summaries, summary_zone))
        if args.chart:
            first = next((s for s in summaries if samples.get(s.account)), None)
            if first is None:
                print(f"no chart: no history for {day.isoformat()}", file=sys.stderr)
            else:
                render_chart(
                    samples[first.account],
                    args.chart,
                    title=f"{first.account} {day.isoformat()}",
                    zone=summary_zone,
                    gaps=first.gaps,
                    **chart_levels(settings),
                )
        if not args.send:
            return 0
        # Through the daemon's notifier (same targets, maximum age and outbox) except for
        # quiet hours: a summary asked for on the command line goes at once.
        notifier = build_notifier(settings, store, quiet_hours=False)
        if not notifier.targets:
            print("not sent: no notification targets configured ([notify] urls)", file=sys.stderr)
            return 1
        delivery = asyncio.run(send_on_request(notifier, settings, summaries, samples, day))
    if delivery is None:
        print("not sent: no target receives severity 'info'", file=sys.stderr)
        return 1
    print(
        f"sent to {delivery.sent} target(s); {delivery.failed} failed "
        "(kept in the outbox for retry)",
        file=sys.stderr,
    )
    return 1 if delivery.failed or not delivery.sent else 0


if __name__ == "__main__":
    raise SystemExit(main())
