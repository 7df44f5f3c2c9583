"""Durable state in one SQLite file (standard library ``sqlite3``).

What lives here, and why it must survive a restart of the daemon:

* ``alert_state``: the alert lifecycle per (account, rule), so a restart during a breach does not
  announce it again and the next notification ids are the ones the old process would have used.
* ``outbox``: one row per (notification id, target). A notification is written here *before*
  any delivery attempt, and marked ``sent`` only when Apprise reports success; failures are
  retried with backoff until they succeed or ``expire``. The primary key makes ``enqueue``
  idempotent: a duplicate id is never queued (so never sent) twice.
* ``delivery_log``: every attempt's outcome (the soak test and the summary count these).
* ``samples``: key figures per account, at most one row per account per minute (the *last*
  value in a minute wins: the row then describes the end of that minute, which is what the
  summary's "close" and charts need), kept for ``prune``'s retention (default 400 days).
* ``peaks``: the highest NLV per account (the drawdown rule), resettable after a withdrawal.
* ``alert_events`` and ``gaps``: what fired and resolved when, and when the gateway was away.

Timestamps are stored as UTC ISO-8601 text of fixed width (``2024-05-01T13:30:00.000000+00:00``,
which sorts like time and reads well in the ``sqlite3`` shell) and returned timezone-aware. A
naive datetime passed in is taken to be UTC. The database runs in WAL mode with a busy timeout;
the schema version is ``PRAGMA user_version``. Calls are synchronous and short, meant for the
asyncio thread; a lock makes them safe from other threads too.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from monitor.clock import utc_now
from rules.clock import as_utc, iso_utc, parse_iso
from rules.lifecycle import AlertState, Transition
from rules.model import Severity

SCHEMA_VERSION = 1
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

_MIGRATIONS = {1: _SCHEMA_V1}

# Anything shaped like a URL: an Apprise URL carries its tokens in it.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}://\S+")
_MAX_ERROR = 500


class StoreError(RuntimeError):
    """The state file cannot be used (e.g. written by a newer version)."""


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


class Store:
    """The daemon's SQLite state file; created (with its directory) on first use."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        self._db = sqlite3.connect(
            str(self.path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

    # -- plumbing --------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self.transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}; this version of the monitor "
                    f"knows up to {SCHEMA_VERSION} (upgrade the monitor or use another state_dir)"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _split_sql(_MIGRATIONS[target]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {target}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes atomically (nestable: only the outermost block commits).

        The service saves an alert state, its event and its outbox rows in one transaction, so
        a crash leaves either all of them or none.
        """
        with self._lock:
            if self._depth == 0:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if self._depth == 0:
                self._db.execute("COMMIT")

    def _query(self, sql: str, parameters: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(parameters)).fetchall()

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
        ``not_before`` (quiet hours), else ``now``, else the notification's ``created_at``.
        """
        names = dict(target_keys) if isinstance(target_keys, Mapping) else None
        keys = list(names) if names is not None else list(target_keys)
        created = iso_utc(notification.created_at)
        start = iso_utc(not_before or now or notification.created_at)
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
                        start,
                        start,
                    ),
                )
                inserted += cursor.rowcount
        return inserted > 0

    def due(self, now: datetime, *, ids: Iterable[str] | None = None) -> list[OutboxItem]:
        """Pending rows whose time has come (not held back, not leased), oldest first."""
        stamp = iso_utc(now)
        sql = (
            "SELECT * FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?"
            " AND not_before <= ? AND (lease_until IS NULL OR lease_until <= ?)"
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
                "UPDATE outbox SET lease_until = ? WHERE notification_id = ? AND target = ?"
                " AND status = 'pending' AND (lease_until IS NULL OR lease_until <= ?)",
                (iso_utc(until), notification_id, target, iso_utc(now)),
            )
            return cursor.rowcount == 1

    def release(self, notification_id: str, target: str) -> None:
        """Give a claimed row back without counting an attempt (the sender stopped mid-send)."""
        with self.transaction():
            self._db.execute(
                "UPDATE outbox SET lease_until = NULL"
                " WHERE notification_id = ? AND target = ? AND status = 'pending'",
                (notification_id, target),
            )

    def mark_sent(self, notification_id: str, target: str, now: datetime) -> None:
        """Record a successful delivery."""
        with self.transaction():
            self._db.execute(
                "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                " lease_until = NULL, last_error = NULL"
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
                " lease_until = NULL WHERE notification_id = ? AND target = ?",
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
        """Store an evaluation's key figures; one row per account per minute, the last wins.

        ``figures`` holds the :data:`SAMPLE_COLUMNS`, ``estimated`` and optionally ``extra``
        (a JSON-able dict); any other key is kept inside ``extra``.
        """
        moment = as_utc(now)
        minute = int(moment.timestamp() // 60)
        extra = dict(figures.get("extra") or {})
        for key, value in figures.items():
            if key not in SAMPLE_COLUMNS and key not in ("estimated", "extra"):
                extra[key] = value
        values = [_finite(figures.get(column)) for column in SAMPLE_COLUMNS]
        columns = ", ".join(SAMPLE_COLUMNS)
        updates = ", ".join(f"{column} = excluded.{column}" for column in SAMPLE_COLUMNS)
        with self.transaction():
            self._db.execute(
                f"INSERT INTO samples (account, minute, at, {columns}, estimated, extra)"
                f" VALUES (?, ?, ?, {', '.join('?' for _ in SAMPLE_COLUMNS)}, ?, ?)"
                f" ON CONFLICT (account, minute) DO UPDATE SET at = excluded.at, {updates},"
                " estimated = excluded.estimated, extra = excluded.extra",
                (
                    account,
                    minute,
                    iso_utc(moment),
                    *values,
                    1 if figures.get("estimated") else 0,
                    json.dumps(extra, default=str) if extra else None,
                ),
            )

    def samples(self, account: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """History rows of one account with ``start <= at < end``, oldest first.

        Each row is a dict: ``account``, ``at`` (aware UTC), the figure columns, ``estimated``
        (bool) and ``extra`` (dict).
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
    return sample


def _split_sql(script: str) -> list[str]:
    """The statements of a schema script (it holds no semicolons inside literals)."""
    return [statement.strip() for statement in script.split(";") if statement.strip()]
