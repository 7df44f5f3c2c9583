"""The SQLite store on real files: reopening the file is a restart of the daemon."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest

from monitor.store import DEFAULT_RETENTION, SCHEMA_VERSION, Store, StoreError
from rules.lifecycle import AlertState, LifecyclePolicy, step
from rules.model import Finding, Severity, grade_below

T0 = datetime(2024, 6, 3, 13, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Note:
    """Shaped like monitor.notifier.Notification (the store only reads these fields)."""

    id: str
    account: str = "DU1"
    rule: str = "cushion"
    severity: str = "critical"
    kind: str = "fired"
    title: str = "[CRITICAL] DU1 cushion"
    body: str = "cushion 8%"
    created_at: datetime = T0
    attachments: tuple[str, ...] = ()


def cushion(value: float) -> Finding:
    severity, clear = grade_below(value, 0.20, 0.10, 0.02)
    return Finding("cushion", "DU1", severity, value, 0.10, "cushion", clear_severity=clear)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "state" / "nested" / "monitor.sqlite3"


def test_the_file_and_its_directory_are_created_with_a_versioned_schema(path):
    """First use creates the directory, the file, WAL mode and the current schema version."""
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 4
    assert path.exists()
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION


def test_a_file_from_a_newer_version_is_refused_with_a_clear_message(path):
    """Opening a schema this code does not know stops instead of corrupting it."""
    Store(path).close()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 99")
    connection.commit()
    connection.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(path)


def test_alert_states_survive_a_restart_and_ids_continue_identically(path):
    """The state reloaded from the file produces the very same next notification id."""
    policy = LifecyclePolicy()
    state, fired = step(None, cushion(0.05), T0.astimezone(timezone(timedelta(hours=-4))), policy)
    assert fired is not None
    with Store(path) as store:
        store.save_alert_state(state)
    with Store(path) as store:
        loaded = store.load_alert_states()
    assert loaded == {("DU1", "cushion"): state}
    later = T0 + timedelta(minutes=5)
    _, from_memory = step(state, cushion(0.5), later, policy)
    _, from_disk = step(loaded[("DU1", "cushion")], cushion(0.5), later, policy)
    assert from_memory is not None and from_disk is not None
    assert from_disk.notification_id == from_memory.notification_id
    assert loaded[("DU1", "cushion")].episode_started.tzinfo is not None


def test_the_outbox_survives_a_restart_and_enqueue_is_idempotent(path):
    """A queued row is still due after reopening; queueing the same id again adds nothing,
    even after it was sent."""
    with Store(path) as store:
        assert store.enqueue(Note("n1"), {"a": "json#1", "b": "json#2"}) is True
        assert store.enqueue(Note("n1"), {"a": "json#1", "b": "json#2"}) is False
    with Store(path) as store:
        due = store.due(T0)
        assert [(i.notification_id, i.target, i.target_name) for i in due] == [
            ("n1", "a", "json#1"),
            ("n1", "b", "json#2"),
        ]
        store.mark_sent("n1", "a", T0)
    with Store(path) as store:
        assert store.enqueue(Note("n1"), ["a", "b"]) is False
        assert [(i.target, i.status) for i in store.outbox()] == [("a", "sent"), ("b", "pending")]
        assert [i.target for i in store.due(T0)] == ["b"]


def test_due_respects_not_before_retries_and_leases(path):
    """Held rows wait for not_before; failed rows wait for next_attempt_at; a leased row is
    invisible until its lease lapses."""
    with Store(path) as store:
        store.enqueue(Note("held"), ["a"], not_before=T0 + timedelta(hours=8))
        store.enqueue(Note("now"), ["a"])
        assert [i.notification_id for i in store.due(T0)] == ["now"]
        assert store.next_attempt_at() == T0
        store.mark_failed("now", "a", T0, "HTTP 500", T0 + timedelta(seconds=5))
        assert store.due(T0 + timedelta(seconds=4)) == []
        assert store.next_attempt_at() == T0 + timedelta(seconds=5)
        later = T0 + timedelta(seconds=5)
        assert [i.notification_id for i in store.due(later)] == ["now"]
        assert store.claim("now", "a", later, later + timedelta(seconds=30)) is True
        assert store.claim("now", "a", later, later + timedelta(seconds=30)) is False
        assert store.due(later) == []
        lapsed = later + timedelta(seconds=31)
        assert [i.notification_id for i in store.due(lapsed)] == ["now"]
        assert store.claim("now", "a", lapsed, lapsed + timedelta(seconds=30)) is True
        store.mark_sent("now", "a", lapsed)
        assert [i.notification_id for i in store.due(T0 + timedelta(hours=8))] == ["held"]
        item = store.outbox()[1]
        assert item.notification_id == "now" and item.attempts == 2 and item.status == "sent"


def test_last_error_never_keeps_a_url(path):
    """Whatever a caller passes, a URL does not reach the outbox or the delivery log."""
    with Store(path) as store:
        store.enqueue(Note("n1"), ["a"])
        store.mark_failed(
            "n1", "a", T0, "could not post to slack://TOKEN-abc/B0/C0 (500)", T0 + timedelta(1)
        )
        (item,) = store.outbox()
        assert item.last_error is not None and "TOKEN-abc" not in item.last_error
        assert "(500)" in item.last_error
        assert all("TOKEN-abc" not in (row["error"] or "") for row in store.deliveries())


def test_rows_older_than_max_age_expire_and_are_logged(path):
    """Expiry gives up on pending rows only; sent rows are untouched."""
    with Store(path) as store:
        store.enqueue(Note("old"), ["a", "b"])
        store.mark_sent("old", "b", T0)
        store.enqueue(Note("young", created_at=T0 + timedelta(hours=23)), ["a"])
        expired = store.expire(T0 + timedelta(hours=24, seconds=1), timedelta(hours=24))
        assert [(i.notification_id, i.target) for i in expired] == [("old", "a")]
        statuses = {(i.notification_id, i.target): i.status for i in store.outbox()}
        assert statuses == {
            ("old", "a"): "expired",
            ("old", "b"): "sent",
            ("young", "a"): "pending",
        }
        outcomes = [(row["notification_id"], row["outcome"]) for row in store.deliveries()]
        assert outcomes == [("old", "sent"), ("old", "expired")]
        assert store.pending_count() == 1


def test_history_keeps_one_row_per_account_per_minute_the_last_wins(path):
    """Several evaluations within a minute collapse to the last one; NaN is stored as None."""
    with Store(path) as store:
        store.record_sample("DU1", T0 + timedelta(seconds=1), {"cushion": 0.30, "estimated": True})
        store.record_sample(
            "DU1",
            T0 + timedelta(seconds=59),
            {
                "net_liquidation": 100_000.0,
                "cushion": 0.25,
                "leverage": math.nan,
                "estimated": False,
                "extra": {"base_currency": "USD"},
                "custom_figure": 3,
            },
        )
        store.record_sample("DU1", T0 + timedelta(minutes=1), {"cushion": 0.24})
        store.record_sample("DU2", T0, {"cushion": 0.5})
    with Store(path) as store:
        rows = store.samples("DU1", T0, T0 + timedelta(minutes=2))
        assert [(r["at"], r["cushion"]) for r in rows] == [
            (T0 + timedelta(seconds=59), 0.25),
            (T0 + timedelta(minutes=1), 0.24),
        ]
        first = rows[0]
        assert first["net_liquidation"] == 100_000.0
        assert first["leverage"] is None
        assert first["estimated"] is False
        assert first["extra"] == {"base_currency": "USD", "custom_figure": 3}
        assert first["at"].tzinfo is not None
        assert (
            store.samples("DU1", T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))[0]["cushion"]
            == 0.24
        )
        assert store.accounts_with_samples(T0, T0 + timedelta(minutes=1)) == ["DU1", "DU2"]
        assert store.accounts_with_samples(T0 + timedelta(hours=1), T0 + timedelta(hours=2)) == []


def test_naive_datetimes_are_taken_as_utc(path):
    """A naive time is UTC; what comes back is timezone-aware UTC."""
    with Store(path) as store:
        store.record_sample("DU1", T0.replace(tzinfo=None), {"cushion": 0.3})
        (row,) = store.samples("DU1", T0 - timedelta(seconds=1), T0 + timedelta(seconds=1))
        assert row["at"] == T0 and row["at"].tzinfo is not None


def test_the_peak_ratchets_up_and_can_be_reset(path):
    """update_peak only raises it; reset forgets it or sets any value."""
    with Store(path) as store:
        assert store.peak("DU1") is None
        assert store.update_peak("DU1", 100.0) == 100.0
        assert store.update_peak("DU1", 90.0) == 100.0
        assert store.update_peak("DU1", math.nan) == 100.0
        assert store.update_peak("DU1", None) == 100.0
        assert store.update_peak("DU1", -5.0) == 100.0
        assert store.update_peak("DU1", 120.0) == 120.0
    with Store(path) as store:
        assert store.peak("DU1") == 120.0
        store.reset_peak("DU1")
        assert store.peak("DU1") is None
        assert store.update_peak("DU1", 80.0) == 80.0
        store.reset_peak("DU1", 75.0)
        assert store.peak("DU1") == 75.0


def test_financing_cost_near_finds_the_closest_sample_within_tolerance(path):
    """The year-over-year rule asks for the cost about a year ago."""
    year_ago = T0 - timedelta(days=365)
    with Store(path) as store:
        store.record_sample("DU1", year_ago - timedelta(days=3), {"annual_financing_cost": 8000})
        store.record_sample("DU1", year_ago + timedelta(days=1), {"annual_financing_cost": 8500})
        store.record_sample("DU1", year_ago, {"cushion": 0.3})  # no cost figure
        assert store.financing_cost_near("DU1", year_ago, timedelta(days=7)) == 8500
        assert store.financing_cost_near("DU1", year_ago, timedelta(hours=12)) is None
        assert store.financing_cost_near("DU2", year_ago, timedelta(days=7)) is None


def test_alert_events_and_gaps(path):
    """Transitions are recorded once per id; gaps overlapping a range are returned, open
    ones included."""
    state, fired = step(None, cushion(0.05), T0, LifecyclePolicy())
    _, resolved = step(state, cushion(0.5), T0 + timedelta(hours=1), LifecyclePolicy())
    assert fired is not None and resolved is not None
    with Store(path) as store:
        store.record_alert_event(fired)
        store.record_alert_event(fired)
        store.record_alert_event(resolved)
        events = store.alert_events("DU1", T0, T0 + timedelta(days=1))
        assert [(e["kind"], e["severity"], e["at"]) for e in events] == [
            ("fired", "critical", T0),
            ("resolved", "ok", T0 + timedelta(hours=1)),
        ]
        assert events[0]["notification_id"] == fired.notification_id
        assert events[0]["value"] == 0.05
        assert store.alert_events("DU2", T0, T0 + timedelta(days=1)) == []
        assert len(store.alert_events(None, T0, T0 + timedelta(minutes=1))) == 1

        store.record_gap(T0 - timedelta(hours=2), T0 - timedelta(hours=1), "disconnected")
        store.record_gap(T0 + timedelta(minutes=5), T0 + timedelta(minutes=9), "disconnected")
        store.record_gap(T0 + timedelta(hours=3), None, "1100")
        gaps = store.gaps(T0, T0 + timedelta(days=1))
        assert [(g["start"], g["end"], g["reason"]) for g in gaps] == [
            (T0 + timedelta(minutes=5), T0 + timedelta(minutes=9), "disconnected"),
            (T0 + timedelta(hours=3), None, "1100"),
        ]


def test_prune_drops_old_history_but_keeps_states_peaks_and_pending_rows(path):
    """Retention applies to history; what the daemon needs to keep its promises stays."""
    old = T0 - DEFAULT_RETENTION - timedelta(days=1)
    state, fired = step(None, cushion(0.05), old, LifecyclePolicy())
    assert fired is not None
    with Store(path) as store:
        store.record_sample("DU1", old, {"cushion": 0.05})
        store.record_sample("DU1", T0, {"cushion": 0.3})
        store.record_alert_event(fired)
        store.save_alert_state(state)
        store.update_peak("DU1", 100.0)
        store.record_gap(old, old + timedelta(minutes=1), "disconnected")
        store.enqueue(Note("sent-long-ago", created_at=old), ["a"])
        store.mark_sent("sent-long-ago", "a", old)
        store.enqueue(Note("still-pending", created_at=old), ["a"])
        deleted = store.prune(T0 - DEFAULT_RETENTION)
        assert deleted >= 5
        assert [r["at"] for r in store.samples("DU1", old - timedelta(1), T0 + timedelta(1))] == [
            T0
        ]
        assert store.alert_events("DU1", old - timedelta(1), T0) == []
        assert store.gaps(old - timedelta(1), T0) == []
        assert [i.notification_id for i in store.outbox()] == ["still-pending"]
        assert store.load_alert_states() == {("DU1", "cushion"): state}
        assert store.peak("DU1") == 100.0


def test_a_transaction_is_all_or_nothing(path):
    """State, event and outbox rows written together vanish together on an error."""
    state, fired = step(None, cushion(0.05), T0, LifecyclePolicy())
    assert fired is not None
    with Store(path) as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.save_alert_state(state)
            store.record_alert_event(fired)
            store.enqueue(Note(fired.notification_id), ["a"])
            raise RuntimeError("crash between writes")
        assert store.load_alert_states() == {}
        assert store.outbox() == []
        assert store.alert_events(None, T0 - timedelta(1), T0 + timedelta(1)) == []
        with store.transaction():
            store.save_alert_state(state)
            store.enqueue(Note(fired.notification_id), ["a"])
    with Store(path) as store:
        assert store.load_alert_states() == {("DU1", "cushion"): state}
        assert len(store.outbox()) == 1


def test_two_connections_share_the_file(path):
    """A second process (e.g. ``summary --send``) sees what the daemon wrote, and a lease
    taken by one is respected by the other."""
    with Store(path) as daemon, Store(path) as other:
        daemon.enqueue(Note("n1"), ["a"])
        assert [i.notification_id for i in other.due(T0)] == ["n1"]
        assert daemon.claim("n1", "a", T0, T0 + timedelta(seconds=60)) is True
        assert other.claim("n1", "a", T0, T0 + timedelta(seconds=60)) is False


def test_state_round_trip_keeps_every_field(path):
    """Every AlertState field, including the episode peak, survives the file."""
    state = AlertState(
        account="U7",
        rule="leverage",
        severity=Severity.WARNING,
        episode_started=T0,
        episode_peak=Severity.CRITICAL,
        last_notified=T0 + timedelta(minutes=3),
        last_value=1.87,
        sequence=42,
    )
    with Store(path) as store:
        store.save_alert_state(state)
    with Store(path) as store:
        assert store.load_alert_states()[("U7", "leverage")] == state
