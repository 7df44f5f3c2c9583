"""The command line as its users run it: the installed ``margin-monitor`` console script in a
subprocess. ``--version`` and ``--help``, the offline commands (``status``, ``config
validate|show|example``) and what they import, shell completion, and every bad input said in
one line (exit 2), never a traceback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import pytest
from support import ROOT, margin_monitor, write_state

from monitor.sim.scenarios import builtin_scenarios

SECRET = "S3cretT0ken99"
#: What a command that does not connect must never load.
HEAVY = ("ib_async", "matplotlib", "apprise", "exchange_calendars", "pandas", "aiohttp", "jinja2")


def config_file(tmp_path: Path, text: str = "", name: str = "config.toml") -> Path:
    """A config file whose state directory is ``tmp_path/state``, plus ``text``."""
    path = tmp_path / name
    path.write_text(f'[monitor]\nstate_dir = "{tmp_path / "state"}"\n{text}', encoding="utf-8")
    path.chmod(0o600)
    return path


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a refused command printed on stderr (exit 2, no traceback)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("margin-monitor")
    return line


@pytest.mark.slow
def test_version_help_and_completion():
    """``--version`` and ``check -V`` print the installed version; the help of ``demo`` and
    ``simulate-gateway`` names every built-in scenario; ``completion bash`` prints a script
    that completes the commands."""
    installed = version("ibkr-margin-monitor")
    assert margin_monitor("--version").stdout == f"margin-monitor {installed}\n"
    assert margin_monitor("check", "-V").stdout == f"margin-monitor {installed}\n"
    for command in ("demo", "simulate-gateway"):
        shown = " ".join(margin_monitor(command, "--help").stdout.split())
        for name in builtin_scenarios():
            assert name in shown, (command, name)
    script = margin_monitor("completion", "bash").stdout
    assert "complete" in script and "simulate-gateway" in script and "--client-id" in script


@pytest.mark.slow
def test_offline_commands_import_no_heavy_library(tmp_path):
    """``--version``, ``--help``, ``status`` (text and JSON), ``config show``, ``config
    example`` and ``config validate`` of a file without notification URLs load neither
    ib_async, matplotlib, Apprise, the exchange calendar (pandas) nor the web stack; a
    ``config validate`` that has URLs to judge loads Apprise, and only it."""
    (tmp_path / "state").mkdir()
    write_state(tmp_path / "state", datetime.now(UTC))
    plain = config_file(tmp_path)
    with_urls = config_file(tmp_path, '[notify]\nurls = ["json://127.0.0.1:9/x"]\n', "urls.toml")
    offline = [
        ["--version"],
        ["--help"],
        ["check", "--help"],
        ["status", "--config", str(plain)],
        ["status", "--json", "--config", str(plain)],
        ["config", "show", "--config", str(plain)],
        ["config", "show", "--json", "--config", str(plain)],
        ["config", "example"],
        ["config", "validate", "--config", str(plain)],
    ]
    assert loaded_by(offline) == []
    assert loaded_by([["config", "validate", "--config", str(with_urls)]]) == ["apprise"]


def loaded_by(commands: list[list[str]]) -> list[str]:
    """The heavy libraries in ``sys.modules`` of a fresh interpreter after running
    ``commands`` through the command line's entry point."""
    code = (
        "import contextlib, io, json, sys\n"
        "from monitor.cli import main\n"
        f"for argv in {commands!r}:\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.slow
def test_status_reads_the_state_without_changing_it(tmp_path):
    """``status`` on a daemon's state: each account's last figures with their age, the alert
    firing with since, last notified and next reminder (4 h after the last notice for a
    warning), the pending notification with its attempts, the peak and the gateway link as
    recorded; ``--json`` the same as data. The database's bytes are unchanged. Without a
    database: one line, exit 1."""
    (tmp_path / "state").mkdir()
    database = write_state(tmp_path / "state", datetime.now(UTC))
    before = database.read_bytes()
    path = config_file(tmp_path)

    text = margin_monitor("status", "--config", str(path))
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "Daemon: not running" in out
    assert "Gateway, as last recorded: connected to 127.0.0.1:4001 since" in out
    assert "NLV USD 100,000.00, EL USD 18,000.00, cushion 18%, net 1.25x, gross 1.50x" in out
    assert "DU1 cushion WARNING since" in out and "next reminder" in out
    assert "Outbox: 1 pending" in out and "3 attempts" in out and "last error: HTTP 500" in out
    assert "DU1 USD 120,000.00 (set" in out

    data = json.loads(margin_monitor("status", "--json", "--config", str(path)).stdout)
    (account,) = data["accounts"]
    assert account["account"] == "DU1" and account["cushion"] == 0.18
    assert 55 <= account["age_seconds"] <= 600
    (alert,) = data["alerts"]
    assert (alert["rule"], alert["severity"]) == ("cushion", "warning")
    notified = datetime.fromisoformat(alert["last_notified"])
    assert datetime.fromisoformat(alert["next_reminder"]) - notified == timedelta(hours=4)
    (row,) = data["outbox"]
    assert (row["target"], row["attempts"], row["last_error"]) == ("phone", 3, "HTTP 500")
    assert data["peaks"][0]["peak"] == 120_000.0
    assert data["gateway"]["connected"] is True and data["daemon"]["running"] is False
    assert database.read_bytes() == before

    (tmp_path / "elsewhere").mkdir()
    missing = margin_monitor("status", "--config", str(config_file(tmp_path / "elsewhere")))
    assert missing.returncode == 1
    assert missing.stderr.startswith("margin-monitor: no state yet: ")
    assert len(missing.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_config_validate_show_and_example(tmp_path):
    """``config validate`` says OK (exit 0) or gives the same one-line errors as ``run``
    (exit 2); ``config show`` gives every effective value with its source, default, file or
    environment (a space-separated list of URLs accepted), every secret masked; ``config
    example`` prints the example file shipped in the package."""
    good = config_file(
        tmp_path,
        f'[ib]\nport = 4002\n[notify]\nheartbeat_url = "https://hc.example/{SECRET}"\n'
        f'[web]\ntoken = "{SECRET}{SECRET}"\n',
    )
    ok = margin_monitor("config", "validate", "--config", str(good))
    assert ok.returncode == 0 and ok.stdout.startswith(f"configuration OK: {good}")

    bad = config_file(tmp_path, "[ib]\nport = 70000\n", "bad.toml")
    refused = margin_monitor("config", "validate", "--config", str(bad))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.splitlines() == [
        f"margin-monitor: invalid configuration in {bad}, 1 problem:",
        "  ib.port: Input should be less than or equal to 65535 "
        "(set in the file or via MARGIN_MONITOR_IB__PORT)",
    ]
    assert refused.stderr == margin_monitor("run", "--config", str(bad)).stderr

    urls = f"json://127.0.0.1:9/{SECRET} tgram://1234:{SECRET}/42"
    shown = margin_monitor(
        "config", "show", "--config", str(good), env={"MARGIN_MONITOR_NOTIFY__URLS": urls}
    )
    assert shown.returncode == 0, shown.stderr
    assert SECRET not in shown.stdout + shown.stderr
    lines = shown.stdout.splitlines()

    def line_of(key: str) -> str:
        return next(line for line in lines if line.startswith(f"{key} = "))

    assert line_of("port").endswith("# file") and "4002" in line_of("port")
    assert line_of("host").endswith("# default")
    assert line_of("urls").startswith('urls = ["json://***", "tgram://***"]')
    assert line_of("urls").endswith("# environment MARGIN_MONITOR_NOTIFY__URLS")
    assert line_of("heartbeat_url").startswith('heartbeat_url = "https://***"')
    assert line_of("token").startswith('token = "***"')

    as_json = json.loads(margin_monitor("config", "show", "--json", "--config", str(good)).stdout)
    assert as_json["ib.port"] == {"value": 4002, "source": "file"}
    assert as_json["rules.cushion.warning"] == {"value": 0.2, "source": "default"}

    example = margin_monitor("config", "example")
    assert example.stdout == (ROOT / "config.example.toml").read_text(encoding="utf-8")


@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_2(tmp_path, scenario_file):
    """An unknown scenario, an invalid scenario file, --speed or --cadence zero or negative,
    a port already in use, reset-peak for an account the state does not know or with a value
    that is not positive, and run with no notification target: each one line, exit 2."""
    bad_scenario = scenario_file("[[accounts]]\nid = 'DU1'\nnet_liquidation = 'lots'\n")
    (tmp_path / "state").mkdir()
    write_state(tmp_path / "state", datetime.now(UTC))
    path = config_file(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        cases = {
            ("demo", "--scenario", "nope"): "unknown scenario 'nope'",
            ("simulate-gateway", "--scenario", str(bad_scenario)): "accounts[0]",
            ("demo", "--speed", "0"): "argument --speed: must be a number above zero",
            ("simulate-gateway", "--cadence", "-1"): "argument --cadence: must be a number",
            ("simulate-gateway", "--port", port): f"port {port} on 127.0.0.1 is already in use",
            ("reset-peak", "--account", "DU9", "--config", str(path)): "no account 'DU9'",
            ("reset-peak", "--account", "DU1", "--value", "0", "--config", str(path)): (
                "argument --value: must be a number above zero"
            ),
            ("reset-peak", "--account", "DU1", "--value", "-5", "--config", str(path)): (
                "argument --value: must be a number above zero"
            ),
            ("run", "--config", str(path)): "no notification target",
            ("check", "--port", "70000"): "argument --port: a port goes from 1 to 65535",
        }
        for argv, expected in cases.items():
            assert expected in one_line_error(margin_monitor(*argv)), argv
