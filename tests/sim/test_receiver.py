"""The local notification receiver: real HTTP over 127.0.0.1, from urllib and from Apprise's
own ``json://`` plugin, answering 200, 500 on demand, or not at all while told to hang."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import apprise
import pytest

from monitor.sim.receiver import Receiver


def post(url: str, payload: dict[str, object], timeout: float = 5.0) -> int:
    """POST ``payload`` as JSON; the HTTP status (an error status is returned, not raised)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_a_post_is_recorded_with_its_path_payload_and_id():
    """Each accepted POST is kept in order with its path, title, body, type and the stable id
    from the body's last ``id:`` line; clear() forgets them."""
    with Receiver() as receiver:
        assert receiver.url == f"json://127.0.0.1:{receiver.port}/"
        body = {
            "title": "[WARNING] DU1 cushion",
            "message": "low\nid: DU1:cushion:1",
            "type": "warning",
        }
        assert post(f"{receiver.http_url}hooks/abc", body) == 200
        assert post(receiver.http_url, {"title": "no id", "message": "x"}) == 200
        first, second = receiver.wait_for(2, timeout=5)
        assert (first.path, first.title, first.type) == ("/hooks/abc", body["title"], "warning")
        assert first.notification_id == "DU1:cushion:1" and second.notification_id is None
        assert receiver.ids() == ["DU1:cushion:1"]
        receiver.clear()
        assert receiver.messages == [] and receiver.rejected == 0


def test_apprise_json_url_reaches_it():
    """Apprise's json:// plugin posts its JSON payload here: title, message and type arrive."""
    with Receiver() as receiver:
        sender = apprise.Apprise()
        assert sender.add(receiver.url)
        assert sender.notify(body="cushion 18%\nid: x1", title="[WARNING] DU1")
        (message,) = receiver.wait_for(1, timeout=10)
        assert message.title == "[WARNING] DU1"
        assert message.message == "cushion 18%\nid: x1" and message.notification_id == "x1"
        assert message.payload["version"] == "1.0" and message.type == "info"


def test_failing_on_demand_answers_500_and_counts_it():
    """fail_next(1) rejects one request; set_failing(True) rejects every one until turned
    off; rejected requests are counted and not recorded."""
    with Receiver() as receiver:
        receiver.fail_next(1)
        assert post(receiver.http_url, {"title": "a"}) == 500
        assert post(receiver.http_url, {"title": "b"}) == 200
        receiver.set_failing(True)
        assert [post(receiver.http_url, {"title": "c"}) for _ in range(2)] == [500, 500]
        receiver.set_failing(False)
        assert post(receiver.http_url, {"title": "d"}) == 200
        assert [m.title for m in receiver.messages] == ["b", "d"]
        assert receiver.rejected == 3


def test_a_hanging_receiver_holds_requests_until_released():
    """While hanging, a request gets no answer (the sender times out); once released, the held
    request is recorded."""
    with Receiver() as receiver:
        receiver.set_hanging(True)
        outcome: dict[str, BaseException] = {}

        def send() -> None:
            try:
                post(receiver.http_url, {"title": "held"}, timeout=0.3)
            except OSError as error:  # socket timeout: no answer came
                outcome["error"] = error

        sender = threading.Thread(target=send)
        sender.start()
        sender.join(10)
        assert isinstance(outcome.get("error"), TimeoutError)
        receiver.set_hanging(False)
        (message,) = receiver.wait_for(1, timeout=5)
        assert message.title == "held"


def test_waiting_for_messages_that_never_come_times_out():
    """wait_for and wait_until raise TimeoutError saying what arrived."""
    with Receiver() as receiver:
        with pytest.raises(TimeoutError, match="received 0 message"):
            receiver.wait_for(1, timeout=0.05)
        with pytest.raises(TimeoutError, match=r"received \[\]"):
            receiver.wait_until(lambda messages: bool(messages), timeout=0.05)
