"""Configuration: TOML plus environment overrides, and clear errors that never echo secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.settings import ConfigError, insecure_permissions_warning, load_settings

SECRET = "xoxb-SECRET-TOKEN-1234"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """Tests start without any MARGIN_MONITOR_* variable from the developer's shell."""
    import os

    for name in list(os.environ):
        if name.startswith("MARGIN_MONITOR_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_defaults_without_a_file():
    """No file: the documented defaults (TWS paper port, every managed account)."""
    settings = load_settings(None)
    assert settings.ib.port == 7497
    assert settings.ib.accounts == []
    assert settings.ib.host == "127.0.0.1"
    assert settings.notify.urls == []
    assert settings.rules.cushion.warning == pytest.approx(0.20)
    assert settings.rules.cushion.critical == pytest.approx(0.10)


def test_file_values_and_environment_overrides(tmp_path, monkeypatch):
    """The environment wins over the file, nested keys use a double underscore."""
    path = write(
        tmp_path,
        '[ib]\nport = 4002\nclient_id = 9\naccounts = ["DU1", "DU2"]\n'
        f'[notify]\nurls = ["json://127.0.0.1:9/", "slack://{SECRET}/A/B"]\n'
        "[rules.cushion]\nwarning = 0.25\n",
    )
    monkeypatch.setenv("MARGIN_MONITOR_IB__PORT", "4001")
    settings = load_settings(path)
    assert settings.ib.port == 4001
    assert settings.ib.client_id == 9
    assert settings.ib.accounts == ["DU1", "DU2"]
    assert settings.rules.cushion.warning == pytest.approx(0.25)
    assert len(settings.notify.all_targets()) == 2
    assert any(SECRET in secret for secret in settings.secrets())
    assert SECRET not in repr(settings)


def test_config_path_from_environment(tmp_path, monkeypatch):
    """MARGIN_MONITOR_CONFIG names the file when --config is not given."""
    path = write(tmp_path, "[ib]\nport = 4002\n")
    monkeypatch.setenv("MARGIN_MONITOR_CONFIG", str(path))
    assert load_settings(None).ib.port == 4002


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[ib]\nport = 70000\n", "ib.port", "less than or equal to 65535"),
        ("[ib]\nprot = 4002\n", "ib.prot", "unknown key"),
        ("[ib]\nrestart_window = '25:00-01:00'\n", "ib.restart_window", "HH:MM-HH:MM"),
        ("[notify]\nquiet_hours = 'tonight'\n", "notify.quiet_hours", "HH:MM-HH:MM"),
        ("[rules.cushion]\nwarning = 'high'\n", "rules.cushion.warning", "number"),
        ("[rules.nonsense]\nenabled = true\n", "rules.nonsense", "unknown key"),
        ("[summary]\ntime = '5pm'\n", "summary.time", "HH:MM"),
    ],
    ids=["port-range", "typo", "window", "quiet-hours", "rule-type", "unknown-rule", "time"],
)
def test_invalid_values_name_the_key(tmp_path, text, key, problem):
    """Each problem names its key and says what is wrong."""
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    message = str(caught.value)
    assert key in message
    assert problem in message


def test_errors_never_echo_secrets(tmp_path):
    """A malformed notify section is reported without the token it holds."""
    path = write(tmp_path, f'[notify]\nurls = "slack://{SECRET}/A/B"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert "notify.urls" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_broken_toml_and_missing_file(tmp_path):
    """Syntax errors and missing files are one-line messages naming the file."""
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[ib\nport = 1\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")


def test_world_readable_file_with_secrets_gets_a_warning(tmp_path):
    """A config holding tokens that other users can read is flagged with the fix."""
    path = write(tmp_path, f'[notify]\nurls = ["slack://{SECRET}/A/B"]\n')
    assert insecure_permissions_warning(path) is None
    path.chmod(0o644)
    warning = insecure_permissions_warning(path)
    assert warning is not None and "chmod 600" in warning
    assert SECRET not in warning


@pytest.mark.parametrize(
    "text",
    [
        f'[web]\ntoken = "{SECRET}"\n',
        f'[notify]\nurls = ["json://127.0.0.1:8080/hooks/{SECRET}"]\n',
        f'[[notify.targets]]\nurl = "tgram://{SECRET}/12345"\n',
        f'[notify]\nheartbeat_url = "https://me:{SECRET}@hc.example/ping/abc"\n',
        f'[notify]\nurls = ["json://127.0.0.1:8080/?token={SECRET}"]\n',
    ],
)
def test_a_readable_file_holding_a_secret_is_flagged(tmp_path, text):
    """A token, a URL with a credential in its path, host, user or query, the web token."""
    path = write(tmp_path, text)
    path.chmod(0o644)
    warning = insecure_permissions_warning(path)
    assert warning is not None and "chmod 600" in warning and SECRET not in warning


@pytest.mark.parametrize(
    "text",
    [
        "[ib]\nport = 4002\n",
        '[notify]\nurls = ["json://127.0.0.1:8080/", "console://"]\n',
        '[notify]\nheartbeat_url = "https://hc-ping.com/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"\n',
    ],
)
def test_a_readable_file_without_secrets_is_not_flagged(tmp_path, monkeypatch, text):
    """Readable by all but holding no secret of its own: no warning, even when the secrets
    are set in the environment (a heartbeat URL's uuid is an address, not a credential)."""
    monkeypatch.setenv("MARGIN_MONITOR_NOTIFY__URLS", f"slack://{SECRET}/A/B")
    monkeypatch.setenv("MARGIN_MONITOR_WEB__TOKEN", SECRET)
    path = write(tmp_path, text)
    path.chmod(0o644)
    assert load_settings(path).secrets()  # the environment holds secrets...
    assert insecure_permissions_warning(path) is None  # ...the file does not


@pytest.mark.slow
def test_cli_reports_config_errors_without_traceback(tmp_path):
    """`check` with a bad file: exit 3 (unknown), one message on stderr, no traceback."""
    path = write(tmp_path, f'[ib]\nport = "x"\n[notify]\nurls = ["slack://{SECRET}/A/B"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert "ib.port" in result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_environment_takes_json_for_lists_and_nested_tables(monkeypatch):
    """Lists and the deeper [rules.<id>] tables can be given as JSON in the environment."""
    monkeypatch.setenv("MARGIN_MONITOR_IB__ACCOUNTS", '["U1", "U2"]')
    monkeypatch.setenv(
        "MARGIN_MONITOR_RULES__ALLOCATION_DRIFT__TARGETS", '{"VOO": 0.5, "BND": 0.5}'
    )
    settings = load_settings(None)
    assert settings.ib.accounts == ["U1", "U2"]
    assert settings.rules.allocation_drift.targets == {"VOO": 0.5, "BND": 0.5}
