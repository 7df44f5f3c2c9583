"""A local notification receiver: the other end of Apprise's ``json://`` URL.

Product code, not a test double: the tests, the benchmarks and the demo use it to see exactly
what a real endpoint would receive, and to rehearse an endpoint that fails. It is a small HTTP
server bound to 127.0.0.1 in a background thread that records every POST (Apprise's JSON
payload: ``version``, ``title``, ``message``, ``type``, ``attachments``) with its arrival time.
It can answer HTTP 500 for the next N requests (:meth:`Receiver.fail_next`) or until told
otherwise (:meth:`Receiver.set_failing`), or hold requests unanswered (:meth:`Receiver.set_hanging`)
to play a target that hangs.

Each instance can also misbehave the way broken endpoints do (:meth:`Receiver.behave`, or
``Receiver(behaviour=...)``): ``"dribble"`` answers one byte every ``dribble_interval``
seconds (a stuck proxy), ``"hang"`` reads the request and never answers (the socket is held),
``"fail"`` answers 500, ``"close"`` reads the request and resets the connection; ``"ok"``
answers at once. Nothing is held longer than ``hang_limit`` seconds (then the connection is
closed), and :meth:`Receiver.stop` lets everything go at once, so a misbehaving receiver never
keeps a test from finishing. Counters: :attr:`~Receiver.accepted` (requests read),
:attr:`~Receiver.completed` (answered in full), :attr:`~Receiver.held` (being held or dribbled
now), :attr:`~Receiver.dropped` (closed without a full answer). :attr:`~Receiver.messages`
holds what was answered 200 in full (a dribbled message once its last byte is out).

A GET or HEAD is a heartbeat ping (healthchecks.io style: ``/<uuid>``, ``/<uuid>/start``,
``/<uuid>/fail``): answered ``OK`` and kept in :attr:`~Receiver.pings` (its path and arrival),
or held, refused or reset like a POST under the behaviours above.

    with Receiver() as receiver:
        notifier = Notifier([Target("json#1", receiver.url)], store)
        ...
        receiver.wait_for(1, timeout=5)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, get_args

_ID_LINE = re.compile(r"^id: (\S+)\s*$", re.MULTILINE)
Behaviour = Literal["ok", "fail", "hang", "dribble", "close"]
BEHAVIOURS: tuple[Behaviour, ...] = get_args(Behaviour)


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One accepted POST."""

    received_at: datetime
    path: str
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """The notification title."""
        return str(self.payload.get("title", ""))

    @property
    def message(self) -> str:
        """The notification body."""
        return str(self.payload.get("message", ""))

    @property
    def type(self) -> str:
        """Apprise's notify type: info, success, warning or failure."""
        return str(self.payload.get("type", ""))

    @property
    def attachments(self) -> list[dict[str, Any]]:
        """Attachments as Apprise sends them (filename, base64, mimetype)."""
        return list(self.payload.get("attachments") or [])

    @property
    def notification_id(self) -> str | None:
        """The stable id from the message's ``id: ...`` line (``None`` if absent)."""
        found = _ID_LINE.findall(self.message)
        return found[-1] if found else None


@dataclass(frozen=True, slots=True)
class Ping:
    """One heartbeat ping answered 200 (a GET or HEAD)."""

    received_at: datetime
    method: str
    path: str

    @property
    def signal(self) -> str:
        """``start``, ``fail`` or ``ok`` (the plain ping), read from the path's end."""
        last = self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return last if last in ("start", "fail") else "ok"


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records Apprise ``json://`` notifications."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        hang_limit: float = 30.0,
        behaviour: Behaviour = "ok",
        dribble_interval: float = 2.0,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._hang_limit = hang_limit
        self._condition = threading.Condition()
        self._messages: list[ReceivedMessage] = []
        self._pings: list[Ping] = []
        self._rejected = 0
        self._fail_next = 0
        self._failing = False
        self._released = threading.Event()
        self._released.set()
        self._stopping = threading.Event()
        self._behaviour: Behaviour = "ok"
        self._dribble_interval = 2.0
        self._accepted = 0
        self._completed = 0
        self._held = 0
        self._dropped = 0
        self.behave(behaviour, dribble_interval=dribble_interval)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Receiver:
        """Bind and serve in a background thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = ThreadingHTTPServer((self._host, self._requested_port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="notification-receiver",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (held and dribbling connections are let go)."""
        self._released.set()
        self._stopping.set()
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The Apprise URL that posts here."""
        return f"json://{self._host}:{self.port}/"

    @property
    def http_url(self) -> str:
        """The plain HTTP address."""
        return f"http://{self._host}:{self.port}/"

    # -- behaviour -------------------------------------------------------------------------

    def fail_next(self, count: int) -> None:
        """Answer HTTP 500 to the next ``count`` requests."""
        with self._condition:
            self._fail_next = max(0, int(count))

    def set_failing(self, failing: bool) -> None:
        """Answer HTTP 500 to every request until called with ``False``."""
        with self._condition:
            self._failing = bool(failing)

    def set_hanging(self, hanging: bool) -> None:
        """Hold requests without answering (bounded by ``hang_limit``) until ``False``."""
        if hanging:
            self._released.clear()
        else:
            self._released.set()

    def behave(self, behaviour: Behaviour, *, dribble_interval: float | None = None) -> None:
        """From now on answer as ``behaviour``: "ok", "fail" (500), "hang" (never answer),
        "dribble" (one byte every ``dribble_interval`` seconds) or "close" (reset)."""
        if behaviour not in BEHAVIOURS:
            raise ValueError(
                f"unknown behaviour {behaviour!r}; choose from {', '.join(BEHAVIOURS)}"
            )
        interval = self._dribble_interval if dribble_interval is None else dribble_interval
        if not interval > 0:
            raise ValueError(f"dribble_interval must be above zero, got {interval!r}")
        with self._condition:
            self._behaviour = behaviour
            self._dribble_interval = float(interval)

    @property
    def behaviour(self) -> Behaviour:
        """How requests are answered now."""
        with self._condition:
            return self._behaviour

    @property
    def accepted(self) -> int:
        """Requests read so far (whatever the answer)."""
        return self._read("_accepted")

    @property
    def completed(self) -> int:
        """Requests answered in full (200 or 500)."""
        return self._read("_completed")

    @property
    def held(self) -> int:
        """Connections being held unanswered or dribbled right now."""
        return self._read("_held")

    @property
    def dropped(self) -> int:
        """Requests whose connection was closed without a full answer (reset, or capped)."""
        return self._read("_dropped")

    def _read(self, counter: str) -> int:
        with self._condition:
            return int(getattr(self, counter))

    # -- what arrived ----------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Every accepted message, in arrival order (a copy)."""
        with self._condition:
            return list(self._messages)

    @property
    def pings(self) -> list[Ping]:
        """Every heartbeat ping answered, in arrival order (a copy)."""
        with self._condition:
            return list(self._pings)

    def wait_for_pings(self, predicate: Callable[[list[Ping]], bool], timeout: float) -> list[Ping]:
        """Block until ``predicate(pings)`` holds; TimeoutError listing the signals if not."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not predicate(list(self._pings)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    signals = [ping.signal for ping in self._pings]
                    raise TimeoutError(f"condition not met; pings received: {signals}")
                self._condition.wait(remaining)
            return list(self._pings)

    async def wait_for_pings_async(
        self, predicate: Callable[[list[Ping]], bool], timeout: float
    ) -> list[Ping]:
        """:meth:`wait_for_pings` for async code."""
        return await asyncio.to_thread(self.wait_for_pings, predicate, timeout)

    @property
    def rejected(self) -> int:
        """How many requests were answered with HTTP 500."""
        with self._condition:
            return self._rejected

    def ids(self) -> list[str]:
        """The notification ids of the accepted messages, in arrival order."""
        return [m.notification_id for m in self.messages if m.notification_id is not None]

    def clear(self) -> None:
        """Forget what was received."""
        with self._condition:
            self._messages.clear()
            self._pings.clear()
            self._rejected = 0

    def wait_for(self, count: int, timeout: float) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages were accepted; raise TimeoutError if not."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while len(self._messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"received {len(self._messages)} message(s), expected {count}"
                    )
                self._condition.wait(remaining)
            return list(self._messages)

    def wait_until(
        self, predicate: Callable[[list[ReceivedMessage]], bool], timeout: float
    ) -> list[ReceivedMessage]:
        """Block until ``predicate(messages)`` holds; raise TimeoutError (with a count) if not."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not predicate(list(self._messages)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    titles = [message.title for message in self._messages]
                    raise TimeoutError(f"condition not met; received {titles}")
                self._condition.wait(remaining)
            return list(self._messages)

    def wait_for_counters(self, predicate: Callable[[Receiver], bool], timeout: float) -> None:
        """Block until ``predicate(receiver)`` holds (e.g. ``lambda r: r.held == 1``); counters
        wake the waiters when they change. TimeoutError naming the counters if not."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"condition not met; accepted {self._accepted}, completed "
                        f"{self._completed}, held {self._held}, dropped {self._dropped}"
                    )
                self._condition.wait(remaining)

    async def wait_until_async(
        self, predicate: Callable[[list[ReceivedMessage]], bool], timeout: float
    ) -> list[ReceivedMessage]:
        """:meth:`wait_until` for async code."""
        return await asyncio.to_thread(self.wait_until, predicate, timeout)

    async def wait_for_async(self, count: int, timeout: float) -> list[ReceivedMessage]:
        """:meth:`wait_for` for async code (waits in a worker thread, not on the loop)."""
        return await asyncio.to_thread(self.wait_for, count, timeout)

    # -- called by the handler -------------------------------------------------------------

    def _decide(self, *, failing: bool = False) -> bool:
        """True when this request must be rejected (``failing``: the behaviour says so)."""
        with self._condition:
            if self._fail_next > 0:
                self._fail_next -= 1
                self._rejected += 1
                return True
            if self._failing or failing:
                self._rejected += 1
                return True
            return False

    def _record(self, message: ReceivedMessage) -> None:
        with self._condition:
            self._messages.append(message)
            self._condition.notify_all()

    def _record_ping(self, ping: Ping) -> None:
        with self._condition:
            self._pings.append(ping)
            self._condition.notify_all()

    def _count(self, counter: str, step: int = 1) -> None:
        """Change a counter and wake the waiters (tests wait on counters too)."""
        with self._condition:
            setattr(self, counter, getattr(self, counter) + step)
            self._condition.notify_all()

    def _accept(self) -> tuple[Behaviour, float]:
        """Count a request read; the behaviour and dribble interval it gets."""
        with self._condition:
            self._accepted += 1
            self._condition.notify_all()
            return self._behaviour, self._dribble_interval

    def _hold(self, seconds: float) -> bool:
        """Wait up to ``seconds`` (less when stopping); False once the receiver is stopping."""
        return not self._stopping.wait(seconds)


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            behaviour, interval = receiver._accept()
            if self._drop(behaviour):
                return
            receiver._released.wait(receiver._hang_limit)
            if receiver._decide(failing=behaviour == "fail"):
                self._answer(500, b'{"error": "failing on purpose"}')
                return
            try:
                payload = json.loads(raw.decode("utf-8")) if raw else {}
            except (UnicodeDecodeError, json.JSONDecodeError):
                payload = {"raw": raw.decode("utf-8", "replace")}
            if not isinstance(payload, dict):
                payload = {"raw": payload}
            message = ReceivedMessage(
                received_at=datetime.now(UTC),
                path=self.path,
                payload=payload,
                headers={key: value for key, value in self.headers.items()},
            )
            if behaviour == "dribble":
                if self._dribble(200, b'{"ok": true}', interval):
                    receiver._record(message)
                return
            receiver._record(message)
            self._answer(200, b'{"ok": true}')

        def do_GET(self) -> None:
            self._ping()

        def do_HEAD(self) -> None:
            self._ping()

        def _ping(self) -> None:
            """A heartbeat ping: recorded and answered ``OK`` unless told to misbehave."""
            behaviour, _ = receiver._accept()
            if self._drop(behaviour):
                return
            if receiver._decide(failing=behaviour == "fail"):
                self._answer(500, b"failing on purpose")
                return
            receiver._record_ping(Ping(datetime.now(UTC), self.command, self.path))
            self._answer(200, b"OK")

        def _drop(self, behaviour: Behaviour) -> bool:
            """Reset at once ("close") or after holding the request ("hang"): True when the
            request was dropped so, False when it is to be answered."""
            if behaviour == "hang":
                receiver._count("_held")
                try:
                    receiver._hold(receiver._hang_limit)
                finally:
                    receiver._count("_held", -1)
            elif behaviour != "close":
                return False
            self._reset()
            return True

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            receiver._count("_completed")

        def _dribble(self, status: int, body: bytes, interval: float) -> bool:
            """Write the answer one byte every ``interval`` seconds, within ``hang_limit``;
            True when the last byte went out."""
            head = (
                f"HTTP/1.1 {status} {self.responses[status][0]}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            data = head.encode("ascii") + body
            deadline = time.monotonic() + receiver._hang_limit
            receiver._count("_held")
            try:
                for index in range(len(data)):
                    if index and (
                        time.monotonic() + interval > deadline or not receiver._hold(interval)
                    ):
                        self._reset()
                        return False
                    self.wfile.write(data[index : index + 1])
            except OSError:  # the sender gave up and closed its end
                receiver._count("_dropped")
                self.close_connection = True
                return False
            finally:
                receiver._count("_held", -1)
            receiver._count("_completed")
            return True

        def _reset(self) -> None:
            """Close at once with a TCP reset (SO_LINGER 0): no answer at all."""
            receiver._count("_dropped")
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests and the demo print what matters themselves."""

    return Handler
