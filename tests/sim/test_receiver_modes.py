"""Receivers that misbehave on purpose (issue 11.1): real HTTP over 127.0.0.1 to a receiver
that dribbles its answer, never answers, answers 500 or resets the connection, each bounded
by ``hang_limit`` and by ``stop()``, with counters a test can read."""

from __future__ import annotations

import http.client
import json
import socket
import time

import apprise
import pytest

from monitor.sim.receiver import BEHAVIOURS, Receiver

BODY = json.dumps({"title": "t", "message": "m\nid: DU1:cushion:1", "type": "info"}).encode()


def connection(receiver: Receiver, timeout: float) -> http.client.HTTPConnection:
    """An HTTP connection to the receiver whose every socket read waits up to ``timeout``."""
    return http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=timeout)


def send(conn: http.client.HTTPConnection) -> None:
    conn.request("POST", "/", body=BODY, headers={"Content-Type": "application/json"})


@pytest.mark.slow
def test_a_dribbling_receiver_answers_one_byte_at_a_time_and_counts_it():
    """Each byte of the answer comes ``dribble_interval`` apart: a client whose read timeout
    exceeds the interval never times out, yet waits the whole dribble (about 80 bytes here);
    the connection counts as held meanwhile, then completed, and the message is recorded."""
    with Receiver(behaviour="dribble", dribble_interval=0.01, hang_limit=10) as receiver:
        conn = connection(receiver, timeout=2)
        send(conn)
        receiver.wait_for_counters(lambda r: r.held == 1, 5)
        assert receiver.messages == []  # not delivered before its last byte
        started = time.monotonic()
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b'{"ok": true}'
        receiver.wait_for_counters(lambda r: r.completed == 1 and r.held == 0, 5)
        assert time.monotonic() - started > 0.2  # dozens of bytes, 10 ms apart
        assert [m.notification_id for m in receiver.messages] == ["DU1:cushion:1"]
        assert (receiver.accepted, receiver.dropped) == (1, 0)
        conn.close()


def test_the_dribble_is_cut_at_the_hang_limit():
    """A dribble longer than ``hang_limit`` is cut: the client sees a broken answer, the
    receiver counts it dropped and records nothing."""
    with Receiver(behaviour="dribble", dribble_interval=0.05, hang_limit=0.3) as receiver:
        conn = connection(receiver, timeout=5)
        send(conn)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            conn.getresponse().read()
        receiver.wait_for_counters(lambda r: r.dropped == 1 and r.held == 0, 5)
        assert receiver.completed == 0 and receiver.messages == []
        conn.close()


def test_a_hanging_receiver_holds_the_socket_and_stop_lets_it_go():
    """ "hang" reads the request and never answers: the client times out, the receiver counts
    the connection held; stop() releases it at once (well inside the 30 s hang limit)."""
    receiver = Receiver(behaviour="hang", hang_limit=30).start()
    try:
        conn = connection(receiver, timeout=0.3)
        send(conn)
        with pytest.raises(TimeoutError):
            conn.getresponse()
        receiver.wait_for_counters(lambda r: r.held == 1 and r.accepted == 1, 5)
        conn.close()
    finally:
        started = time.monotonic()
        receiver.stop()
    assert time.monotonic() - started < 5
    receiver.wait_for_counters(lambda r: r.held == 0 and r.dropped == 1, 5)
    assert receiver.completed == 0 and receiver.messages == []


def test_a_closing_receiver_resets_the_connection():
    """ "close" reads the request and resets the socket: no answer at all."""
    with Receiver(behaviour="close") as receiver:
        conn = connection(receiver, timeout=5)
        send(conn)
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
            conn.getresponse()
        receiver.wait_for_counters(lambda r: r.dropped == 1, 5)
        assert (receiver.accepted, receiver.completed, receiver.messages) == (1, 0, [])
        conn.close()


def test_a_failing_receiver_answers_500_until_told_otherwise():
    """ "fail" answers 500 (counted as rejected and completed); behave("ok") recovers."""
    with Receiver(behaviour="fail") as receiver:
        assert receiver.behaviour == "fail"
        conn = connection(receiver, timeout=5)
        send(conn)
        response = conn.getresponse()
        assert response.status == 500
        response.read()
        receiver.wait_for_counters(lambda r: r.completed == 1, 5)
        assert (receiver.rejected, receiver.messages) == (1, [])
        receiver.behave("ok")
        send(conn)
        assert conn.getresponse().status == 200
        receiver.wait_for_counters(lambda r: r.completed == 2, 5)
        assert len(receiver.messages) == 1
        conn.close()


def test_apprise_gives_up_on_a_closing_receiver_and_reaches_it_once_it_answers():
    """Real Apprise to a receiver that resets: notify() reports failure, nothing recorded;
    the same URL works once the receiver behaves."""
    with Receiver(behaviour="close") as receiver:
        notifier = apprise.Apprise()
        assert notifier.add(receiver.url)
        assert not notifier.notify(title="t", body="b")
        assert receiver.dropped >= 1 and receiver.messages == []
        receiver.behave("ok")
        assert notifier.notify(title="t", body="b")
        assert [m.title for m in receiver.messages] == ["t"]


def test_a_behaviour_is_checked():
    """An unknown behaviour or a non-positive interval is refused with the choices named."""
    assert set(BEHAVIOURS) == {"ok", "fail", "hang", "dribble", "close"}
    receiver = Receiver()
    with pytest.raises(ValueError, match="choose from ok, fail, hang, dribble, close"):
        receiver.behave("slow")  # type: ignore[arg-type]  # a wrong value on purpose
    with pytest.raises(ValueError, match="dribble_interval"):
        receiver.behave("dribble", dribble_interval=0)


def test_a_raw_socket_sees_the_first_byte_long_before_the_last():
    """The dribble starts at once: the status line's first byte arrives within a second while
    the rest is still on its way."""
    request = (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(BODY)}\r\n\r\n").encode()
    with Receiver(behaviour="dribble", dribble_interval=0.2, hang_limit=3) as receiver:
        sock = socket.create_connection(("127.0.0.1", receiver.port), timeout=2)
        try:
            sock.sendall(request + BODY)
            assert sock.recv(100) == b"H"
            receiver.wait_for_counters(lambda r: r.held == 1, 5)
        finally:
            sock.close()
