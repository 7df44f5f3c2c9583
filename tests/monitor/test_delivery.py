"""Delivery that holds when targets misbehave: each target in its own lane, a hard deadline per
attempt, a bounded number of sending threads, retries on the monotonic clock, a prompt stop,
direct sends while the outbox cannot be written, and URLs and their secrets checked and masked.

Real Apprise posting to real local receivers over 127.0.0.1 (one that dribbles a byte at a
time, one that never answers, one that answers 500); a real SQLite outbox.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from support import until

from monitor.logs import configure_logging, redactor
from monitor.notifier import (
    Attempt,
    Notification,
    Notifier,
    Target,
    mask_url,
    secret_fragments,
    url_problem,
)
from monitor.sim.receiver import Receiver
from monitor.store import Store

FAST = {"backoff_base": timedelta(milliseconds=50), "backoff_max": timedelta(milliseconds=200)}


def note(notification_id: str, created_at: datetime | None = None) -> Notification:
    """A critical notification made now (or at ``created_at``)."""
    return Notification(
        notification_id,
        "DU1",
        "cushion",
        "critical",
        "fired",
        f"[CRITICAL] DU1 cushion {notification_id}",
        "Cushion 8% below 10%",
        created_at or datetime.now(UTC),
    )


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    with Store(tmp_path / "monitor.sqlite3") as opened:
        yield opened


def sending_threads(name: str) -> int:
    """Threads sending to the target called ``name`` right now."""
    return sum(1 for thread in threading.enumerate() if thread.name == f"notify {name}")


def test_a_cut_attempt_frees_its_thread_at_once(tmp_path):
    """A blocking call reading from a peer that dribbles a byte every 0.2 s: :meth:`cut`
    shuts its socket down, the read returns, the thread ends well before the peer would."""

    async def scenario() -> tuple[bool, float]:
        with Receiver(behaviour="dribble", dribble_interval=0.2, hang_limit=30) as peer:
            import urllib.request

            def call() -> tuple[bool, str]:
                request = urllib.request.Request(peer.http_url, data=b"{}", method="POST")
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                return True, ""

            attempt = Attempt(call, "notify probe").start()
            await asyncio.to_thread(peer.wait_for_counters, lambda r: r.held == 1, 5)
            started = asyncio.get_running_loop().time()
            attempt.cut()
            await until(attempt.result.done, 5, "the call returns")
            took = asyncio.get_running_loop().time() - started
            ok, _ = attempt.result.result()
            return ok, took

    ok, took = asyncio.run(scenario())
    assert not ok, "the call failed on the cut socket"
    assert took < 2, "the whole answer would take about 16 s"


@pytest.mark.slow
def test_a_dribbling_and_a_silent_target_delay_no_other_and_keep_few_threads(store):
    """Three notifications to a target that dribbles, one that never answers and a healthy
    one: the healthy one gets all three at once, in order; the others are cut at the
    deadline (0.5 s) and retried, never with more than ``max_in_flight`` (2) threads each."""
    peak: dict[str, int] = {"drip": 0, "mute": 0}

    async def scenario() -> tuple[list[str], int, int]:
        with (
            Receiver(behaviour="dribble", dribble_interval=0.5, hang_limit=30) as drip,
            Receiver(behaviour="hang", hang_limit=30) as mute,
            Receiver() as healthy,
        ):
            targets = [
                Target("drip", drip.url),
                Target("mute", mute.url),
                Target("ok", healthy.url),
            ]
            notifier = Notifier(targets, store, send_timeout=0.5, **FAST)
            stop = asyncio.Event()
            running = asyncio.create_task(notifier.run(stop))
            for index in range(3):
                notifier.enqueue(note(f"n{index}"))
            await healthy.wait_for_async(3, timeout=5)

            def watch() -> bool:
                for name in peak:
                    peak[name] = max(peak[name], sending_threads(name))
                return drip.dropped >= 3 and mute.accepted >= 3

            await until(watch, 15, "three cut attempts at each bad target")
            stop.set()
            await asyncio.wait_for(running, 5)
            return healthy.ids(), drip.completed, len(drip.messages)

    ids, completed, dripped = asyncio.run(scenario())
    assert ids == ["n0", "n1", "n2"]
    assert completed == dripped == 0
    assert peak["drip"] <= 2 and peak["mute"] <= 2
    pending = {(row.target_name, row.notification_id) for row in store.outbox("pending")}
    assert {("drip", "n0"), ("mute", "n0")} <= pending
    assert all(row.attempts >= 1 for row in store.outbox("pending") if row.notification_id == "n0")


@pytest.mark.slow
def test_a_stop_ends_within_seconds_and_hands_back_what_was_in_flight(store):
    """Stopping while one target never answers (30 s deadline) and another dribbles: the
    loop ends within a few seconds, the rows stay pending, unleased, for the next start."""

    async def scenario() -> float:
        with (
            Receiver(behaviour="hang", hang_limit=30) as mute,
            Receiver(behaviour="dribble", dribble_interval=1.0, hang_limit=30) as drip,
        ):
            notifier = Notifier([Target("mute", mute.url), Target("drip", drip.url)], store)
            stop = asyncio.Event()
            running = asyncio.create_task(notifier.run(stop))
            notifier.enqueue(note("n1"))
            await asyncio.to_thread(mute.wait_for_counters, lambda r: r.held == 1, 5)
            await asyncio.to_thread(drip.wait_for_counters, lambda r: r.held == 1, 5)
            loop = asyncio.get_running_loop()
            started = loop.time()
            stop.set()
            await asyncio.wait_for(running, 10)
            return loop.time() - started

    took = asyncio.run(scenario())
    assert took < 4
    rows = store.outbox()
    assert len(rows) == 2
    assert all(row.status == "pending" and row.attempts == 0 for row in rows)
    with store._lock:
        leases = store._db.execute("SELECT lease_until FROM outbox").fetchall()
    assert all(lease[0] is None for lease in leases)


class SteppedWall:
    """A wall clock stepped by hand (the loop's monotonic clock runs on undisturbed)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.mark.parametrize("step", [-2, 2], ids=["back-2h", "forward-2h"])
def test_retries_run_on_the_monotonic_clock_whatever_the_wall_clock_does(store, step):
    """A notification fails, then the wall clock jumps by two hours either way: the retry
    comes after the backoff (50 ms) all the same, nothing expires early, and it is sent once
    the receiver recovers."""
    wall = SteppedWall()

    async def scenario() -> list[str]:
        with Receiver(behaviour="fail") as receiver:
            notifier = Notifier([Target("t", receiver.url)], store, clock=wall, **FAST)
            stop = asyncio.Event()
            running = asyncio.create_task(notifier.run(stop))
            notifier.enqueue(note("n1", created_at=wall()))
            await until(lambda: receiver.rejected >= 1, 5, "a first failure")
            wall.offset = timedelta(hours=step)
            receiver.behave("ok")
            await receiver.wait_for_async(1, timeout=5)
            stop.set()
            await asyncio.wait_for(running, 5)
            return receiver.ids()

    assert asyncio.run(scenario()) == ["n1"]
    assert [row.status for row in store.outbox()] == ["sent"]


@pytest.mark.slow
def test_while_the_outbox_cannot_be_written_notifications_go_out_directly_and_are_written_later(
    store,
):
    """Direct sends (the service's degraded mode) reach every routed target and are retried
    from memory; once the state can be written, ``record_direct`` puts them in the outbox as
    sent, so a restart does not send them again."""

    async def scenario() -> tuple[list[str], bool]:
        with Receiver() as receiver, Receiver() as flaky:
            flaky.fail_next(1)
            notifier = Notifier([Target("a", receiver.url), Target("b", flaky.url)], store, **FAST)
            stop = asyncio.Event()
            running = asyncio.create_task(notifier.run(stop))
            assert await notifier.submit_direct(note("n1")) == 2
            await receiver.wait_for_async(1, timeout=5)
            await flaky.wait_for_async(1, timeout=5)  # retried after its 500
            assert store.outbox() == []
            await until(lambda: notifier.record_direct(), 5, "recorded")
            stop.set()
            await asyncio.wait_for(running, 5)
            return receiver.ids() + flaky.ids(), notifier.direct_pending

    ids, pending = asyncio.run(scenario())
    assert ids == ["n1", "n1"]
    assert not pending
    assert sorted((row.target_name, row.status) for row in store.outbox()) == [
        ("a", "sent"),
        ("b", "sent"),
    ]


# -- URLs: checked by Apprise's parser, secrets masked whatever their length --------------------


@pytest.mark.parametrize(
    ("url", "shown", "reason"),
    [
        ("notaurl", "***", "Unsupported URL"),
        ("tgram://", "tgram://***", "Telegram"),
        ("json://", "json://***", "JSON"),
        ("", "(empty)", "Unsupported URL"),
        ("json://[::1/secret-path", "json://***", "Unparseable JSON URL"),
        ("json://127.0.0.1:99999/hook", "json://***", "port is not a number from 1 to 65535"),
    ],
    ids=["no-scheme", "tgram-empty", "json-empty", "empty", "invalid-host", "port"],
)
def test_a_url_apprise_cannot_use_is_named_masked_with_the_reason(url, shown, reason):
    """Each URL Apprise's own parser rejects has a reason, shown without any part of it."""
    problem = url_problem(url)
    assert problem is not None and reason in problem
    assert mask_url(url) == shown
    for part in ("notaurl", "secret-path", "hook"):
        assert part not in problem


def test_usable_urls_pass():
    """A webhook, a Telegram bot and the console print are accepted."""
    assert url_problem("json://127.0.0.1:8080/hook") is None
    assert url_problem("tgram://123456789:AAbbCCddEEff/12345") is None
    assert url_problem("console://") is None


def test_every_credential_part_is_masked_at_debug_whatever_its_length():
    """With ``log_level = DEBUG`` the libraries log pieces of a URL: a Telegram token of 11
    letters (no digit), a 3-letter password, a chat id. None of them reaches the log; the
    words around them stay readable (a whole URL is masked as before)."""
    token = "SECRETTOKEN"
    telegram = f"tgram://123456789:{token}/4242"
    webhook = "json://bob:pw9@127.0.0.1:8080/hooks/abc"
    redactor.register(secret_fragments(telegram) + secret_fragments(webhook))
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("DEBUG", None, "console", stream=stream)
    try:
        logging.getLogger("urllib3.connectionpool").debug(
            'https://api.telegram.org:443 "POST /bot123456789:%s/sendMessage HTTP/1.1" 200', token
        )
        logging.getLogger("urllib3.connectionpool").debug("chat %s answered", "4242")
        logging.getLogger("apprise").debug("JSON POST URL: http://127.0.0.1:8080/hooks/abc")
        structlog.get_logger("monitor.notifier").debug("auth", user="bob", password="pw9")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    text = stream.getvalue()
    for secret in (token, "123456789", "4242", "pw9", "abc"):
        assert secret not in text, secret
    assert "sendMessage" in text and "answered" in text and "JSON POST URL" in text
