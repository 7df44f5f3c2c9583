"""The settings as operators give and read them: lists in the environment the way
``APPRISE_URLS`` takes them, a clear word when a variable cannot be read, ``config show``'s
sources and masks, ``check``'s own client id; and ``status`` on files of other ages."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
from support import write_state

from monitor.settings import ConfigError, describe_settings, load_settings
from monitor.status import read_status

SECRET = "S3cretT0ken99"


pytestmark = pytest.mark.usefixtures("clean_environment")


@pytest.mark.parametrize(
    "text",
    [
        "json://127.0.0.1:1/a,json://127.0.0.1:1/b",
        "json://127.0.0.1:1/a, json://127.0.0.1:1/b",
        "json://127.0.0.1:1/a json://127.0.0.1:1/b",
        '["json://127.0.0.1:1/a", "json://127.0.0.1:1/b"]',
    ],
    ids=["commas", "commas-and-spaces", "spaces", "json"],
)
def test_a_list_key_takes_apprise_urls_style_text_or_json(monkeypatch, text):
    """``MARGIN_MONITOR_NOTIFY__URLS`` takes the two URLs separated by commas, spaces or both,
    or as a JSON list: the same two targets every time."""
    monkeypatch.setenv("MARGIN_MONITOR_NOTIFY__URLS", text)
    urls = [url.get_secret_value() for url in load_settings().notify.urls]
    assert urls == ["json://127.0.0.1:1/a", "json://127.0.0.1:1/b"]


def test_every_list_key_at_any_depth_takes_it(monkeypatch):
    """Accounts, a rule's symbols and its what-if moves (three levels deep) read the same
    way; an empty value is an empty list."""
    monkeypatch.setenv("MARGIN_MONITOR_IB__ACCOUNTS", "U1234567 U7654321")
    monkeypatch.setenv("MARGIN_MONITOR_RULES__CASH_RESERVE__RESERVE_SYMBOLS", "SGOV,BIL")
    monkeypatch.setenv("MARGIN_MONITOR_RULES__DISTANCE_TO_LIQUIDATION__MOVES", "0.05, 0.3")
    monkeypatch.setenv("MARGIN_MONITOR_NOTIFY__URLS", "")
    settings = load_settings()
    assert settings.ib.accounts == ["U1234567", "U7654321"]
    assert settings.rules.cash_reserve.reserve_symbols == ("SGOV", "BIL")
    assert settings.rules.distance_to_liquidation.moves == (0.05, 0.3)
    assert settings.notify.urls == []


@pytest.mark.parametrize(
    ("name", "value", "form"),
    [
        ("MARGIN_MONITOR_NOTIFY__URLS", '["json://a"', "a JSON list"),
        ("MARGIN_MONITOR_MONITOR__MAINTENANCE_RATES", "VOO=0.3", "a JSON table"),
        ("MARGIN_MONITOR_NOTIFY__TARGETS", "json://a", "a JSON list of tables"),
    ],
    ids=["broken-json-list", "table", "list-of-tables"],
)
def test_a_variable_that_cannot_be_read_names_itself_and_the_form(monkeypatch, name, value, form):
    """A value that is neither JSON nor a separated list names the variable and what it
    takes (pydantic-settings alone named only the section and its own source class)."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert str(refused.value).startswith(f"{name} cannot be read: it takes {form}")


def test_config_show_gives_each_source_and_masks_every_secret(tmp_path, monkeypatch):
    """Defaults, the file and the environment (a variable of its own, or a JSON table above
    the key) are told apart; URLs keep only their scheme, the web token is ``***``."""
    path = tmp_path / "config.toml"
    path.write_text(
        f'[ib]\nport = 4002\n[notify]\nurls = ["tgram://123:{SECRET}/9"]\n'
        f'heartbeat_url = "https://hc-ping.com/{SECRET}"\n'
        f'[web]\nport = 8765\nhost = "0.0.0.0"\ntoken = "{SECRET}-{SECRET}"\n'
    )
    monkeypatch.setenv("MARGIN_MONITOR_IB__CLIENT_ID", "21")
    monkeypatch.setenv("MARGIN_MONITOR_RULES__CUSHION", '{"warning": 0.25}')
    shown = {entry.key: entry for entry in describe_settings(path)}
    assert (shown["ib.port"].value, shown["ib.port"].source) == (4002, "file")
    assert (shown["ib.host"].value, shown["ib.host"].source) == ("127.0.0.1", "default")
    client = shown["ib.client_id"]
    assert (client.value, client.source, client.variable) == (
        21,
        "environment",
        "MARGIN_MONITOR_IB__CLIENT_ID",
    )
    assert shown["rules.cushion.warning"].variable == "MARGIN_MONITOR_RULES__CUSHION"
    assert shown["rules.cushion.critical"].source == "default"
    assert shown["notify.urls"].value == ["tgram://***"]
    assert shown["notify.heartbeat_url"].value == "https://***"
    assert shown["web.token"].value == "***"
    assert SECRET not in repr([entry.to_dict() for entry in shown.values()])


def test_check_has_its_own_client_id(tmp_path):
    """By default check connects as the daemon's id plus one; [ib] check_client_id sets it."""
    path = tmp_path / "config.toml"
    path.write_text("[ib]\nclient_id = 17\n")
    assert load_settings(path).ib.check_id == 18
    path.write_text("[ib]\nclient_id = 17\ncheck_client_id = 99\n")
    assert load_settings(path).ib.check_id == 99


def test_status_reads_a_file_written_before_the_link_was_recorded(tmp_path):
    """A state file of schema 2 (before the daemon recorded its gateway link) still reads:
    figures, alerts, outbox and peaks, the link as not recorded; the file stays at schema 2
    (status migrates nothing)."""
    (tmp_path / "state").mkdir()
    database = write_state(tmp_path / "state", datetime.now(UTC))
    with sqlite3.connect(database) as db:
        db.execute("DROP TABLE daemon_state")
        db.execute("PRAGMA user_version = 2")
    path = tmp_path / "config.toml"
    path.write_text(f'[monitor]\nstate_dir = "{tmp_path / "state"}"\n')
    status = read_status(load_settings(path), datetime.now(UTC))
    assert status["gateway"] is None
    assert [a["account"] for a in status["accounts"]] == ["DU1"]
    assert len(status["alerts"]) == 1 and len(status["outbox"]) == 1
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
