"""The ``margin-monitor`` command line: every command, on top of everything, imported by nothing.

Every command takes ``--config PATH`` (or ``$MARGIN_MONITOR_CONFIG``); those that connect to
the gateway (``run``, ``check``) also take ``--host``, ``--port`` and ``--client-id``, as
ib_async scripts do. Bad input never ends in a traceback: a configuration problem (a key, an
Apprise URL Apprise cannot use, a port in use), a state directory that cannot be used, a
second daemon on the same state directory, a bad scenario or a bad option prints one message
saying what to fix and exits with :data:`EXIT_CONFIG` (``check``: 3, unknown, the Nagios
convention, with the plugin's UNKNOWN line on stdout).

Fast to start: this module imports only the standard library at its top. Each command imports
what it needs when it runs, so ``--version``, ``--help``, ``status`` and ``config ...`` never
load ib_async, Apprise, matplotlib, the exchange calendar or the web stack (``config
validate`` asks Apprise about the notification URLs there are, and only then).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import math
import shutil
import socket
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from monitor import DISTRIBUTION, installed_version

if TYPE_CHECKING:
    from monitor.settings import Settings

PROG = "margin-monitor"

#: Exit status of a problem the user must fix (configuration, state directory, a second
#: daemon): the systemd unit does not restart on it (``RestartPreventExitStatus=2``).
EXIT_CONFIG = 2
#: ``check``'s exit status when nothing could be judged (Nagios UNKNOWN).
EXIT_UNKNOWN = 3
#: ``check -t``: the Monitoring Plugins' customary default, in seconds.
DEFAULT_CHECK_TIMEOUT = 10.0
#: The shells ``completion`` writes a script for (shtab's).
SHELLS = ("bash", "zsh", "tcsh")


class UsageError(Exception):
    """Input the user must fix, said in one line (exit :data:`EXIT_CONFIG`)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_CONFIG
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except Exception as error:
        message = user_error(error)
        if message is None:
            raise
        print(f"{PROG}: {message}", file=sys.stderr)
        if args.command != "check":
            return EXIT_CONFIG
        print_check(args, {"status": "unknown", "error": message.splitlines()[0], "accounts": []})
        return EXIT_UNKNOWN


def user_error(error: Exception) -> str | None:
    """The one message for an error the user can fix (secrets redacted), ``None`` for a bug."""
    from monitor.logs import redactor
    from monitor.settings import ConfigError
    from monitor.store import StoreError

    if isinstance(error, ConfigError | StoreError | UsageError):
        return redactor.clean(str(error))
    if isinstance(error, RecursionError):  # a scenario file nested deeper than any parser goes
        return "the scenario file is nested too deeply"
    return None


# -- the parser ------------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse, with a bad option said in one line (usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: {message} (see {self.prog} --help)\n")


class VersionAction(argparse.Action):
    """``-V``/``--version``: the installed version, looked up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        print(f"{PROG} {version()}")
        parser.exit(0)


def version() -> str:
    """The installed distribution's version (``unknown`` when run from a bare checkout)."""
    return installed_version(DISTRIBUTION)


def build_parser() -> argparse.ArgumentParser:
    """All sub-commands with their options."""
    common = Parser(add_help=False)
    common.add_argument("--config", metavar="PATH", help="TOML configuration file")
    as_json = Parser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print one JSON object")
    connects = Parser(add_help=False)
    connects.add_argument("--host", help="TWS/IB Gateway host (default: [ib] host)")
    connects.add_argument(
        "--port", type=port_number, help="TWS/IB Gateway API port (default: [ib] port)"
    )
    parser = Parser(
        prog=PROG, description="Read-only margin watchdog for Interactive Brokers accounts."
    )
    parser.add_argument("-V", "--version", action=VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", parents=[common, connects], help="run the monitoring daemon")
    run.add_argument("--client-id", type=client_id, help="API client id (default: [ib] client_id)")
    run.add_argument(
        "--no-notify",
        action="store_true",
        help="run without any notification target (alerts only logged); "
        "without it, run refuses to start with none",
    )
    run.set_defaults(handler=cmd_run)

    check = commands.add_parser(
        "check",
        parents=[common, connects, as_json],
        help="connect, evaluate every account once, print, exit 0/1/2/3 (a Nagios plugin)",
        description="Evaluate every account once and report as a Nagios/Icinga plugin: "
        "a status line with performance data, the details below it; exit 0 ok, "
        "1 warning, 2 critical, 3 unknown.",
    )
    check.add_argument(
        "--client-id",
        dest="check_client_id",
        type=client_id,
        help="API client id of this check (default: [ib] check_client_id, "
        "else [ib] client_id + 1, so it runs beside the daemon)",
    )
    check.add_argument(
        "-t",
        "--timeout",
        type=positive_number,
        default=DEFAULT_CHECK_TIMEOUT,
        metavar="SECONDS",
        help=f"give up (UNKNOWN) after this long (default {DEFAULT_CHECK_TIMEOUT:g})",
    )
    check.add_argument("--wide", action="store_true", help="one long first line, details unwrapped")
    check.add_argument(
        "-v", "--verbose", action="store_true", help="log warnings on stderr while checking"
    )
    check.add_argument("-V", "--version", action=VersionAction)
    check.set_defaults(handler=cmd_check)

    status = commands.add_parser(
        "status",
        parents=[common, as_json],
        help="what the daemon last recorded, read offline from its state database",
    )
    status.set_defaults(handler=cmd_status)

    config = commands.add_parser(
        "config", help="check, show or print an example of the configuration (offline)"
    )
    actions = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    validate = actions.add_parser(
        "validate", parents=[common], help="check the configuration; exit 2 with its problems"
    )
    validate.set_defaults(handler=cmd_config_validate)
    show = actions.add_parser(
        "show",
        parents=[common, as_json],
        help="the effective settings, each with its source (default, file, environment)",
    )
    show.set_defaults(handler=cmd_config_show)
    example = actions.add_parser("example", help="print the example configuration file")
    example.set_defaults(handler=cmd_config_example)

    scenario_help = (
        f"a built-in scenario ({', '.join(builtin_scenarios())}) or a scenario TOML file"
    )
    demo = commands.add_parser(
        "demo", parents=[common], help="run the monitor against the built-in simulated gateway"
    )
    demo.add_argument("--scenario", default="selloff", metavar="NAME|FILE", help=scenario_help)
    demo.add_argument(
        "--speed", type=positive_number, default=None, help="scenario time per second"
    )
    demo.set_defaults(handler=cmd_demo)

    sim = commands.add_parser(
        "simulate-gateway", parents=[common], help="serve a simulated IB Gateway on a port"
    )
    sim.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sim.add_argument(
        "--port", type=port_or_any, default=7497, help="port (default 7497; 0: any free one)"
    )
    sim.add_argument(
        "--scenario",
        default=None,
        metavar="NAME|FILE",
        help=f"{scenario_help}, or generated:ACCOUNTSxHOLDINGSxCONTRACTS",
    )
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
        "notify-test",
        parents=[common],
        help="send a test notification through the routing and ping the heartbeat URL",
    )
    test.add_argument(
        "--severity", choices=["info", "warning", "critical", "summary"], default="info"
    )
    test.set_defaults(handler=cmd_notify_test)

    peak = commands.add_parser(
        "reset-peak",
        parents=[common],
        help="reset the stored NLV peak of an account (after a withdrawal)",
    )
    peak.add_argument("--account", required=True)
    peak.add_argument(
        "--value", type=positive_number, default=None, help="new peak (default: forget it)"
    )
    peak.set_defaults(handler=cmd_reset_peak)

    summary = commands.add_parser(
        "summary", parents=[common], help="build a day's summary from stored history"
    )
    summary.add_argument(
        "--date",
        type=day_of,
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

    completion = commands.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script for your shell, e.g. "
        f"`{PROG} completion bash > ~/.local/share/bash-completion/completions/{PROG}`.",
    )
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(handler=cmd_completion)
    return parser


def builtin_scenarios() -> list[str]:
    """The built-in scenario names, from the package's folder (without loading the scenario
    models: this runs for ``--help``)."""
    folder = Path(__file__).with_name("sim") / "scenarios"
    return sorted(path.stem for path in folder.glob("*.toml"))


def positive_number(text: str) -> float:
    """argparse type of --speed, --cadence, --timeout, --value: a finite number above zero."""
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"must be a number above zero, got {text}")
    return number


def _integer(text: str, low: int, high: int, what: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not low <= number <= high:
        raise argparse.ArgumentTypeError(f"{what} goes from {low} to {high}, got {number}")
    return number


def port_number(text: str) -> int:
    """argparse type of a port to connect to: 1 to 65535."""
    return _integer(text, 1, 65535, "a port")


def port_or_any(text: str) -> int:
    """argparse type of a port to listen on: 0 (any free one) to 65535."""
    return _integer(text, 0, 65535, "a port")


def client_id(text: str) -> int:
    """argparse type of an API client id."""
    return _integer(text, 0, 2**31 - 1, "a client id")


def day_of(text: str) -> date:
    """argparse type of --date."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


# -- shared steps ----------------------------------------------------------------------------


def load(args: argparse.Namespace) -> Settings:
    """The settings of ``--config`` with ``--host``, ``--port`` and ``--client-id`` (``run``'s;
    ``check``'s is its own) applied over ``[ib]``."""
    from monitor.settings import load_settings

    settings = load_settings(args.config)
    changes = {
        key: getattr(args, key)
        for key in ("host", "port", "client_id")
        if getattr(args, key, None) is not None
    }
    if not changes:
        return settings
    return settings.model_copy(update={"ib": settings.ib.model_copy(update=changes)})


def register_secrets(settings: Settings) -> None:
    """Tell the log redactor every secret: whole URLs and their token-like parts."""
    from monitor.logs import redactor
    from monitor.notifier import secret_fragments

    for secret in settings.secrets():
        redactor.register(secret_fragments(secret))


def check_targets(settings: Settings, path: str | None) -> None:
    """Refuse an Apprise URL (or Apprise configuration file) that Apprise cannot use, naming
    its place (secrets masked)."""
    from monitor.notifier import target_problems
    from monitor.settings import ConfigError, config_path, problems_message

    problems = target_problems(settings)
    if problems:
        raise ConfigError(problems_message(problems, config_path(path)))


def prepare(args: argparse.Namespace, *, level: str | None = None) -> Settings:
    """Load and check the settings, then set up logging (secrets registered first);
    ``level`` overrides ``[monitor] log_level``."""
    import structlog

    from monitor.logs import configure_logging
    from monitor.settings import ConfigError, insecure_permissions_warning

    settings = load(args)
    register_secrets(settings)
    check_targets(settings, args.config)
    log_file = settings.monitor.log_file
    try:
        configure_logging(
            level or settings.monitor.log_level, log_file, settings.monitor.log_format
        )
    except OSError as error:
        raise ConfigError(
            f"[monitor] log_file {log_file} cannot be written: {error.strerror or error}"
        ) from None
    warning = insecure_permissions_warning(args.config)
    if warning:
        structlog.get_logger("monitor.cli").warning("insecure configuration file", advice=warning)
    return settings


# -- run -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGINT/SIGTERM; refuse to run with nobody to tell, unless
    ``--no-notify`` says so (alerts are then only logged)."""
    from monitor.app import build_targets, run_daemon
    from monitor.settings import ConfigError

    settings = prepare(args)
    if not args.no_notify and not build_targets(settings):
        raise ConfigError(
            "no notification target: alerts would reach nobody. Set [notify] urls, "
            "[[notify.targets]] or [notify] config, or pass --no-notify to run anyway"
        )
    return asyncio.run(run_daemon(settings))


# -- check -----------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    """Evaluate every account once and print the result as a plugin (or JSON)."""
    from monitor.report import EXIT_CODES
    from rules.model import Severity

    settings = prepare(args, level="WARNING" if args.verbose else "CRITICAL")
    ib = settings.ib
    chosen = args.check_client_id if args.check_client_id is not None else ib.check_id
    try:
        result = asyncio.run(asyncio.wait_for(run_check(settings, chosen), args.timeout))
    except TimeoutError:
        result = {
            "status": "unknown",
            "error": f"no answer within {args.timeout:g} s (-t/--timeout) from the gateway "
            f"at {ib.host}:{ib.port}",
            "accounts": [],
        }
    print_check(args, result, settings)
    return EXIT_CODES[Severity(result["status"])]


def print_check(
    args: argparse.Namespace, result: dict[str, Any], settings: Settings | None = None
) -> None:
    """``check``'s output: the plugin's lines (as wide as the terminal unless ``--wide``) or
    ``--json``."""
    from monitor.report import plugin_output
    from rules import RulesConfig

    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return
    width = None if args.wide else shutil.get_terminal_size().columns
    rules = settings.rules if settings is not None else RulesConfig()
    print(plugin_output(result, rules, width))


async def run_check(settings: Settings, client_id: int | None = None) -> dict[str, Any]:
    """Connect, snapshot every account, evaluate, disconnect; the ``check --json`` object.

    It connects as ``client_id`` (default: ``[ib]``'s check id, the daemon's plus one, so it
    runs beside the daemon). The rules read the daemon's history (peak, a year-ago cost) when
    there is one; without it an in-memory store stands in, so ``check`` never creates the
    state file.
    """
    from monitor.app import build_connector, build_service, build_store
    from monitor.gateway import GatewayError
    from monitor.logs import redactor
    from monitor.report import account_report, report, unknown
    from monitor.store import StoreError

    connector = build_connector(
        settings,
        client_id=settings.ib.check_id if client_id is None else client_id,
        client_id_advice="give check another one with --client-id or [ib] check_client_id "
        "(default: [ib] client_id + 1)",
    )
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


# -- status and config (offline) -------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    """Print what the daemon last recorded; 1 when there is no state database yet."""
    from monitor.settings import load_settings
    from monitor.status import NoState, read_status, render_status

    settings = load_settings(args.config)
    try:
        status = read_status(settings, datetime.now(UTC))
    except NoState as missing:
        print(f"{PROG}: {missing}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.json else render_status(status))
    return 0


def cmd_config_validate(args: argparse.Namespace) -> int:
    """Check the configuration as ``run`` would, without starting anything."""
    from monitor.settings import config_path, load_settings

    settings = load_settings(args.config)
    where = config_path(args.config) or "defaults and environment (no configuration file)"
    notify = settings.notify
    targets = len(notify.all_targets())
    if targets or notify.config is not None:  # Apprise's parser judges the URLs
        from monitor.notifier import apprise_config_targets

        check_targets(settings, args.config)
        if notify.config is not None:
            targets += len(apprise_config_targets(notify.config)[0])
    print(f"configuration OK: {where}")
    plural = "" if targets == 1 else "s"
    print(f"  {targets} notification target{plural}")
    if not targets:
        print("  note: `run` refuses to start without a notification target (or --no-notify)")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    """Print every effective setting with its source, secrets masked."""
    from monitor.settings import config_path, describe_settings

    described = describe_settings(args.config)
    if args.json:
        print(json.dumps({entry.key: entry.to_dict() for entry in described}, indent=2))
        return 0
    source = config_path(args.config)
    print(
        f"# Effective configuration (file: {source or 'none'}); each value's source on its right."
    )
    section = None
    for entry in described:
        table, _, key = entry.key.rpartition(".")
        if table != section:
            print(f"\n[{table}]")
            section = table
        shown = "(not set)" if entry.value is None else toml_value(entry.value)
        origin = f"environment {entry.variable}" if entry.variable else entry.source
        print(f"{key} = {shown}".ljust(48) + f"  # {origin}")
    return 0


def toml_value(value: Any) -> str:
    """A value as TOML shows it: strings quoted, lists in brackets, tables inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        items = ", ".join(
            f"{key} = {toml_value(item)}" for key, item in value.items() if item is not None
        )
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(value)


def cmd_config_example(args: argparse.Namespace) -> int:
    """Print the example configuration shipped with the package."""
    from importlib.resources import files

    print(files("monitor").joinpath("config.example.toml").read_text(encoding="utf-8"), end="")
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    """Print the shell completion script (static: nothing runs when the shell completes)."""
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell))
    return 0


# -- demo and simulator ----------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the monitor against the simulated gateway playing a scripted sell-off."""
    from monitor.demo import run_demo
    from monitor.logs import configure_logging
    from monitor.settings import Settings, load_settings
    from monitor.sim.scenarios import ScenarioError

    settings = load_settings(args.config) if args.config else Settings()
    register_secrets(settings)
    check_targets(settings, args.config)
    configure_logging("WARNING", None, "console")
    try:
        return asyncio.run(run_demo(settings, args.scenario, args.speed))
    except ScenarioError as error:
        raise UsageError(str(error)) from None


def cmd_simulate(args: argparse.Namespace) -> int:
    """Serve the simulated gateway until interrupted (or print the scenario JSON Schema)."""
    import structlog

    from monitor.logs import configure_logging
    from monitor.sim.scenarios import ScenarioError, load_scenario, scenario_json_schema
    from monitor.sim.server import DEFAULT_SCENARIO, serve

    if args.schema:
        print(json.dumps(scenario_json_schema(), indent=2))
        return 0
    try:
        scenario = load_scenario(args.scenario or DEFAULT_SCENARIO)
    except ScenarioError as error:
        raise UsageError(str(error)) from None
    ensure_free(args.host, args.port)
    configure_logging("INFO", None, "console")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        structlog.get_logger("monitor.cli").warning(
            "the simulated gateway is listening beyond loopback; the TWS API has no authentication",
            host=args.host,
        )
    print(
        f"simulated IB Gateway on {args.host}:{args.port} "
        f"(scenario: {scenario.name}); Ctrl-C to stop",
        flush=True,
    )
    try:
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
    except OSError as error:  # taken between the look and the bind, or another reason
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {error}") from None
    return 0


def ensure_free(host: str, port: int) -> None:
    """:class:`UsageError` when ``host:port`` cannot be listened on (a port in use, an address
    not of this machine), at once instead of after the server's retries."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise UsageError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"port {port} on {host} is already in use (another gateway or simulator?); "
                    "choose another with --port"
                ) from None
            raise UsageError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


# -- notify-test and reset-peak --------------------------------------------------------------


def cmd_notify_test(args: argparse.Namespace) -> int:
    """Send one test message per matching target, and one ping to the heartbeat URL, and
    report what each did; 1 when one failed, 2 with nothing to test."""
    from monitor.app import build_notifier, build_store

    settings = prepare(args, level="WARNING")
    heartbeat = settings.notify.heartbeat_url
    # A test is sent directly, never through the outbox: no state file is needed for it.
    with build_store(settings, in_memory=True) as store:
        notifier = build_notifier(settings, store)
        if not notifier.targets and heartbeat is None:
            print(
                "no notification targets configured "
                "([notify] urls, [[notify.targets]] or [notify] config, or heartbeat_url)"
            )
            return 2
        results = asyncio.run(notifier.send_test(args.severity)) if notifier.targets else []
    failures = 0
    for result in results:
        status = "ok" if result.ok else f"FAILED: {result.error}"
        failures += 0 if result.ok else 1
        print(f"{result.name:<20} {status}")
    if heartbeat is not None:
        failures += 0 if ping_heartbeat(heartbeat.get_secret_value()) else 1
    if notifier.targets and not results:
        print(f"no target receives severity {args.severity!r}")
        return 1
    return 1 if failures else 0


def ping_heartbeat(url: str) -> bool:
    """``notify-test``'s ping of the heartbeat URL (the plain one, as while healthy), printed
    as one line with the URL shown without its path; True when it answered."""
    from monitor.heartbeat import Heartbeat

    heartbeat = Heartbeat(url)
    ok, error = asyncio.run(heartbeat.ping("ok"))
    print(f"{'heartbeat':<20} {'ok' if ok else f'FAILED: {error}'} ({heartbeat.shown})")
    return ok


def cmd_reset_peak(args: argparse.Namespace) -> int:
    """Forget (or set) the NLV peak the drawdown rule measures from, for an account the
    state knows."""
    from monitor.app import build_store

    settings = prepare(args, level="WARNING")
    database = settings.monitor.database_path
    in_the_way = settings.monitor.state_path.exists() and not settings.monitor.state_path.is_dir()
    if not database.exists() and not in_the_way:  # (a file in the way is said by the store)
        raise UsageError(
            f"no state yet: {database} does not exist (the daemon records peaks as it runs)"
        )
    with build_store(settings) as store:
        known = sorted(
            set(store.peaks())
            | {sample["account"] for sample in store.latest_samples()}
            | {account for account, _ in store.load_alert_states()}
        )
        if args.account not in known:
            listed = ", ".join(known) if known else "none yet"
            raise UsageError(f"no account {args.account!r} in {database} (known: {listed})")
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
    from rules.clock import zone

    settings = prepare(args, level="WARNING")
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
                    events=first.alerts,
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
        print(
            'not sent: no target receives the summary (add "summary" to a target\'s '
            "severities, or the Apprise tag summary)",
            file=sys.stderr,
        )
        return 1
    print(
        f"sent to {delivery.sent} target(s); {delivery.failed} failed "
        "(kept in the outbox for retry)",
        file=sys.stderr,
    )
    return 1 if delivery.failed or not delivery.sent else 0


if __name__ == "__main__":
    raise SystemExit(main())
