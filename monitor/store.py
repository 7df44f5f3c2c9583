"""Durable state in one SQLite file (standard library ``sqlite3``).

What lives here, and why it must survive a restart of the daemon:

* ``alert_state``: the alert lifecycle per (account, rule), so a restart during a breach does not
  announce it again and the next notification ids are the ones the old process would have used.
* ``outbox``: one row per (notification id, target). A notification is written here *before*
  any delivery attempt, and marked ``sent`` only when Apprise reports success; failures are
  retried with backoff until they succeed or ``expire``. The primary key makes ``enqueue``
  idempotent: a duplicate id is never queued (so never sent) twice.
* ``delivery_log``: every attempt's outcome (the soak test and the summary count these).
* ``samples``: key figures per account, at most one row per account per minute, kept for
  ``prune``'s retention (default 400 days). The figure columns hold the *last* value of the
  minute (the summary's "close"); ``<figure>_min`` and ``<figure>_max`` hold the lowest and
  highest of the minute for the :data:`RANGE_FIGURES`, so a cushion that dipped to 8.7% for
  ten seconds is still in the history when the minute closed at 24.6%.
* ``peaks``: the highest NLV per account (the drawdown rule), resettable after a withdrawal.
* ``alert_events`` and ``gaps``: what fired and resolved when, and when the gateway was away.
* ``daemon_state``: small JSON records the daemon keeps up to date for ``status`` (the gateway
  link as it last saw it).

Timestamps are stored as UTC ISO-8601 text of fixed width (``2024-05-01T13:30:00.000000+00:00``,
which sorts like time and reads well in the ``sqlite3`` shell) and returned timezone-aware. A
naive datetime passed in is taken to be UTC. The database runs in WAL mode with a busy timeout;
the schema version is ``PRAGMA user_version``. ``Store(path, readonly=True)`` reads a file
without writing anything to it (``status``): it creates nothing and migrates nothing.
Calls are synchronous and short, meant for the asyncio thread; a lock makes them safe from
other threads too (the notifier records a delivery from the thread that made it, the moment it
succeeded).

When the file cannot be used, every call raises :class:`StateUnavailable` with the reason in
plain words (no space left, read-only, damaged), never a bare ``sqlite3`` error, so the service
can degrade instead of stopping. At the daemon's start :func:`open_state` checks the state
directory (one clear :class:`StateDirError` when it cannot be used) and moves a damaged file
aside, keeping it under a timestamped name, before creating a fresh one; :class:`StateLock`
keeps a second daemon off the same directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from monitor.clock import utc_now
from rules.clock import as_utc, iso_utc, parse_iso
from rules.lifecycle import AlertState, Transition
from rules.model import Severity

SCHEMA_VERSION = 4
LOCK_NAME = "monitor.lock"
DEFAULT_RETENTION = timedelta(days=400)

PENDING = "pending"
SENT = "sent"
EXPIRED = "expired"

SAMPLE_COLUMNS = (
    "net_liquidation",
    "excess_liquidity",
    "cushion",
    "gross_position_value",
    "maint_margin_req",
    "leverage",
    "margin_loan",
    "annual_financing_cost",
)

#: Figures where a lower value is worse (the summary, the charts and ``status`` read their
#: minimum per minute) and where a higher one is (their maximum).
LOW_IS_WORSE = ("net_liquidation", "excess_liquidity", "cushion")
HIGH_IS_WORSE = ("leverage", "net_leverage")
#: Figures whose minimum and maximum per minute are kept (``net_leverage`` has no column of
#: its own: its last value stays in ``extra``).
RANGE_FIGURES = LOW_IS_WORSE + HIGH_IS_WORSE
RANGE_COLUMNS = tuple(f"{name}_{end}" for name in RANGE_FIGURES for end in ("min", "max"))

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS alert_state (
    account         TEXT NOT NULL,
    rule            TEXT NOT NULL,
    severity        TEXT NOT NULL,
    episode_started TEXT,
    episode_peak    TEXT NOT NULL DEFAULT 'ok',
    last_notified   TEXT,
    last_value      REAL,
    sequence        INTEGER NOT NULL DEFAULT 0,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (account, rule)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS outbox (
    notification_id TEXT NOT NULL,
    target          TEXT NOT NULL,
    target_name     TEXT NOT NULL,
    account         TEXT NOT NULL,
    rule            TEXT NOT NULL,
    severity        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL,
    attachments     TEXT NOT NULL DEFAULT '[]',
    created_at      TEXT NOT NULL,
    not_before      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    status          TEXT NOT NULL DEFAULT 'pending',
    lease_until     TEXT,
    sent_at         TEXT,
    PRIMARY KEY (notification_id, target)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);

CREATE TABLE IF NOT EXISTS delivery_log (
    id              INTEGER PRIMARY KEY,
    at              TEXT NOT NULL,
    notification_id TEXT NOT NULL,
    target          TEXT NOT NULL,
    target_name     TEXT NOT NULL,
    severity        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    error           TEXT
);
CREATE INDEX IF NOT EXISTS delivery_log_at ON delivery_log (at);

CREATE TABLE IF NOT EXISTS samples (
    account               TEXT NOT NULL,
    minute                INTEGER NOT NULL,
    at                    TEXT NOT NULL,
    net_liquidation       REAL,
    excess_liquidity      REAL,
    cushion               REAL,
    gross_position_value  REAL,
    maint_margin_req      REAL,
    leverage              REAL,
    margin_loan           REAL,
    annual_financing_cost REAL,
    estimated             INTEGER NOT NULL DEFAULT 0,
    extra                 TEXT,
    PRIMARY KEY (account, minute)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS samples_minute ON samples (minute);

CREATE TABLE IF NOT EXISTS peaks (
    account    TEXT PRIMARY KEY,
    peak       REAL NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS alert_events (
    id                INTEGER PRIMARY KEY,
    at                TEXT NOT NULL,
    account           TEXT NOT NULL,
    rule              TEXT NOT NULL,
    kind              TEXT NOT NULL,
    previous_severity TEXT NOT NULL,
    severity          TEXT NOT NULL,
    value             REAL,
    threshold         REAL,
    message           TEXT,
    action            TEXT,
    estimated         INTEGER NOT NULL DEFAULT 0,
    notification_id   TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS alert_events_account_at ON alert_events (account, at);

CREATE TABLE IF NOT EXISTS gaps (
    id     INTEGER PRIMARY KEY,
    start  TEXT NOT NULL,
    "end"  TEXT,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS gaps_start ON gaps (start);
"""

# v2: who holds a lease (a process id), so a daemon can take back the leases of a process
# that died mid-send instead of waiting for them to lapse.
_SCHEMA_V2 = "ALTER TABLE outbox ADD COLUMN lease_owner INTEGER"

# v3: what the daemon last recorded for ``status`` to read (the gateway link), one JSON record
# per key.
_SCHEMA_V3 = """
CREATE TABLE IF NOT EXISTS daemon_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


def _last_of(name: str) -> str:
    """The SQL of a figure's last value in a row written before v4."""
    if name == "net_leverage":
        return "CASE WHEN json_valid(extra) THEN json_extract(extra, '$.net_leverage') END"
    return name


# v4: the lowest and highest value of each minute beside its last one (before, the last value
# of a minute hid a dip inside it). Rows written before carry their one value as both.
_SCHEMA_V4 = ";\n".join(
    [
        *(f"ALTER TABLE samples ADD COLUMN {column} REAL" for column in RANGE_COLUMNS),
        "UPDATE samples SET "
        + ", ".join(
            f"{name}_{end} = {_last_of(name)}" for name in RANGE_FIGURES for end in ("min", "max")
        ),
    ]
)

_MIGRATIONS = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3, 4: _SCHEMA_V4}

# Anything shaped like a URL: an Apprise URL carries its tokens in it.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}://\S+")
_MAX_ERROR = 500


class StoreError(RuntimeError):
    """The state file cannot be used (e.g. written by a newer version)."""


class StateUnavailable(StoreError):
    """A read or write of the state file failed; ``reason`` says why in plain words and
    ``damaged`` is True when the file itself is corrupt (not a matter of space or rights)."""

    def __init__(self, reason: str, *, damaged: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.damaged = damaged


class StateDirError(StoreError):
    """The state directory or its file cannot be used at all: a configuration problem."""


class StateLocked(StoreError):
    """Another daemon holds the state directory's lock."""


_DAMAGED = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})
_REASONS = {
    "SQLITE_FULL": "no space left on the device",
    "SQLITE_READONLY": "the file or its directory is read-only",
    "SQLITE_CANTOPEN": "the file cannot be opened (no permission, or not a regular file)",
    "SQLITE_PERM": "no permission",
    "SQLITE_IOERR": "disk I/O error",
    "SQLITE_BUSY": "the file is locked by another process",
    "SQLITE_LOCKED": "the file is locked by another process",
    "SQLITE_CORRUPT": "the file is damaged",
    "SQLITE_NOTADB": "the file is not a SQLite database (damaged)",
}


def unavailable(error: sqlite3.Error) -> StateUnavailable:
    """The :class:`StateUnavailable` of a ``sqlite3`` error: its reason in plain words."""
    name = str(getattr(error, "sqlite_errorname", "") or "")
    base = next((key for key in _REASONS if name == key or name.startswith(key + "_")), "")
    reason = _REASONS.get(base) or str(error) or type(error).__name__
    return StateUnavailable(reason, damaged=base in _DAMAGED or "malformed" in str(error))


class OutboxNotification(Protocol):
    """What :meth:`Store.enqueue` reads from a notification (``monitor.notifier.Notification``,
    a frozen dataclass: hence read-only properties here)."""

    @property
    def id(self) -> str: ...
    @property
    def account(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def attachments(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One (notification, target) row of the outbox."""

    notification_id: str
    target: str
    target_name: str
    account: str
    rule: str
    severity: str
    kind: str
    title: str
    body: str
    attachments: tuple[str, ...]
    created_at: datetime
    not_before: datetime
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    status: str
    sent_at: datetime | None = None


def scrub_error(text: str | None) -> str | None:
    """An error message safe to store: URLs blanked, length bounded."""
    if text is None:
        return None
    cleaned = _URL.sub("<url>", str(text))
    return cleaned[:_MAX_ERROR]


#: SQLite's name for a database that lives in memory only (no file, no directory).
IN_MEMORY = ":memory:"


class Store:
    """The daemon's SQLite state file; created (with its directory) on first use, unless
    ``readonly``: then an existing file is only read, whatever its schema version up to this
    one (a table an older version lacks reads as :class:`StateUnavailable`)."""

    def __init__(
        self, path: str | Path, *, busy_timeout: float = 5.0, readonly: bool = False
    ) -> None:
        self.path = Path(path).expanduser()
        if not readonly and str(path) != IN_MEMORY:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _private_file(self.path)
        self._lock = threading.RLock()
        self._depth = 0
        target = f"file:{quote(str(self.path))}?mode=ro" if readonly else str(self.path)
        try:
            self._db = sqlite3.connect(
                target,
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=readonly,
            )
        except sqlite3.Error as error:
            raise unavailable(error) from None
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            if readonly:
                self._known_version()
            else:
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = NORMAL")
                self._migrate()
        except sqlite3.Error as error:
            self._db.close()
            raise unavailable(error) from None
        except BaseException:
            self._db.close()
            raise

    # -- plumbing --------------------------------------------------------------------------

    def _known_version(self) -> int:
        """The file's schema version; :class:`StoreError` when it is newer than this code."""
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}; this version of the monitor "
                f"knows up to {SCHEMA_VERSION} (upgrade the monitor or use another state_dir)"
            )
        return version

    def _migrate(self) -> None:
        with self.transaction():
            version = self._known_version()
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _split_sql(_MIGRATIONS[target]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {target}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes atomically (nestable: only the outermost block commits).

        The service saves an alert state, its event and its outbox rows in one transaction, so
        a crash leaves either all of them or none. A failed write or commit (no space, say)
        rolls the whole block back and raises :class:`StateUnavailable`.
        """
        with self._lock:
            outermost = self._depth == 0
            if outermost:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as error:
                    raise unavailable(error) from None
            self._depth += 1
            try:
                yield
            except sqlite3.Error as error:
                self._depth -= 1
                if outermost:
                    self._rollback()
                raise unavailable(error) from None
            except BaseException:
                self._depth -= 1
                if outermost:
                    self._rollback()
                raise
            self._depth -= 1
            if outermost:
                try:
                    self._db.execute("COMMIT")
                except sqlite3.Error as error:
                    self._rollback()
                    raise unavailable(error) from None

    def _rollback(self) -> None:
        """End the open transaction, whatever state the file is in."""
        with contextlib.suppress(sqlite3.Error):
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def _query(self, sql: str, parameters: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(parameters)).fetchall()
            except sqlite3.Error as error:
                raise unavailable(error) from None

    def verify(self) -> None:
        """Read the whole file once (``PRAGMA quick_check``); :class:`StateUnavailable` with
        ``damaged`` set when it is corrupt."""
        problems = [row[0] for row in self._query("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise StateUnavailable(f"the file is damaged ({problems[0]})", damaged=True)

    def close(self) -> None:
        """Close the file (further calls fail)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The schema version of the open file."""
        return int(self._query("PRAGMA user_version")[0][0])

    # -- alert states ----------------------------------------------------------------------

    def load_alert_states(self) -> dict[tuple[str, str], AlertState]:
        """Every stored alert state, keyed by (account, rule)."""
        rows = self._query("SELECT * FROM alert_state")
        states = {}
        for row in rows:
            state = AlertState(
                account=row["account"],
                rule=row["rule"],
                severity=Severity(row["severity"]),
                episode_started=parse_iso(row["episode_started"]),
                episode_peak=Severity(row["episode_peak"]),
                last_notified=parse_iso(row["last_notified"]),
                last_value=row["last_value"],
                sequence=int(row["sequence"]),
            )
            states[state.key] = state
        return states

    def save_alert_state(self, state: AlertState) -> None:
        """Insert or replace the state of one (account, rule)."""
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO alert_state (account, rule, severity, episode_started,"
                " episode_peak, last_notified, last_value, sequence, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    state.account,
                    state.rule,
                    state.severity.value,
                    iso_utc(state.episode_started),
                    state.episode_peak.value,
                    iso_utc(state.last_notified),
                    _finite(state.last_value),
                    state.sequence,
                    iso_utc(utc_now()),
                ),
            )

    # -- outbox ----------------------------------------------------------------------------

    def enqueue(
        self,
        notification: OutboxNotification,
        target_keys: Mapping[str, str] | Iterable[str],
        *,
        not_before: datetime | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Queue ``notification`` once per target; True when at least one row was new.

        ``target_keys`` is an iterable of stable target keys, or a mapping key -> safe display
        name. An existing (id, target) row is left untouched, whatever its status: this is what
        keeps a duplicate id from ever being sent twice. The first attempt is due at
        ``not_before`` (quiet hours), else ``now``, else the notification's ``created_at``. A
        row not held back has ``not_before = created_at``, so only quiet hours ever hold a row
        by the wall clock (a clock stepped back does not).
        """
        names = dict(target_keys) if isinstance(target_keys, Mapping) else None
        keys = list(names) if names is not None else list(target_keys)
        created = iso_utc(notification.created_at)
        start = iso_utc(not_before or now or notification.created_at)
        held = iso_utc(not_before) if not_before is not None else created
        attachments = json.dumps([str(path) for path in notification.attachments])
        inserted = 0
        with self.transaction():
            for key in keys:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO outbox (notification_id, target, target_name, account,"
                    " rule, severity, kind, title, body, attachments, created_at, not_before,"
                    " attempts, next_attempt_at, status)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, 'pending')",
                    (
                        notification.id,
                        key,
                        (names or {}).get(key, key),
                        notification.account,
                        notification.rule,
                        notification.severity,
                        notification.kind,
                        notification.title,
                        notification.body,
                        attachments,
                        created,
                        held,
                        start,
                    ),
                )
                inserted += cursor.rowcount
        return inserted > 0

    def pending_for(self, target: str, now: datetime) -> list[OutboxItem]:
        """One target's pending rows that are not held back by quiet hours nor leased,
        oldest first, whatever their ``next_attempt_at``: the daemon times its retries itself,
        on the monotonic clock."""
        stamp = iso_utc(now)
        rows = self._query(
            "SELECT * FROM outbox WHERE status = 'pending' AND target = ?"
            " AND (not_before <= created_at OR not_before <= ?)"
            " AND (lease_until IS NULL OR lease_until <= ?)"
            " ORDER BY created_at, notification_id",
            (target, stamp, stamp),
        )
        return [_item(row) for row in rows]

    def due(self, now: datetime, *, ids: Iterable[str] | None = None) -> list[OutboxItem]:
        """Pending rows whose time has come (not held back, not leased), oldest first."""
        stamp = iso_utc(now)
        sql = (
            "SELECT * FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?"
            " AND (not_before <= created_at OR not_before <= ?)"
            " AND (lease_until IS NULL OR lease_until <= ?)"
        )
        parameters: list[Any] = [stamp, stamp, stamp]
        if ids is not None:
            wanted = list(ids)
            if not wanted:
                return []
            sql += f" AND notification_id IN ({', '.join('?' for _ in wanted)})"
            parameters.extend(wanted)
        sql += " ORDER BY created_at, notification_id, target"
        return [_item(row) for row in self._query(sql, parameters)]

    def next_attempt_at(self) -> datetime | None:
        """When the earliest pending row becomes due (``None`` when nothing is pending)."""
        rows = self._query(
            "SELECT MIN(MAX(next_attempt_at, not_before, COALESCE(lease_until, ''))) AS at"
            " FROM outbox WHERE status = 'pending'"
        )
        return parse_iso(rows[0]["at"]) if rows else None

    def claim(self, notification_id: str, target: str, now: datetime, until: datetime) -> bool:
        """Lease a pending row for one delivery attempt; False when another worker holds it.

        A lease keeps two processes sharing this file (the daemon and ``summary --send``) from
        sending the same row at once; it lapses by itself if the holder dies mid-send.
        """
        with self.transaction():
            cursor = self._db.execute(
                "UPDATE outbox SET lease_until = ?, lease_owner = ?"
                " WHERE notification_id = ? AND target = ?"
                " AND status = 'pending' AND (lease_until IS NULL OR lease_until <= ?)",
                (iso_utc(until), os.getpid(), notification_id, target, iso_utc(now)),
            )
            return cursor.rowcount == 1

    def release_orphaned_leases(self) -> int:
        """Take back the leases of processes that no longer run (a daemon killed mid-send),
        so their rows are retried at once; returns how many. Called by the daemon at start,
        when it holds the state lock and so has no lease of its own yet."""
        owners = [
            row[0]
            for row in self._query(
                "SELECT DISTINCT lease_owner FROM outbox"
                " WHERE status = 'pending' AND lease_until IS NOT NULL"
            )
        ]
        gone = [owner for owner in owners if owner is None or not _running(int(owner))]
        released = 0
        with self.transaction():
            for owner in gone:
                cursor = self._db.execute(
                    "UPDATE outbox SET lease_until = NULL, lease_owner = NULL"
                    " WHERE status = 'pending' AND lease_owner IS ?",
                    (owner,),
                )
                released += cursor.rowcount
        return released

    def release(self, notification_id: str, target: str) -> None:
        """Give a claimed row back without counting an attempt (the sender stopped mid-send)."""
        with self.transaction():
            self._db.execute(
                "UPDATE outbox SET lease_until = NULL, lease_owner = NULL"
                " WHERE notification_id = ? AND target = ? AND status = 'pending'",
                (notification_id, target),
            )

    def mark_sent(self, notification_id: str, target: str, now: datetime) -> None:
        """Record a successful delivery."""
        with self.transaction():
            self._db.execute(
                "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                " lease_until = NULL, lease_owner = NULL, last_error = NULL"
                " WHERE notification_id = ? AND target = ?",
                (iso_utc(now), notification_id, target),
            )
            self._log(notification_id, target, now, "sent", None)

    def mark_failed(
        self,
        notification_id: str,
        target: str,
        now: datetime,
        error: str,
        next_attempt_at: datetime,
    ) -> None:
        """Record a failed attempt and when to try again (``error`` is scrubbed of URLs)."""
        safe = scrub_error(error)
        with self.transaction():
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?,"
                " lease_until = NULL, lease_owner = NULL"
                " WHERE notification_id = ? AND target = ?",
                (safe, iso_utc(next_attempt_at), notification_id, target),
            )
            self._log(notification_id, target, now, "failed", safe)

    def defer(self, notification_id: str, target: str, next_attempt_at: datetime) -> None:
        """Postpone a pending row without counting an attempt (its target is failing)."""
        with self.transaction():
            self._db.execute(
                "UPDATE outbox SET next_attempt_at = MAX(next_attempt_at, ?)"
                " WHERE notification_id = ? AND target = ? AND status = 'pending'",
                (iso_utc(next_attempt_at), notification_id, target),
            )

    def expire(self, now: datetime, max_age: timedelta) -> list[OutboxItem]:
        """Give up on pending rows created more than ``max_age`` ago; returns them."""
        cutoff = iso_utc(now - max_age)
        with self.transaction():
            rows = self._query(
                "SELECT * FROM outbox WHERE status = 'pending' AND created_at < ?", (cutoff,)
            )
            for row in rows:
                self._expire_row(row["notification_id"], row["target"], now, None)
        return [_item(row) for row in rows]

    def expire_item(self, notification_id: str, target: str, now: datetime, reason: str) -> None:
        """Give up on one pending row now (e.g. its target is no longer configured)."""
        with self.transaction():
            self._expire_row(notification_id, target, now, scrub_error(reason))

    def _expire_row(
        self, notification_id: str, target: str, now: datetime, reason: str | None
    ) -> None:
        self._db.execute(
            "UPDATE outbox SET status = 'expired', lease_until = NULL,"
            " last_error = COALESCE(?, last_error)"
            " WHERE notification_id = ? AND target = ? AND status = 'pending'",
            (reason, notification_id, target),
        )
        self._log(notification_id, target, now, "expired", reason)

    def _log(
        self, notification_id: str, target: str, now: datetime, outcome: str, error: str | None
    ) -> None:
        self._db.execute(
            "INSERT INTO delivery_log (at, notification_id, target, target_name, severity, kind,"
            " outcome, attempt, error)"
            " SELECT ?, notification_id, target, target_name, severity, kind, ?, attempts, ?"
            " FROM outbox WHERE notification_id = ? AND target = ?",
            (iso_utc(now), outcome, error, notification_id, target),
        )

    def outbox(self, status: str | None = None) -> list[OutboxItem]:
        """Every outbox row (optionally of one status), oldest first."""
        if status is None:
            rows = self._query("SELECT * FROM outbox ORDER BY created_at, notification_id, target")
        else:
            rows = self._query(
                "SELECT * FROM outbox WHERE status = ?"
                " ORDER BY created_at, notification_id, target",
                (status,),
            )
        return [_item(row) for row in rows]

    def pending_count(self) -> int:
        """How many (notification, target) rows still wait for delivery."""
        return int(self._query("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")[0][0])

    def deliveries(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        outcome: str | None = None,
    ) -> list[dict[str, Any]]:
        """The delivery log: every attempt's outcome (``sent``, ``failed``, ``expired``)."""
        sql = "SELECT * FROM delivery_log WHERE 1 = 1"
        parameters: list[Any] = []
        if start is not None:
            sql += " AND at >= ?"
            parameters.append(iso_utc(start))
        if end is not None:
            sql += " AND at < ?"
            parameters.append(iso_utc(end))
        if outcome is not None:
            sql += " AND outcome = ?"
            parameters.append(outcome)
        sql += " ORDER BY id"
        rows = self._query(sql, parameters)
        return [{**dict(row), "at": parse_iso(row["at"])} for row in rows]

    # -- history ---------------------------------------------------------------------------

    def record_sample(self, account: str, now: datetime, figures: Mapping[str, Any]) -> None:
        """Store an evaluation's key figures; one row per account per minute.

        The figure columns take the minute's last value; the ``_min``/``_max`` columns of the
        :data:`RANGE_FIGURES` keep its lowest and highest (``net_leverage`` is read from
        ``figures`` or its ``extra``). ``figures`` holds the :data:`SAMPLE_COLUMNS`,
        ``estimated`` and optionally ``extra`` (a JSON-able dict); any other key is kept
        inside ``extra``.
        """
        moment = as_utc(now)
        minute = int(moment.timestamp() // 60)
        extra = dict(figures.get("extra") or {})
        for key, value in figures.items():
            if key not in SAMPLE_COLUMNS and key not in ("estimated", "extra"):
                extra[key] = value
        values = [_finite(figures.get(column)) for column in SAMPLE_COLUMNS]
        ranges = [_finite(figures.get(name, extra.get(name))) for name in RANGE_FIGURES]
        columns = ", ".join((*SAMPLE_COLUMNS, *RANGE_COLUMNS))
        updates = ", ".join(
            [
                *(f"{column} = excluded.{column}" for column in SAMPLE_COLUMNS),
                *(
                    _widen(column, "MIN" if column.endswith("_min") else "MAX")
                    for column in RANGE_COLUMNS
                ),
            ]
        )
        marks = ", ".join("?" for _ in (*SAMPLE_COLUMNS, *RANGE_COLUMNS))
        with self.transaction():
            self._db.execute(
                f"INSERT INTO samples (account, minute, at, {columns}, estimated, extra)"
                f" VALUES (?, ?, ?, {marks}, ?, ?)"
                f" ON CONFLICT (account, minute) DO UPDATE SET at = excluded.at, {updates},"
                " estimated = excluded.estimated, extra = excluded.extra",
                (
                    account,
                    minute,
                    iso_utc(moment),
                    *values,
                    *(value for value in ranges for _ in ("min", "max")),
                    1 if figures.get("estimated") else 0,
                    json.dumps(extra, default=str) if extra else None,
                ),
            )

    def samples(self, account: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """History rows of one account with ``start <= at < end``, oldest first.

        Each row is a dict: ``account``, ``at`` (aware UTC), the figure columns, the minute's
        ``<figure>_min``/``<figure>_max`` of the :data:`RANGE_FIGURES`, ``estimated`` (bool)
        and ``extra`` (dict).
        """
        low, high = _minute_bounds(start, end)
        rows = self._query(
            "SELECT * FROM samples WHERE account = ? AND minute BETWEEN ? AND ?"
            " AND at >= ? AND at < ? ORDER BY minute",
            (account, low, high, iso_utc(start), iso_utc(end)),
        )
        return [_sample(row) for row in rows]

    def accounts_with_samples(self, start: datetime, end: datetime) -> list[str]:
        """Accounts that have history with ``start <= at < end``, sorted."""
        low, high = _minute_bounds(start, end)
        rows = self._query(
            "SELECT DISTINCT account FROM samples WHERE minute BETWEEN ? AND ?"
            " AND at >= ? AND at < ? ORDER BY account",
            (low, high, iso_utc(start), iso_utc(end)),
        )
        return [row["account"] for row in rows]

    def latest_samples(self) -> list[dict[str, Any]]:
        """Each account's most recent history row (as :meth:`samples` returns rows), by
        account."""
        rows = self._query(
            "SELECT samples.* FROM samples JOIN (SELECT account, MAX(minute) AS minute"
            " FROM samples GROUP BY account) AS last USING (account, minute) ORDER BY account"
        )
        return [_sample(row) for row in rows]

    def financing_cost_near(
        self, account: str, when: datetime, tolerance: timedelta
    ) -> float | None:
        """The stored annual financing cost closest to ``when`` within ``tolerance``, if any."""
        centre = int(as_utc(when).timestamp() // 60)
        spread = int(tolerance.total_seconds() // 60)
        rows = self._query(
            "SELECT annual_financing_cost FROM samples WHERE account = ?"
            " AND minute BETWEEN ? AND ? AND annual_financing_cost IS NOT NULL"
            " ORDER BY ABS(minute - ?), minute LIMIT 1",
            (account, centre - spread, centre + spread, centre),
        )
        return float(rows[0][0]) if rows else None

    def prune(self, older_than: datetime) -> int:
        """Delete history older than ``older_than`` (samples, events, gaps, delivery log and
        finished outbox rows); alert states and peaks are kept. Returns rows deleted."""
        stamp = iso_utc(older_than)
        minute = int(as_utc(older_than).timestamp() // 60)
        deleted = 0
        with self.transaction():
            for sql, parameter in (
                ("DELETE FROM samples WHERE minute < ?", minute),
                ("DELETE FROM alert_events WHERE at < ?", stamp),
                ('DELETE FROM gaps WHERE "end" IS NOT NULL AND "end" < ?', stamp),
                ("DELETE FROM delivery_log WHERE at < ?", stamp),
                ("DELETE FROM outbox WHERE status != 'pending' AND created_at < ?", stamp),
            ):
                deleted += self._db.execute(sql, (parameter,)).rowcount
        return deleted

    # -- peaks -----------------------------------------------------------------------------

    def peak(self, account: str) -> float | None:
        """The highest NLV recorded for ``account`` (``None`` when none or reset)."""
        rows = self._query("SELECT peak FROM peaks WHERE account = ?", (account,))
        return float(rows[0][0]) if rows else None

    def peaks(self) -> dict[str, tuple[float, datetime]]:
        """Every stored peak: account -> (peak NLV, when it was set)."""
        rows = self._query("SELECT account, peak, updated_at FROM peaks ORDER BY account")
        return {row["account"]: (float(row["peak"]), _instant(row["updated_at"])) for row in rows}

    def update_peak(self, account: str, nlv: float | None) -> float | None:
        """Raise the stored peak to ``nlv`` if higher; returns the peak now stored.

        A missing, non-finite or non-positive value leaves the peak as it is.
        """
        value = _finite(nlv)
        if value is None or value <= 0:
            return self.peak(account)
        with self.transaction():
            self._db.execute(
                "INSERT INTO peaks (account, peak, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (account) DO UPDATE SET peak = excluded.peak,"
                " updated_at = excluded.updated_at WHERE excluded.peak > peaks.peak",
                (account, value, iso_utc(utc_now())),
            )
        return self.peak(account)

    def reset_peak(self, account: str, value: float | None = None) -> None:
        """Forget the peak (the next NLV becomes it), or set it to ``value``."""
        with self.transaction():
            if value is None:
                self._db.execute("DELETE FROM peaks WHERE account = ?", (account,))
            else:
                self._db.execute(
                    "INSERT OR REPLACE INTO peaks (account, peak, updated_at) VALUES (?, ?, ?)",
                    (account, float(value), iso_utc(utc_now())),
                )

    # -- alert events and gaps -------------------------------------------------------------

    def record_alert_event(self, transition: Transition) -> None:
        """Remember a lifecycle transition (idempotent on its notification id)."""
        finding = transition.finding
        value = transition.last_value if transition.last_value is not None else finding.value
        with self.transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO alert_events (at, account, rule, kind, previous_severity,"
                " severity, value, threshold, message, action, estimated, notification_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    iso_utc(transition.now),
                    finding.account,
                    finding.rule,
                    transition.kind,
                    transition.previous_severity.value,
                    transition.new_severity.value,
                    _finite(value),
                    _finite(finding.threshold),
                    finding.message,
                    finding.action,
                    1 if finding.estimated else 0,
                    transition.notification_id,
                ),
            )

    def alert_events(
        self, account: str | None, start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """Transitions with ``start <= at < end`` (of one account, or all when ``None``)."""
        sql = "SELECT * FROM alert_events WHERE at >= ? AND at < ?"
        parameters: list[Any] = [iso_utc(start), iso_utc(end)]
        if account is not None:
            sql += " AND account = ?"
            parameters.append(account)
        rows = self._query(sql + " ORDER BY at, id", parameters)
        events = []
        for row in rows:
            event = dict(row)
            event.pop("id", None)
            event["at"] = parse_iso(row["at"])
            event["estimated"] = bool(row["estimated"])
            events.append(event)
        return events

    def record_gap(self, start: datetime, end: datetime | None, reason: str) -> None:
        """Remember a period without data (``end`` ``None`` while it lasts)."""
        with self.transaction():
            self._db.execute(
                'INSERT INTO gaps (start, "end", reason) VALUES (?, ?, ?)',
                (iso_utc(start), iso_utc(end), reason),
            )

    def gaps(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Gaps overlapping ``[start, end)``: ``start``, ``end`` (None while open), ``reason``."""
        rows = self._query(
            'SELECT start, "end", reason FROM gaps WHERE start < ?'
            ' AND ("end" IS NULL OR "end" > ?) ORDER BY start, id',
            (iso_utc(end), iso_utc(start)),
        )
        return [
            {
                "start": parse_iso(row["start"]),
                "end": parse_iso(row["end"]),
                "reason": row["reason"],
            }
            for row in rows
        ]


    # -- what the daemon records for status ------------------------------------------------

    def record_daemon_state(self, key: str, value: Mapping[str, Any], now: datetime) -> None:
        """Keep ``value`` (JSON-able) as the daemon's latest record under ``key``."""
        with self.transaction():
            self._db.execute(
                "INSERT INTO daemon_state (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (key, json.dumps(dict(value), default=str), iso_utc(now)),
            )

    def daemon_state(self, key: str) -> tuple[dict[str, Any], datetime] | None:
        """The record under ``key`` and when it was written (``None``: never)."""
        rows = self._query("SELECT value, updated_at FROM daemon_state WHERE key = ?", (key,))
        if not rows:
            return None
        return json.loads(rows[0]["value"]), _instant(rows[0]["updated_at"])


# -- opening the state at start ----------------------------------------------------------------


def prepare_state_dir(directory: Path) -> None:
    """Create the state directory if needed (mode 0700: the history, alerts and outbox are
    the owner's business; under systemd ``StateDirectoryMode`` says the same) and check a file
    can be created in it; :class:`StateDirError` naming the directory and the problem
    otherwise."""
    advice = "fix it or set [monitor] state_dir"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise StateDirError(
            f"state directory {directory} is a file, not a directory ({advice})"
        ) from None
    except OSError as error:
        raise StateDirError(
            f"state directory {directory} cannot be created: {_os_reason(error)} ({advice})"
        ) from None
    if not directory.is_dir():
        raise StateDirError(f"state directory {directory} is not a directory ({advice})")
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as error:
        raise StateDirError(
            f"state directory {directory} is not writable: {_os_reason(error)} ({advice})"
        ) from None


@dataclass(frozen=True, slots=True)
class StateReset:
    """A damaged state file moved aside at start: where it is kept and what was wrong."""

    kept: Path
    reason: str


def open_state(
    path: Path, now: datetime, *, recover: bool = False
) -> tuple[Store, StateReset | None]:
    """Open the state file at ``path`` for a command that writes it; returns the store and,
    when a damaged file was moved aside, where it went and why.

    ``recover`` (the daemon, holding the state lock): a damaged file (random bytes, a bad
    header, a truncated or malformed database, a directory in its place) is renamed
    ``<name>.damaged-<UTC time>`` with its ``-wal`` and ``-shm`` files, and a fresh file is
    created. Without ``recover`` a damaged file is an error, left as it is. Anything else that
    keeps the file from being used (no space, read-only, no permission) is a
    :class:`StateDirError`.
    """
    prepare_state_dir(path.parent)
    try:
        if path.exists() and not path.is_file():
            raise StateUnavailable("it is not a regular file (damaged)", damaged=True)
        store = Store(path)
        try:
            store.verify()
        except BaseException:
            store.close()
            raise
        return store, None
    except StateUnavailable as error:
        if not (error.damaged and recover):
            hint = "; the daemon moves it aside at its next start" if error.damaged else ""
            reason = error.reason if error.damaged or _has_space(path.parent) else _FULL
            raise StateDirError(f"state file {path} cannot be used: {reason}{hint}") from None
        reset = StateReset(move_aside(path, now), error.reason)
    try:
        return Store(path), reset
    except StateUnavailable as error:
        reason = error.reason if _has_space(path.parent) else _FULL
        raise StateDirError(f"state file {path} cannot be created: {reason}") from None


def move_aside(path: Path, now: datetime) -> Path:
    """Rename a damaged state file (and its WAL companions) out of the way, kept for
    inspection under ``<name>.damaged-<YYYYmmddTHHMMSSZ>``; returns the new path."""
    stamp = as_utc(now).strftime("%Y%m%dT%H%M%SZ")
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists() or source.is_symlink():
            try:
                source.rename(kept.with_name(kept.name + suffix))
            except OSError as error:
                raise StateDirError(
                    f"state file {path} is damaged and cannot be moved aside: {_os_reason(error)}"
                ) from None
    return kept


class StateLock:
    """An exclusive ``flock`` on ``<state_dir>/monitor.lock`` for as long as a daemon runs.

    A second daemon on the same directory would send every alert twice (or fight over the
    gateway's client id): :meth:`acquire` raises :class:`StateLocked` naming the process that
    holds it. The lock goes with the process (the kernel drops it on exit, even after
    SIGKILL), so a stale file never blocks a restart.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StateLocked` (:class:`StateDirError` when the
        directory cannot be used)."""
        prepare_state_dir(self.directory)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise StateDirError(
                f"lock file {self.path} cannot be opened: {_os_reason(error)}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateLocked(
                f"another margin-monitor (PID {holder}) is already running with state "
                f"directory {self.directory}; stop it, or give this one its own "
                "[monitor] state_dir"
            ) from None
        with contextlib.suppress(OSError):  # the PID is for the message only (a full disk)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def lock_holder(directory: Path) -> int | None:
    """The PID of the daemon holding ``directory``'s state lock, ``None`` when none does.

    Read from the kernel's table of locks (``/proc/locks``), without taking the lock even
    for an instant: a look from ``status`` must never make a starting daemon think the
    directory is taken. Without that table, the PID the daemon wrote, if that process lives.
    """
    path = directory / LOCK_NAME
    try:
        info = path.stat()
        written = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    try:
        table = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return int(written) if written.isdigit() and _running(int(written)) else None
    # "1: FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF"; the device numbers of
    # an overlay filesystem differ from what stat says, so the inode alone identifies it.
    for line in table.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].endswith(f":{info.st_ino}"):
            return int(fields[4]) if fields[4].isdigit() else None
    return None


_FULL = _REASONS["SQLITE_FULL"]


def _private_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use 0644 under the usual
    umask; its ``-wal`` and ``-shm`` files take the database's mode), and take group and
    other access away from an existing one of ours. A file this process may not change, or
    cannot create, is left for SQLite to report."""
    with contextlib.suppress(OSError):
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        elif path.is_file() and path.stat().st_mode & 0o077:
            for suffix in ("", "-wal", "-shm"):
                companion = path.with_name(path.name + suffix)
                if companion.exists():
                    companion.chmod(0o600)


def _has_space(directory: Path) -> bool:
    """False when the filesystem of ``directory`` has no block left (SQLite then often says
    only "disk I/O error")."""
    try:
        return shutil.disk_usage(directory).free > 0
    except OSError:
        return True


def _os_reason(error: OSError) -> str:
    return error.strerror.lower() if error.strerror else type(error).__name__


def _running(pid: int) -> bool:
    """True when a process with this id exists and is not this one."""
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- conversions -------------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _minute_bounds(start: datetime, end: datetime) -> tuple[int, int]:
    return int(as_utc(start).timestamp() // 60), int(as_utc(end).timestamp() // 60)


def _instant(text: str) -> datetime:
    """A ``NOT NULL`` time column as an aware datetime."""
    moment = parse_iso(text)
    if moment is None:
        raise StoreError(f"a required time is empty in the state file: {text!r}")
    return moment


def _item(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        notification_id=row["notification_id"],
        target=row["target"],
        target_name=row["target_name"],
        account=row["account"],
        rule=row["rule"],
        severity=row["severity"],
        kind=row["kind"],
        title=row["title"],
        body=row["body"],
        attachments=tuple(json.loads(row["attachments"] or "[]")),
        created_at=_instant(row["created_at"]),
        not_before=_instant(row["not_before"]),
        attempts=int(row["attempts"]),
        next_attempt_at=_instant(row["next_attempt_at"]),
        last_error=row["last_error"],
        status=row["status"],
        sent_at=parse_iso(row["sent_at"]),
    )


def _sample(row: sqlite3.Row) -> dict[str, Any]:
    sample: dict[str, Any] = {"account": row["account"], "at": parse_iso(row["at"])}
    for column in SAMPLE_COLUMNS:
        sample[column] = row[column]
    sample["estimated"] = bool(row["estimated"])
    sample["extra"] = json.loads(row["extra"]) if row["extra"] else {}
    present = row.keys()
    for name in RANGE_FIGURES:
        last = sample["extra"].get(name) if name == "net_leverage" else sample[name]
        for end in ("min", "max"):  # a v3 file read as it is (status) has one value a minute
            column = f"{name}_{end}"
            sample[column] = row[column] if column in present else _finite(last)
    return sample


def worst_in_minute(sample: Mapping[str, Any], name: str) -> float | None:
    """The worst value of ``name`` in a history row's minute: the lowest of a
    :data:`LOW_IS_WORSE` figure, the highest of a :data:`HIGH_IS_WORSE` one."""
    end = "min" if name in LOW_IS_WORSE else "max"
    value = sample.get(f"{name}_{end}")
    if value is None:
        value = sample["extra"].get(name) if name == "net_leverage" else sample.get(name)
    return _finite(value)


def _widen(column: str, function: str) -> str:
    """The upsert of a ``_min``/``_max`` column: the stored and the new value's MIN/MAX, a
    missing one (NULL) not counting."""
    return (
        f"{column} = {function}(COALESCE(samples.{column}, excluded.{column}),"
        f" COALESCE(excluded.{column}, samples.{column}))"
    )


def _split_sql(script: str) -> list[str]:
    """The statements of a schema script (it holds no semicolons inside literals)."""
    return [statement.strip() for statement in script.split(";") if statement.strip()]
