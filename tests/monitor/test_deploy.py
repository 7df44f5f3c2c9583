"""The deployment files under deploy/: the systemd unit verified by systemd itself where
``systemd-analyze`` exists, and the container files checked for what the issue requires."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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
    port = str(monitor["MARGIN_MONITOR_IB__PORT"])
    assert re.fullmatch(r"\$\{MONITOR_IB_PORT:-4004\}|4004", port)
    # No Apprise URL (a secret) in the environment: the config file is a secret.
    assert not any("NOTIFY" in key for key in monitor)
    assert services["monitor"]["read_only"] is True
    assert services["monitor"]["cap_drop"] == ["ALL"]
