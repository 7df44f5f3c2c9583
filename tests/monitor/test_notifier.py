"""The notifier with real Apprise posting to real local receivers over 127.0.0.1.

Time is injected: retries and expiry are driven by moving a clock and calling
``deliver_due``, never by waiting for a backoff.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from structlog.testing import capture_logs

from monitor.notifier import (
    Notification,
    Notifier,
    QuietHours,
    Target,
    format_transition,
    notification_for,
    redact,
)
from monitor.sim.receiver import Receiver
from monitor.store import Store
from rules.lifecycle import LifecyclePolicy, step
from rules.model import Finding, Severity, grade_below

T0 = datetime(2024, 6, 3, 13, 30, tzinfo=UTC)
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def note(
    notification_id: str, severity: str = "critical", kind: str = "fired", **extra: object
) -> Notification:
    values: dict[str, object] = {
        "id": notification_id,
        "account": "DU123456",
        "rule": "cushion",
        "severity": severity,
        "kind": kind,
        "title": f"[{severity.upper()}] DU123456 cushion",
        "body": "Cushion 8.00% below 10.00%",
        "created_at": T0,
    }
    values.update(extra)
    return Notification(**values)  # type: ignore[arg-type]


@pytest.fixture
def pager() -> Iterator[Receiver]:
    """A target that receives critical only."""
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def channel() -> Iterator[Receiver]:
    """A target that receives everything."""
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    with Store(tmp_path / "monitor.sqlite3") as opened:
        yield opened


def targets(pager: Receiver, channel: Receiver) -> list[Target]:
    return [
        Target("pager", pager.url, frozenset({"critical"})),
        Target("channel", channel.url, frozenset({"info", "warning", "critical", "summary"})),
    ]


def test_routing_by_severity_across_two_targets(pager, channel, store):
    """Warning and the summary go to the channel only; critical to both; a recovery routed
    'ok' goes to every alert target. Each message ends with its id."""
    notifier = Notifier(targets(pager, channel), store, clock=Clock())

    async def scenario() -> None:
        await notifier.submit(note("w1", "warning"))
        await notifier.submit(note("i1", "info", kind="summary"))
        await notifier.submit(note("c1", "critical"))
        await notifier.submit(note("r1", "ok", kind="resolved"))

    asyncio.run(scenario())
    assert pager.ids() == ["c1", "r1"]
    assert channel.ids() == ["w1", "i1", "c1", "r1"]
    first = channel.messages[0]
    assert first.title == "[WARNING] DU123456 cushion"
    assert first.message.splitlines()[-1] == "id: w1"
    assert first.type == "warning"
    assert [m.type for m in pager.messages] == ["failure", "success"]


def test_a_failing_target_does_not_block_the_other_and_is_retried_until_it_succeeds(
    pager, channel, store
):
    """HTTP 500 from one target: the other gets the message at once; the failing one is
    retried with a doubling backoff and gets it exactly once after it recovers."""
    clock = Clock()
    notifier = Notifier(targets(pager, channel), store, clock=clock)
    pager.set_failing(True)

    async def scenario() -> None:
        await notifier.submit(note("c1"))
        assert channel.ids() == ["c1"]
        assert pager.rejected == 1
        clock.advance(seconds=4)
        report = await notifier.deliver_due()
        assert (report.sent, report.failed) == (0, 0)  # backoff of 5 s not over yet
        assert pager.rejected == 1
        clock.advance(seconds=1)
        report = await notifier.deliver_due()
        assert (report.sent, report.failed) == (0, 1)
        assert pager.rejected == 2
        (row,) = [i for i in store.outbox() if i.target_name == "pager"]
        assert row.attempts == 2
        assert row.next_attempt_at == clock.now + timedelta(seconds=10)
        assert row.last_error is not None and "500" in row.last_error
        pager.set_failing(False)
        clock.advance(seconds=10)
        report = await notifier.deliver_due()
        assert (report.sent, report.failed) == (1, 0)
        clock.advance(hours=1)
        await notifier.deliver_due()

    asyncio.run(scenario())
    assert pager.ids() == ["c1"]
    assert channel.ids() == ["c1"]
    assert store.pending_count() == 0
    outcomes = [(row["target_name"], row["outcome"]) for row in store.deliveries()]
    assert outcomes.count(("pager", "failed")) == 2
    assert outcomes.count(("pager", "sent")) == 1


def test_a_failing_target_is_retried_head_first_not_hammered(pager, channel, store):
    """With three messages due for a failing target, one attempt is made; the rest wait
    with it and all go out, in order, once it recovers."""
    clock = Clock()
    notifier = Notifier(targets(pager, channel), store, clock=clock)
    pager.set_failing(True)

    async def scenario() -> None:
        for index in range(3):
            notifier.enqueue(note(f"c{index}"))
        report = await notifier.deliver_due()
        assert (report.sent, report.failed, report.deferred) == (3, 1, 2)
        assert pager.rejected == 1
        pager.set_failing(False)
        clock.advance(seconds=5)
        report = await notifier.deliver_due()
        assert report.sent == 3

    asyncio.run(scenario())
    assert pager.ids() == ["c0", "c1", "c2"]


@pytest.mark.slow
def test_a_hanging_target_times_out_without_holding_up_the_other(pager, channel, store):
    """A target that never answers is cut off by the send timeout; the other is served."""
    notifier = Notifier(targets(pager, channel), store, clock=Clock(), send_timeout=0.5)
    pager.set_hanging(True)
    try:
        report = asyncio.run(notifier.deliver_due() if notifier.enqueue(note("c1")) else None)
    finally:
        pager.set_hanging(False)
    assert channel.ids() == ["c1"]
    assert (report.sent, report.failed) == (1, 1)
    (failure,) = [r for r in report.results if not r.ok]
    assert failure.target == "pager"


def test_backoff_doubles_from_5_seconds_up_to_15_minutes(store):
    """5, 10, 20, ... seconds, never more than 15 minutes."""
    notifier = Notifier([], store)
    delays = [notifier.backoff(n).total_seconds() for n in range(1, 12)]
    assert delays[:5] == [5, 10, 20, 40, 80]
    assert max(delays) == 900
    assert delays == sorted(delays)


def test_undelivered_notifications_expire_after_max_age(pager, channel, store):
    """A target down for longer than max_age: the row expires and is never sent later."""
    clock = Clock()
    notifier = Notifier(targets(pager, channel), store, clock=clock, max_age=timedelta(hours=24))
    pager.set_failing(True)

    async def scenario() -> None:
        await notifier.submit(note("c1"))
        clock.advance(hours=24, seconds=1)
        pager.set_failing(False)
        report = await notifier.deliver_due()
        assert (report.sent, report.expired) == (0, 1)
        clock.advance(minutes=30)
        assert (await notifier.deliver_due()).sent == 0

    with capture_logs() as logs:
        asyncio.run(scenario())
    assert pager.ids() == []
    statuses = {(i.target_name, i.status) for i in store.outbox()}
    assert statuses == {("pager", "expired"), ("channel", "sent")}
    assert any(entry["event"] == "notification expired undelivered" for entry in logs)


def test_quiet_hours_hold_a_warning_but_never_a_critical(pager, channel, store):
    """At 23:00 with quiet hours 22:00-07:00 a warning waits for 07:00; a critical goes now."""
    clock = Clock(datetime(2024, 6, 3, 23, 0, tzinfo=UTC))
    notifier = Notifier(
        targets(pager, channel), store, clock=clock, quiet_hours=("22:00", "07:00", "UTC")
    )

    async def scenario() -> None:
        await notifier.submit(note("w1", "warning", created_at=clock.now))
        await notifier.submit(note("c1", "critical", created_at=clock.now))
        assert channel.ids() == ["c1"]
        held = [i for i in store.outbox() if i.notification_id == "w1"]
        assert held[0].not_before == datetime(2024, 6, 4, 7, 0, tzinfo=UTC)
        clock.now = datetime(2024, 6, 4, 6, 59, tzinfo=UTC)
        assert (await notifier.deliver_due()).sent == 0
        clock.now = datetime(2024, 6, 4, 7, 0, tzinfo=UTC)
        assert (await notifier.deliver_due()).sent == 1

    asyncio.run(scenario())
    assert channel.ids() == ["c1", "w1"]
    assert pager.ids() == ["c1"]


@pytest.mark.parametrize(
    ("start", "end", "now", "expected"),
    [
        ("22:00", "07:00", "23:30", "2024-06-04T07:00"),
        ("22:00", "07:00", "03:00", "2024-06-03T07:00"),
        ("22:00", "07:00", "12:00", None),
        ("12:00", "14:00", "13:00", "2024-06-03T14:00"),
        ("12:00", "14:00", "14:00", None),
        ("09:00", "09:00", "09:00", None),
    ],
    ids=["evening", "after-midnight", "daytime", "same-day", "at-end", "empty-window"],
)
def test_quiet_hours_end(start, end, now, expected):
    """When a quiet period ends, for windows that wrap midnight and those that do not."""
    hours, minutes = map(int, now.split(":"))
    moment = datetime(2024, 6, 3, hours, minutes, tzinfo=UTC)
    until = QuietHours.parse((start, end, "UTC")).until(moment)
    assert (until.strftime("%Y-%m-%dT%H:%M") if until else None) == expected


def test_quiet_hours_follow_the_configured_time_zone():
    """22:00-07:00 in New York is 02:00-11:00 UTC in June (EDT)."""
    quiet = QuietHours.parse(("22:00", "07:00", "America/New_York"))
    assert quiet.until(datetime(2024, 6, 3, 3, 0, tzinfo=UTC)) == datetime(
        2024, 6, 3, 11, 0, tzinfo=UTC
    )
    assert quiet.until(datetime(2024, 6, 3, 12, 0, tzinfo=UTC)) is None


def test_a_restart_delivers_what_was_pending_and_never_resends_what_was_sent(
    pager, channel, tmp_path
):
    """Process one queues and fails on one target; process two (new Notifier, reopened
    Store) delivers the pending row only; resubmitting the same id changes nothing."""
    path = tmp_path / "state" / "monitor.sqlite3"
    clock = Clock()
    pager.set_failing(True)

    async def first_process() -> None:
        with Store(path) as store:
            await Notifier(targets(pager, channel), store, clock=clock).submit(note("c1"))

    asyncio.run(first_process())
    assert (channel.ids(), pager.ids()) == (["c1"], [])
    pager.set_failing(False)
    clock.advance(minutes=1)

    async def second_process() -> None:
        with Store(path) as store:
            notifier = Notifier(targets(pager, channel), store, clock=clock)
            report = await notifier.deliver_due()
            assert report.sent == 1
            assert await notifier.submit(note("c1")) is False
            clock.advance(hours=2)
            assert (await notifier.deliver_due()).sent == 0

    asyncio.run(second_process())
    assert pager.ids() == ["c1"]
    assert channel.ids() == ["c1"]


def test_run_delivers_promptly_when_woken_and_stops(pager, channel, store):
    """The loop sends a submitted notification without an explicit deliver_due call."""
    notifier = Notifier(targets(pager, channel), store, poll_interval=30)

    async def scenario() -> None:
        stop = asyncio.Event()
        loop_task = asyncio.create_task(notifier.run(stop))
        await asyncio.sleep(0)
        await notifier.submit(note("c1", created_at=datetime.now(UTC)))
        await channel.wait_for_async(1, timeout=10)
        await pager.wait_for_async(1, timeout=10)
        stop.set()
        await asyncio.wait_for(loop_task, timeout=10)

    asyncio.run(scenario())
    assert channel.ids() == ["c1"] and pager.ids() == ["c1"]


def test_send_test_reports_each_target(pager, channel, store):
    """notify-test: per-target ok/error through the same routing; nothing is queued."""
    pager.set_failing(True)
    notifier = Notifier(targets(pager, channel), store, clock=Clock())
    results = asyncio.run(notifier.send_test("critical"))
    assert [(r.name, r.ok) for r in results] == [("pager", False), ("channel", True)]
    assert results[0].error is not None and "500" in results[0].error
    assert results[1].error is None
    assert [r.name for r in asyncio.run(notifier.send_test("warning"))] == ["channel"]
    assert len(channel.messages) == 2
    assert channel.messages[0].message.splitlines()[-1].startswith("id: test:")
    assert store.outbox() == []


def test_console_target_prints_a_readable_block(store, capsys):
    """console:// prints title, body and id on stdout (the demo's output)."""
    notifier = Notifier([Target.from_url("console://", 1)], store, clock=Clock())
    report = asyncio.run(notifier.deliver_due() if notifier.enqueue(note("c1")) else None)
    assert report.sent == 1
    printed = capsys.readouterr().out
    assert "[CRITICAL] DU123456 cushion" in printed
    assert "Cushion 8.00% below 10.00%" in printed
    assert "id: c1" in printed


def test_attachments_reach_the_receiver_and_a_missing_one_is_mentioned(channel, store, tmp_path):
    """The summary's PNG chart is attached; a file that vanished does not block the message."""
    chart = tmp_path / "chart.png"
    chart.write_bytes(PNG)
    notifier = Notifier([Target("channel", channel.url)], store, clock=Clock())
    attachments = (str(chart), str(tmp_path / "gone.png"))
    asyncio.run(notifier.submit(note("s1", "info", kind="summary", attachments=attachments)))
    (message,) = channel.messages
    assert [a["filename"] for a in message.attachments] == ["chart.png"]
    assert base64.b64decode(message.attachments[0]["base64"]) == PNG
    assert "attachment missing: gone.png" in message.message


def test_no_target_for_a_severity_queues_nothing(pager, store):
    """A warning with only a critical target is dropped with a log line, not queued."""
    notifier = Notifier([Target("pager", pager.url, frozenset({"critical"}))], store)
    assert asyncio.run(notifier.submit(note("w1", "warning"))) is False
    assert store.outbox() == []


SECRET = "S3cretT0ken-9f8e7d6c"


def test_a_secret_from_a_url_reaches_no_log_line_error_or_repr(tmp_path, store):
    """Tokens in target URLs (credentials, path, an invalid URL, an unreachable host) never
    appear in captured logs, stored errors, the delivery log, results or a repr."""
    with Receiver() as failing:
        failing.set_failing(True)
        port = failing.port
        secret_targets = [
            Target("auth", f"json://user:{SECRET}@127.0.0.1:{port}/hook/{SECRET}x"),
            Target("unreachable", f"json://127.0.0.1:1/{SECRET}"),
            Target("invalid", f"notascheme://{SECRET}@nowhere"),
        ]
        clock = Clock()
        with capture_logs() as logs:
            notifier = Notifier(secret_targets, store, clock=clock)
            results = asyncio.run(notifier.send_test("critical"))
            asyncio.run(notifier.submit(note("c1")))
            clock.advance(seconds=5)
            asyncio.run(notifier.deliver_due())
        assert failing.rejected >= 2
    assert logs, "expected log lines to check"
    assert any(entry["event"] == "notification failed" for entry in logs)
    for entry in logs:
        assert SECRET not in str(entry)
    rows = store.outbox()
    assert len(rows) == 3 and all(row.last_error for row in rows)
    for row in rows:
        assert SECRET not in (row.last_error or "")
        assert SECRET not in row.target
    for row in store.deliveries():
        assert SECRET not in str(row)
    assert all(not result.ok for result in results)
    for result in results:
        assert SECRET not in str(result)
    for target in secret_targets:
        assert SECRET not in repr(target)


def test_redact_removes_the_url_and_each_of_its_parts():
    """An error quoting the URL, or only a piece of it, comes out without the secret."""
    target = Target("slack#1", f"slack://{SECRET}/B0AAAA1/C0BBBB2/#alerts")
    text = redact(f"post to {target.url} failed; token {SECRET} and channel C0BBBB2", target)
    assert SECRET not in text
    assert "C0BBBB2" not in text
    assert "failed" in text


def test_enqueue_joins_the_callers_transaction(channel, store):
    """The service can write an alert state and its notification atomically, then deliver."""
    state, fired = step(None, cushion(0.05), T0, LifecyclePolicy())
    assert fired is not None
    notifier = Notifier([Target("channel", channel.url)], store, clock=Clock())
    with pytest.raises(RuntimeError), store.transaction():
        store.save_alert_state(state)
        notifier.enqueue(notification_for(fired, "USD"))
        raise RuntimeError("crash before commit")
    assert store.outbox() == [] and store.load_alert_states() == {}
    with store.transaction():
        store.save_alert_state(state)
        notifier.enqueue(notification_for(fired, "USD"))
    assert asyncio.run(notifier.deliver_due()).sent == 1
    assert channel.ids() == [fired.notification_id]


def test_targets_reject_unknown_severities():
    """A typo in a target's severities is caught when the target is built."""
    with pytest.raises(ValueError, match="unknown severities"):
        Target("x", "json://127.0.0.1/", frozenset({"critcal"}))
    assert Target.from_url("pover://user@token", 2).name == "pover#2"


# -- formatting ------------------------------------------------------------------------------


def cushion(value: float, estimated: bool = False) -> Finding:
    severity, clear = grade_below(value, 0.20, 0.10, 0.02)
    return Finding(
        rule="cushion",
        account="DU123456",
        severity=severity,
        value=value,
        threshold=0.10 if severity == Severity.CRITICAL else 0.20,
        message=f"cushion {value:.2%}",
        action="Sell about USD 42,000 of long positions to restore a 20% cushion",
        clear_severity=clear,
        estimated=estimated,
        authoritative_age=95.0 if estimated else None,
    )


def test_format_transition_titles_and_bodies():
    """Titles name severity, account and rule; bodies carry value, threshold, action and the
    estimated marker; a recovery says resolved."""
    policy = LifecyclePolicy()
    state, fired = step(None, cushion(0.15, estimated=True), T0, policy)
    state, escalated = step(state, cushion(0.08), T0 + timedelta(minutes=1), policy)
    state, eased = step(state, cushion(0.15), T0 + timedelta(minutes=2), policy)
    _, resolved = step(state, cushion(0.30), T0 + timedelta(minutes=3), policy)
    assert fired and escalated and eased and resolved

    title, body = format_transition(fired, "USD")
    assert title == "[WARNING] DU123456 cushion"
    assert "Value: 15.00% (threshold 20.00%)" in body
    assert "[estimated from streaming prices; IB's own figures are 95 s old]" in body
    assert "Action: Sell about USD 42,000" in body

    assert format_transition(escalated, "USD")[0] == (
        "[CRITICAL] DU123456 cushion (escalated from warning)"
    )
    assert format_transition(eased, "USD")[0] == "[WARNING] DU123456 cushion (eased from critical)"
    title, body = format_transition(resolved, "USD")
    assert title == "[RESOLVED] DU123456 cushion (was warning)"
    assert "resolved" in body.lower()
    assert "Action" not in body


def test_notification_for_routes_recoveries_to_the_episode_peak(pager, channel, store):
    """A resolved critical episode reaches the critical-only pager too, as a success."""
    policy = LifecyclePolicy()
    state, fired = step(None, cushion(0.05), T0, policy)
    state, eased = step(state, cushion(0.15), T0 + timedelta(minutes=1), policy)
    _, resolved = step(state, cushion(0.30), T0 + timedelta(minutes=2), policy)
    notifier = Notifier(targets(pager, channel), store, clock=Clock())

    async def scenario() -> None:
        for transition in (fired, eased, resolved):
            assert transition is not None
            await notifier.submit(notification_for(transition, "USD"))

    asyncio.run(scenario())
    assert len(pager.messages) == 3
    assert pager.messages[-1].title.startswith("[RESOLVED]")
    assert pager.messages[-1].type == "success"
    assert pager.ids() == channel.ids()


def test_structlog_logger_name_is_monitor_notifier():
    """Log lines come from the 'monitor.notifier' logger (the pipeline relies on names)."""
    from monitor import notifier as module

    assert module.log is not None
    assert isinstance(structlog.get_logger("monitor.notifier"), type(module.log))
