"""The state directory is created 0700 and the database 0600 (with its WAL companions) when
the monitor runs outside systemd, under the usual umask 022; a database left readable by
others by an older version is tightened. Real files, real modes."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.store import IN_MEMORY, StateLock, Store, open_state

NOW = datetime(2026, 6, 15, 14, 30, tzinfo=UTC)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """Umask 022, as a login shell has it (systemd's unit sets 0077 itself)."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("usual_umask")
def test_a_new_state_directory_is_0700_and_its_database_0600(tmp_path):
    state = tmp_path / "home" / "state" / "margin-monitor"
    with StateLock(state):
        store, reset = open_state(state / "monitor.sqlite3", NOW, recover=True)
        with store:
            assert reset is None
            store.record_sample("DU1", NOW, {"cushion": 0.3})  # the WAL file exists now
            assert mode(state) == 0o700
            assert mode(state / "monitor.sqlite3") == 0o600
            assert mode(state / "monitor.sqlite3-wal") == 0o600
            assert mode(state / "monitor.sqlite3-shm") == 0o600
            assert mode(state / "monitor.lock") == 0o600


@pytest.mark.usefixtures("usual_umask")
def test_an_existing_database_readable_by_others_is_tightened(tmp_path):
    path = tmp_path / "monitor.sqlite3"
    with Store(path) as store:
        store.record_sample("DU1", NOW, {"cushion": 0.3})
    path.chmod(0o644)
    with Store(path) as store:
        assert mode(path) == 0o600
        assert len(store.samples("DU1", NOW, NOW.replace(minute=31))) == 1


@pytest.mark.usefixtures("usual_umask")
def test_status_reading_the_file_changes_no_mode(tmp_path):
    """A read-only look (``status``) creates nothing and changes nothing."""
    path = tmp_path / "monitor.sqlite3"
    with Store(path):
        pass
    path.chmod(0o640)
    with Store(path, readonly=True):
        pass
    assert mode(path) == 0o640


def test_an_in_memory_store_leaves_no_file_behind(tmp_path, monkeypatch):
    """``check`` keeps its state in memory: SQLite's ``:memory:`` must not become a file named
    ":memory:" in the directory the operator ran the command from."""
    monkeypatch.chdir(tmp_path)
    with Store(IN_MEMORY) as store:
        assert store.outbox() == []
    assert list(tmp_path.iterdir()) == []
