"""Bad input never ends in a traceback: every command prints one message saying what to fix and
exits with the documented status (2 for ``run`` and the others, 3 for ``check``).

The real command line (``monitor.cli.main``) on real files written by the test: a FIFO, bytes
that are not UTF-8, TOML nested thousands deep, Apprise URLs Apprise rejects, unknown time zones,
infinite durations, a log file that is a directory, a metrics port in use, a state directory
that cannot be used, a second daemon, a scenario nested too deeply.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from support import free_port

from monitor.cli import main
from monitor.daemon import warn_if_exposed
from monitor.settings import is_loopback
from monitor.store import StateLock

SECRET = "S3cretT0ken99"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """No MARGIN_MONITOR_* variable from the developer's shell changes the settings."""
    for name in list(os.environ):
        if name.startswith("MARGIN_MONITOR_"):
            monkeypatch.delenv(name)


def config(tmp_path: Path, tables: dict[str, dict[str, str]] | None = None, tail: str = "") -> Path:
    """A config file on a gateway port nothing listens on, with its state directory in
    ``tmp_path``; ``tables`` adds keys given as TOML text (``{"ib": {"timeout": "inf"}}``)
    and ``tail`` raw TOML after them."""
    merged: dict[str, dict[str, str]] = {
        "ib": {"port": str(free_port()), "timeout": "1"},
        "monitor": {"state_dir": f'"{tmp_path / "state"}"'},
        "summary": {"enabled": "false"},
    }
    for table, keys in (tables or {}).items():
        merged.setdefault(table, {}).update(keys)
    text = "".join(
        f"[{table}]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items())
        for table, keys in merged.items()
    )
    path = tmp_path / "config.toml"
    path.write_text(text + tail, encoding="utf-8")
    path.chmod(0o600)
    return path


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    """What the command printed on stderr, checked to be a message and not a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("margin-monitor: ")
    assert SECRET not in err
    return err


def special_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "not-utf8":
        path.write_bytes(b"[ib]\nhost = '\xff\xfe'\n")
    else:
        path.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("fifo", "is not a regular file"),
        ("not-utf8", "is not UTF-8 text"),
        ("deep", "nested too deeply"),
    ],
    ids=["fifo", "not-utf8", "deep"],
)
def test_a_file_that_is_not_a_configuration_is_refused_without_hanging(
    tmp_path, capsys, kind, message
):
    """A FIFO (reading it would wait for a writer for ever), bytes that are not UTF-8, TOML
    nested 5000 deep: one line naming the file, exit 2 (``check``: 3)."""
    path = special_file(tmp_path, kind)
    assert main(["run", "--config", str(path)]) == 2
    assert message in one_line(capsys)
    assert main(["check", "--config", str(path)]) == 3
    assert message in one_line(capsys)


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"monitor": {"timezone": '"Mars/Olympus"'}}, "monitor.timezone: unknown time zone"),
        ({"summary": {"timezone": '"Nowhere/Else"'}}, "summary.timezone: unknown time zone"),
        (
            {"notify": {"quiet_hours": '"22:00-07:00"', "quiet_hours_timezone": '"X/Y"'}},
            "notify.quiet_hours_timezone: unknown time zone",
        ),
        ({"ib": {"reconnect_max_seconds": "inf"}}, "ib.reconnect_max_seconds: Input should be"),
        ({"monitor": {"evaluate_every_seconds": "1e308"}}, "less than or equal to 3600"),
        ({"notify": {"heartbeat_seconds": "nan"}}, "notify.heartbeat_seconds"),
        ({"monitor": {"log_file": '"/tmp"'}}, "monitor.log_file: is a directory"),
    ],
    ids=["zone", "summary-zone", "quiet-zone", "inf", "huge", "nan", "log-file-directory"],
)
def test_a_value_that_could_only_fail_later_is_refused_at_load(tmp_path, capsys, tables, message):
    """Values that used to start the daemon and crash it later name their key at once."""
    assert main(["run", "--config", str(config(tmp_path, tables))]) == 2
    assert message in one_line(capsys)


@pytest.mark.parametrize(
    ("urls", "where"),
    [
        ('["notaurl"]', "notify.urls, entry 1 (***): not a URL Apprise can use"),
        ('["json://127.0.0.1:9/ok", "tgram://"]', "notify.urls, entry 2 (tgram://***)"),
        ('["json://"]', "notify.urls, entry 1 (json://***)"),
        ('[""]', "notify.urls, entry 1 ((empty))"),
        (f'["json://[::1/{SECRET}"]', "notify.urls, entry 1 (json://***)"),
    ],
    ids=["no-scheme", "tgram", "json", "empty", "invalid-host"],
)
def test_an_apprise_url_apprise_rejects_is_a_configuration_error(tmp_path, capsys, urls, where):
    """Apprise's own parser checks every URL at load: one that cannot work stops `run`
    (exit 2) and `check` (exit 3) naming its position, its secret parts masked, instead of
    being retried for 24 hours."""
    path = config(tmp_path, {"notify": {"urls": urls}})
    assert main(["run", "--config", str(path)]) == 2
    assert where in one_line(capsys)
    assert main(["check", "--config", str(path)]) == 3
    assert where in one_line(capsys)


def test_a_routed_target_is_named_by_its_entry_and_name(tmp_path, capsys):
    """A bad ``[[notify.targets]]`` entry is named by its place and its name."""
    path = config(tmp_path, tail=f'[[notify.targets]]\nname = "phone"\nurl = "pover://{SECRET}"\n')
    assert main(["notify-test", "--config", str(path)]) == 2
    assert "notify.targets, entry 1 'phone' (pover://***)" in one_line(capsys)


def test_a_metrics_port_in_use_is_a_configuration_error(tmp_path, capsys):
    """`run` with ``[metrics] port`` taken by another process: one line naming the port,
    exit 2, before anything runs."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = config(tmp_path, {"metrics": {"port": str(port)}})
        assert main(["run", "--no-notify", "--config", str(path)]) == 2
    assert f"[metrics] port {port} on 127.0.0.1 cannot be bound" in one_line(capsys)


def test_an_unusable_state_directory_and_a_second_daemon_are_one_line_each(tmp_path, capsys):
    """A file where the state directory should be: one line, exit 2. The directory locked
    by another daemon (here this process holds the lock): one line naming its PID, exit 2."""
    path = config(tmp_path)
    (tmp_path / "state").write_text("in the way")
    assert main(["run", "--no-notify", "--config", str(path)]) == 2
    assert "is a file, not a directory" in one_line(capsys)
    assert main(["reset-peak", "--account", "DU1", "--config", str(path)]) == 2
    assert "is a file, not a directory" in one_line(capsys)
    (tmp_path / "state").unlink()
    with StateLock(tmp_path / "state"):
        assert main(["run", "--no-notify", "--config", str(path)]) == 2
    assert f"(PID {os.getpid()}) is already running" in one_line(capsys)


def test_a_scenario_nested_too_deeply_is_one_line(tmp_path, capsys):
    """`simulate-gateway` with a scenario file nested 3000 deep: one line, exit 2."""
    scenario = tmp_path / "deep.toml"
    scenario.write_text("steps = " + "[" * 3000 + "]" * 3000 + "\n")
    assert main(["simulate-gateway", "--scenario", str(scenario), "--port", "0"]) == 2
    assert "nested too deeply" in one_line(capsys)


def test_a_listener_beyond_loopback_is_logged_with_the_risk():
    """Loopback addresses bind quietly; any other address or a host name gets a warning that
    names what is exposed."""
    assert is_loopback("127.0.0.1") and is_loopback("::1")
    assert is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not (is_loopback("0.0.0.0") or is_loopback("::") or is_loopback("monitor"))
    with capture_logs() as logs:
        warn_if_exposed("127.0.0.1", "metrics endpoint")
        warn_if_exposed("0.0.0.0", "metrics endpoint")
    (warning,) = logs
    assert warning["log_level"] == "warning" and warning["host"] == "0.0.0.0"
    assert "without authentication" in warning["risk"]
