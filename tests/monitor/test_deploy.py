"""The deployment files under deploy/: the systemd unit verified by systemd itself where
``systemd-analyze`` exists, and the container files checked for what the issue requires."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "margin-monitor.service"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed"
)


def directives(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of a unit file, in order (keys may repeat)."""
    section, found = "", []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def service_values(key: str) -> list[str]:
    return [v for s, k, v in directives(UNIT.read_text()) if s == "Service" and k == key]


def installable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart at this venv's real console script and the credential source
    at a real file, so ``verify`` can check both exist."""
    script = Path(sys.executable).parent / "margin-monitor"
    if not script.exists():
        pytest.skip(f"{script} is not installed (pip install -e .)")
    credential = tmp_path / "config.toml"
    credential.write_text("[ib]\nport = 4002\n", encoding="utf-8")
    credential.chmod(0o600)
    text = UNIT.read_text()
    text, execs = re.subn(
        r"^ExecStart=\S+/margin-monitor ", f"ExecStart={script} ", text, flags=re.MULTILINE
    )
    text, creds = re.subn(
        r"^LoadCredential=config\.toml:\S+$",
        f"LoadCredential=config.toml:{credential}",
        text,
        flags=re.MULTILINE,
    )
    assert (execs, creds) == (1, 1)
    unit = tmp_path / "margin-monitor.service"
    unit.write_text(text, encoding="utf-8")
    return unit


def analyze(*arguments: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    environ = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": "", "LANG": "C.UTF-8"}
    return subprocess.run(
        [SYSTEMD_ANALYZE, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )


@needs_systemd_analyze
def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    """``systemd-analyze verify`` exits 0 and says nothing about our unit (lines about other
    units of the host are not ours to judge)."""
    unit = installable_unit(tmp_path)
    result = analyze("verify", str(unit))
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if unit.name in line or str(unit) in line
    ]
    assert ours == []
    assert result.returncode == 0, result.stdout + result.stderr


@needs_systemd_analyze
def test_verify_would_catch_a_broken_unit(tmp_path):
    """The check above can fail: a typo'd key and a missing program are reported."""
    unit = installable_unit(tmp_path)
    broken = unit.read_text().replace("WatchdogSec=60", "WatchdogSec=60\nWatchDogSecs=60")
    broken = re.sub(r"^ExecStart=\S+", "ExecStart=/nonexistent/margin-monitor", broken, flags=re.M)
    unit.write_text(broken, encoding="utf-8")
    result = analyze("verify", str(unit))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "WatchDogSecs" in output and "/nonexistent/margin-monitor" in output


@needs_systemd_analyze
def test_the_unit_is_hardened(tmp_path):
    """``systemd-analyze security`` (offline) rates the unit's exposure low. Skipped where
    this systemd cannot analyse a unit file offline."""
    unit = installable_unit(tmp_path)
    result = analyze("security", "--offline=yes", "--no-pager", str(unit))
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    if match is None:
        pytest.skip(f"systemd-analyze security --offline unavailable: {result.stderr[:200]}")
    assert float(match.group(1)) <= 2.0, result.stdout


def test_the_unit_has_the_required_settings():
    """Type=notify with a watchdog, restarts on failure, and the hardening the issue names."""
    one = {key: service_values(key) for key in ("Type", "WatchdogSec", "Restart")}
    assert one == {"Type": ["notify"], "WatchdogSec": ["60"], "Restart": ["on-failure"]}
    assert service_values("NotifyAccess") == ["main"]
    assert service_values("DynamicUser") == ["yes"]
    assert service_values("ProtectSystem") == ["strict"]
    assert service_values("StateDirectory") == ["margin-monitor"]
    assert service_values("NoNewPrivileges") == ["yes"]
    (credential,) = service_values("LoadCredential")
    assert credential.startswith("config.toml:/")
    (start,) = service_values("ExecStart")
    assert start.endswith("margin-monitor run --config %d/config.toml")
    # The secret reaches the process as a credential file, never via its environment.
    assert not any("NOTIFY__URLS" in value for value in service_values("Environment"))
    # It must still reach the gateway (TCP) and systemd's notify socket (AF_UNIX).
    families = " ".join(service_values("RestrictAddressFamilies")).split()
    assert {"AF_UNIX", "AF_INET"} <= set(families)
    assert not any(value.startswith("~") for value in families)
    # A configuration error (exit 2) is not restarted in a loop.
    assert service_values("RestartPreventExitStatus") == ["2"]


def final_stage(text: str) -> list[str]:
    """The instruction lines of a Dockerfile's last stage (continuations joined)."""
    joined = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in joined.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    starts = [index for index, line in enumerate(lines) if line.upper().startswith("FROM ")]
    return lines[starts[-1] :]


def test_the_image_runs_as_a_non_root_user():
    """The final stage is slim and ends as a numeric non-root USER before the entrypoint."""
    stage = final_stage(DOCKERFILE.read_text())
    assert re.match(r"FROM python:3\.11-slim\b", stage[0])
    users = [line.split(None, 1)[1] for line in stage if line.upper().startswith("USER ")]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit() and int(user) >= 1000
    entry = next(i for i, line in enumerate(stage) if line.upper().startswith("ENTRYPOINT"))
    last_user = max(i for i, line in enumerate(stage) if line.upper().startswith("USER "))
    assert last_user < entry
    assert 'ENTRYPOINT ["margin-monitor"]' in stage


def load_compose() -> dict | None:
    """The parsed compose file, or None without PyYAML (the tests then read the text)."""
    try:
        import yaml
    except ImportError:
        return None
    return yaml.safe_load(COMPOSE.read_text())


def published(port: object) -> str:
    """The host side of a port mapping, short or long syntax, as 'ip:port' text."""
    if isinstance(port, dict):
        return f"{port.get('host_ip', '')}:{port.get('published', '')}"
    return str(port)


def test_compose_publishes_only_on_loopback():
    """Every published port of every service is bound to 127.0.0.1 (the TWS API and the
    metrics endpoint have no authentication)."""
    text = COMPOSE.read_text()
    # From the text: every short-syntax mapping ("- host:container") names 127.0.0.1.
    mappings = re.findall(r'^\s*-\s*"?([0-9.]*:?\d+:\d+)"?\s*(?:#.*)?$', text, re.MULTILINE)
    assert mappings, "no ports at all: the test would prove nothing"
    for mapping in mappings:
        assert mapping.startswith("127.0.0.1:"), mapping
    compose = load_compose()
    if compose is not None:
        services = compose["services"]
        parsed = [published(p) for svc in services.values() for p in svc.get("ports", [])]
        assert sorted(parsed) == sorted(mappings)
        for mapping in parsed:
            assert mapping.startswith("127.0.0.1:"), mapping


def test_compose_gateway_is_read_only_and_paper_by_default():
    """READ_ONLY_API yes, TRADING_MODE paper unless overridden, password from a secret file,
    and the monitor pointed at the paper relay port by default."""
    compose = load_compose()
    if compose is None:
        text = COMPOSE.read_text()
        assert re.search(r'^\s*READ_ONLY_API:\s*"?yes"?\s*$', text, re.MULTILINE)
        assert re.search(r"^\s*TRADING_MODE:\s*\$\{TRADING_MODE:-paper\}\s*$", text, re.M)
        assert not re.search(r"^\s*TWS_PASSWORD:", text, re.MULTILINE)
        return
    services = compose["services"]
    gateway = services["ib-gateway"]
    assert gateway["image"].startswith("ghcr.io/gnzsnz/ib-gateway")
    environment = gateway["environment"]
    assert environment["READ_ONLY_API"] == "yes"
    assert re.fullmatch(r"\$\{TRADING_MODE:-paper\}|paper", environment["TRADING_MODE"])
    assert "TWS_PASSWORD" not in environment
    assert environment["TWS_PASSWORD_FILE"].startswith("/run/secrets/")
    monitor = services["monitor"]["environment"]
    assert monitor["MARGIN_MONITOR_IB__HOST"] == "ib-gateway"
    assert monitor["TRADING_MODE"] == "${TRADING_MODE:-paper}"  # the port follows it
    # No Apprise URL (a secret) in the environment: the config file is a secret.
    assert not any("NOTIFY" in key for key in monitor)
    assert services["monitor"]["read_only"] is True
    assert services["monitor"]["cap_drop"] == ["ALL"]


# -- compose: the pinned gateway, one switch from paper to live, no restart loop -----------------


def test_compose_pins_the_gateway_image_and_logs_in_again_after_a_2fa_timeout():
    """A versioned tag (not ``stable``/``latest``, which move under a running monitor), and
    IBC's relogin after a 2FA timeout with the restart action it needs."""
    compose = load_compose()
    assert compose is not None, "PyYAML comes with Apprise"
    gateway = compose["services"]["ib-gateway"]
    image, _, tag = gateway["image"].rpartition(":")
    assert image == "ghcr.io/gnzsnz/ib-gateway"
    assert re.fullmatch(r"\d+\.\d+\.\d+[a-z]", tag), tag
    assert gateway["environment"]["RELOGIN_AFTER_TWOFA_TIMEOUT"] == "yes"
    assert gateway["environment"]["TWOFA_TIMEOUT_ACTION"] == "restart"
    assert gateway["restart"] == "always"
    assert compose["services"]["monitor"]["restart"] == "on-failure"


def monitor_entrypoint() -> list[str]:
    """The monitor's entrypoint + command as Compose runs them: ``$$`` is a literal ``$``;
    a single ``$`` would be Compose's own interpolation (the test fails on one)."""
    compose = load_compose()
    assert compose is not None
    service = compose["services"]["monitor"]
    argv = [*service["entrypoint"], *service["command"]]
    for argument in argv:
        assert not re.search(r"(?<!\$)\$(?!\$)", argument.replace("$$", "")), argument
    return [argument.replace("$$", "$") for argument in argv]


def test_one_variable_switches_gateway_and_monitor_from_paper_to_live():
    compose = load_compose()
    assert compose is not None
    gateway = compose["services"]["ib-gateway"]["environment"]
    monitor = compose["services"]["monitor"]["environment"]
    assert gateway["TRADING_MODE"] == monitor["TRADING_MODE"] == "${TRADING_MODE:-paper}"
    assert "MARGIN_MONITOR_IB__PORT" not in monitor  # the entrypoint derives it


def fake_monitor(directory: Path, body: str) -> dict[str, str]:
    """An environment whose PATH finds a ``margin-monitor`` shell script running ``body``."""
    directory.mkdir(exist_ok=True)
    script = directory / "margin-monitor"
    script.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    script.chmod(0o755)
    return {"PATH": f"{directory}:/usr/bin:/bin", "RECORD": str(directory / "record")}


RECORDING = 'echo "$MARGIN_MONITOR_IB__PORT $*" > "$RECORD"; exit "${FAKE_EXIT:-0}"'


@pytest.mark.parametrize(
    ("mode", "monitor_exit", "expected_exit", "port", "said"),
    [
        ("paper", "0", 0, "4004", ""),
        ("live", "0", 0, "4003", ""),
        ("paper", "1", 1, "4004", ""),  # a crash: Docker restarts it (on-failure)
        ("live", "2", 0, "4003", "configuration error (exit status 2); not restarted"),
        ("Live", "0", 0, None, "TRADING_MODE must be paper or live, not 'Live'"),
    ],
)
def test_the_monitor_entrypoint_follows_the_mode_and_stops_on_a_configuration_error(
    tmp_path, mode, monitor_exit, expected_exit, port, said
):
    """Run through a real /bin/sh: the port follows TRADING_MODE, the command's arguments
    reach the monitor, exit 2 becomes 0 (on-failure then leaves it stopped), others pass."""
    environ = fake_monitor(tmp_path / "bin", RECORDING)
    done = subprocess.run(
        monitor_entrypoint(),
        env={**environ, "TRADING_MODE": mode, "FAKE_EXIT": monitor_exit},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == expected_exit, done.stderr
    assert said in done.stderr
    record = Path(environ["RECORD"])
    if port is None:
        assert not record.exists()
    else:
        assert record.read_text() == f"{port} run --config /run/secrets/margin-monitor.toml\n"


def test_the_monitor_entrypoint_forwards_sigterm_for_a_clean_stop(tmp_path):
    """``docker stop`` signals PID 1 (the shell): the monitor gets SIGTERM and its exit
    status (0 after flushing) is the container's."""
    body = (
        'trap \'echo stopped >> "$RECORD"; exit 0\' TERM\n'
        'echo ready > "$RECORD"\n'
        "while :; do sleep 0.05; done"
    )
    environ = fake_monitor(tmp_path / "bin", body)
    record = Path(environ["RECORD"])
    shell = subprocess.Popen(
        monitor_entrypoint(), env={**environ, "TRADING_MODE": "paper"}, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while not (record.exists() and record.read_text().startswith("ready")):
            assert time.monotonic() < deadline, "the monitor never started"
            assert shell.poll() is None
            time.sleep(0.02)
        shell.send_signal(signal.SIGTERM)
        assert shell.wait(timeout=20) == 0
    finally:
        if shell.poll() is None:
            shell.kill()
    assert record.read_text() == "ready\nstopped\n"
