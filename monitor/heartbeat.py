"""The heartbeat to a dead man's switch, the healthchecks.io way.

``[notify] heartbeat_url`` (an http(s) URL, checked at load) receives ``<url>/start`` when the
daemon starts, ``<url>`` every ``heartbeat_seconds`` while the monitor is healthy (reading the
gateway, data fresh) and ``<url>/fail`` while it is blind (disconnected, a wedged link, no
fresh data), so the switch pages someone both when the monitor dies and when it runs blind.
``notify-test`` sends ``<url>`` once, to prove the address works. A suffix goes at the end of
the path, before any query (``https://hc-ping.com/<uuid>/fail``).

A ping never holds anything up: each runs in a daemon thread of its own
(:class:`~monitor.notifier.Attempt`) with a short deadline after which its socket is cut, and
at most one is in flight; a failing switch is logged once when it starts failing and once
when it answers again. The URL is logged as its scheme and host only (``https://hc-ping.com/***``).
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import structlog

from monitor.logs import redactor
from monitor.notifier import Attempt, secret_fragments

log = structlog.get_logger("monitor.heartbeat")

#: Seconds a ping may take, connect and answer included (healthchecks.io answers in well under
#: one); then it is cut.
PING_TIMEOUT = 5.0
Signal = Literal["start", "ok", "fail"]
_SUFFIX: dict[Signal, str] = {"start": "/start", "ok": "", "fail": "/fail"}


def ping_url(url: str, signal: Signal) -> str:
    """``url`` with the signal's suffix at the end of its path (query kept)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + _SUFFIX[signal] if _SUFFIX[signal] else parts.path
    return urlunsplit(parts._replace(path=path))


def shown_url(url: str) -> str:
    """How the heartbeat URL is logged: scheme and host, no credentials, path masked."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    with contextlib.suppress(ValueError):
        if parts.port:
            host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}/***"


class Heartbeat:
    """Pings one heartbeat URL; see the module docstring."""

    def __init__(self, url: str, timeout: float = PING_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout
        self.shown = shown_url(url)
        self.failing = False
        self._pending: Attempt | None = None
        redactor.register(secret_fragments(url))
        redactor.allow(self.shown)

    @property
    def busy(self) -> bool:
        """True while a ping is still on its way (the next one is then skipped)."""
        return self._pending is not None and self._pending.busy

    async def ping(self, signal: Signal) -> tuple[bool, str]:
        """Send one ping within :attr:`timeout` seconds; (ok, short error without the URL)."""
        target = ping_url(self.url, signal)
        attempt = Attempt(lambda: _get(target, self.timeout), "heartbeat").start()
        self._pending = attempt
        try:
            return await asyncio.wait_for(asyncio.shield(attempt.result), self.timeout)
        except TimeoutError:
            attempt.cut()
            return False, f"no answer within {self.timeout:g} s"

    async def beat(self, signal: Signal) -> bool | None:
        """:meth:`ping`, logging the first failure of a stretch and the recovery after it;
        ``None`` (skipped) while the previous ping is still on its way."""
        if self.busy:
            return None
        ok, error = await self.ping(signal)
        if not ok and not self.failing:
            log.warning("heartbeat failed", url=self.shown, signal=signal, error=error)
        elif ok and self.failing:
            log.info("heartbeat answered again", url=self.shown, signal=signal)
        self.failing = not ok
        return ok

    async def run(self, healthy: Callable[[], bool], every: float, stop: asyncio.Event) -> None:
        """``/start`` now, then every ``every`` seconds ``<url>`` while ``healthy()`` or
        ``/fail`` while not, until ``stop`` is set."""
        log.info("heartbeat", url=self.shown, every_seconds=every)
        await self.beat("start")
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set():
                break
            await self.beat("ok" if healthy() else "fail")


def _get(url: str, timeout: float) -> tuple[bool, str]:
    """One GET (in an :class:`~monitor.notifier.Attempt`'s thread): (ok, error class name)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read(1024)
    except Exception as error:
        code = getattr(error, "code", None)
        return False, f"HTTP {code}" if code else type(error).__name__
    return True, ""
