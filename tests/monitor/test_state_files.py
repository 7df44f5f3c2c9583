"""The state file and its directory when they go wrong: damaged files moved aside, unusable
directories refused in one line, one daemon per directory, leases of dead processes taken back.

Real SQLite files damaged by the test (random bytes, a truncated database, a bad header, a
directory in the file's place), a read-only bind mount where the machine allows mounting one.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.notifier import Notification
from monitor.store import (
    _MIGRATIONS,
    LOCK_NAME,
    SCHEMA_VERSION,
    StateDirError,
    StateLock,
    StateLocked,
    StateUnavailable,
    Store,
    _split_sql,
    open_state,
)

T0 = datetime(2024, 6, 3, 13, 30, tzinfo=UTC)


def history(path: Path, rows: int = 400) -> None:
    """A state file with some history in it (several pages, so truncation bites)."""
    with Store(path) as store:
        for minute in range(rows):
            store.record_sample(
                "DU1", T0 + timedelta(minutes=minute), {"net_liquidation": 1e5, "extra": {}}
            )
    with sqlite3.connect(path) as db:  # fold the WAL into the file
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(50_000))


def truncated(path: Path) -> None:
    history(path)
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size // 2)


def bad_header(path: Path) -> None:
    history(path)
    with path.open("r+b") as handle:
        handle.write(b"Not an SQLite db")


def a_directory(path: Path) -> None:
    path.mkdir()
    (path / "something").write_text("x")


DAMAGE = {
    "random-bytes": random_bytes,
    "truncated": truncated,
    "bad-header": bad_header,
    "a-directory": a_directory,
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_state_file_is_moved_aside_and_a_fresh_one_created(tmp_path, damage):
    """For the daemon (``recover``): the damaged file is kept under a timestamped name, with
    its WAL companions, and a fresh, empty, current-schema file takes its place; the reset
    says where and why. Other commands get one clear error and leave the file alone."""
    path = tmp_path / "state" / "monitor.sqlite3"
    path.parent.mkdir()
    DAMAGE[damage](path)
    with pytest.raises(StateDirError, match=f"state file {path} cannot be used: .*damaged"):
        open_state(path, T0)
    assert path.exists(), "only the daemon moves it"

    store, reset = open_state(path, T0, recover=True)
    with store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.pending_count() == 0
    assert reset is not None
    assert reset.kept == path.with_name("monitor.sqlite3.damaged-20240603T133000Z")
    assert reset.kept.exists() and "damaged" in reset.reason
    assert path.is_file()


def test_a_sound_file_is_opened_as_it_is(tmp_path):
    """No reset for a good file, and its history is still there."""
    path = tmp_path / "monitor.sqlite3"
    history(path, rows=3)
    store, reset = open_state(path, T0, recover=True)
    with store:
        assert reset is None
        assert len(store.samples("DU1", T0, T0 + timedelta(hours=1))) == 3


def test_a_version_1_file_gains_the_lease_owner_column(tmp_path):
    """A file written by the first version (schema 1) is migrated in place."""
    path = tmp_path / "monitor.sqlite3"
    with sqlite3.connect(path) as db:
        for statement in _split_sql(_MIGRATIONS[1]):
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.release_orphaned_leases() == 0


def read_only_bind(directory: Path) -> None:
    """Remount ``directory`` read-only on itself, or skip saying why (root ignores modes, so
    only a read-only mount makes a directory unwritable for it)."""
    directory.mkdir()
    for command in (
        ["mount", "--bind", str(directory), str(directory)],
        ["mount", "-o", "remount,ro,bind", str(directory)],
    ):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)
            pytest.skip(f"a read-only mount is not allowed here ({done.stderr.strip()})")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("file", "is a file, not a directory"),
        ("proc", "cannot be created"),
        ("read-only", "is not writable: read-only file system"),
    ],
    ids=["a-file-in-its-place", "cannot-be-created", "read-only"],
)
def test_a_state_directory_that_cannot_be_used_is_one_clear_error(tmp_path, setup, message):
    """A file where the directory should be, a directory that cannot be created, a read-only
    one: :class:`StateDirError` naming the directory and the problem (the CLI prints it as
    one line and exits 2)."""
    directory = tmp_path / "state"
    if setup == "file":
        directory.write_text("not a directory")
    elif setup == "proc":
        directory = Path("/proc/margin-monitor-state")
    else:
        read_only_bind(directory)
    try:
        with pytest.raises(StateDirError) as caught:
            open_state(directory / "monitor.sqlite3", T0, recover=True)
        assert str(directory) in str(caught.value) and message in str(caught.value)
        with pytest.raises(StateDirError):
            StateLock(directory).acquire()
    finally:
        if setup == "read-only":
            subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


def test_a_second_lock_on_one_directory_is_refused_naming_the_holder(tmp_path):
    """The lock file names the holder's PID; a second holder (here in the same process: flock
    locks belong to the open file) is refused with that PID; released, it can be taken."""
    directory = tmp_path / "state"
    with StateLock(directory):
        assert (directory / LOCK_NAME).read_text().strip() == str(os.getpid())
        with pytest.raises(StateLocked, match=f"another margin-monitor \\(PID {os.getpid()}\\)"):
            StateLock(directory).acquire()
    with StateLock(directory):
        pass


def note(notification_id: str) -> Notification:
    return Notification(notification_id, "DU1", "cushion", "critical", "fired", "t", "b", T0)


def test_leases_of_dead_processes_are_taken_back_and_live_ones_kept(tmp_path):
    """A row leased by a process that no longer runs (a daemon killed mid-send) is free again
    at the next start; one leased by a running process (``summary --send`` beside the daemon)
    is left to it."""
    finished = subprocess.run(["true"], check=True)
    assert finished.returncode == 0
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        with Store(tmp_path / "monitor.sqlite3") as store:
            for notification_id, owner in (("n-dead", dead.pid), ("n-alive", alive.pid)):
                store.enqueue(note(notification_id), ["t"], now=T0)
                assert store.claim(notification_id, "t", T0, T0 + timedelta(hours=1))
                store._db.execute(
                    "UPDATE outbox SET lease_owner = ? WHERE notification_id = ?",
                    (owner, notification_id),
                )
            assert store.release_orphaned_leases() == 1
            assert [row.notification_id for row in store.pending_for("t", T0)] == ["n-dead"]
    finally:
        alive.kill()
        alive.wait()


def test_a_failed_write_rolls_back_and_says_why_in_plain_words(tmp_path):
    """A write that fails inside a transaction leaves nothing half-done and raises
    :class:`StateUnavailable` with a reason a person can act on."""
    path = tmp_path / "monitor.sqlite3"
    with Store(path) as store:
        store._db.execute("PRAGMA query_only = ON")  # every write now fails, like a read-only file
        with pytest.raises(StateUnavailable) as caught, store.transaction():
            store.enqueue(note("n1"), ["t"], now=T0)
        assert caught.value.reason and not caught.value.damaged
        store._db.execute("PRAGMA query_only = OFF")
        assert store.outbox() == []
        store.enqueue(note("n1"), ["t"], now=T0)  # the connection is usable again
        assert store.pending_count() == 1
