"""The read-only status page, served by the daemon on its own event loop (aiohttp, Jinja2).

Pages: ``/`` the overview (a card per account), ``/account/<id>`` an account's rules, alerts,
day chart and positions, ``/summaries`` the archive of daily summaries with their charts.
``/events`` and ``/account/<id>/events`` are server-sent event streams: after each evaluation
the server renders the changed parts with the same templates and pushes them, so an open page
follows the monitor within a fraction of a second without reloading; every few seconds the
stream also carries the link's state, so a page shows plainly when the gateway is gone or the
monitor blind, and the page's script shows when the stream itself is lost.

Read-only by construction: every route is a GET (anything else is 405), no form, nothing that
reaches the gateway. It binds to ``[web] host`` (127.0.0.1 by default); with ``[web] token``
every request must carry it (``Authorization: Bearer``, or ``?token=`` once, which sets a
cookie), compared in constant time; a missing or wrong token gets 401 on every path, known or
not, so it reveals nothing. Unknown paths and accounts get a 404 page. Access logs are off, so
a token in a query string is never logged.

Why these libraries: aiohttp serves HTTP and server-sent events on the daemon's own asyncio
loop (no thread, no second process), with a mature parser and streaming responses; Jinja2
renders the pages and the live fragments from one set of autoescaping templates. Charts are
SVG drawn by :mod:`monitor.webchart`, and the only script is ``webui/static/live.js`` (no build
step, nothing fetched from the internet). Only this module imports them, and only when the page
is on (``monitor.app`` imports it lazily), so other commands start without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import structlog
from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from monitor.settings import ConfigError
from monitor.webview import (
    EvaluatedView,
    Recent,
    WebSource,
    account_page,
    account_status,
    card,
    chart_path,
    known_accounts,
    link_status,
    markdown_html,
    overview,
    summaries,
    summary_for,
    tally,
)
from rules.clock import zone as zone_named

log = structlog.get_logger("monitor.web")

ASSETS = Path(__file__).resolve().parent / "webui"
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
SESSION_COOKIE = "margin_monitor_session"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
#: Without a change, the stream still sends the link's state this often (seconds): the page's
#: heartbeat, and how a long disconnect becomes "blind" on screen.
PING_SECONDS = 5.0
#: After pushing an update, gather further evaluations for this long (seconds) into the next.
COALESCE_SECONDS = 0.1

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Subscriber:
    """One open stream: the accounts evaluated since it last sent (``None``: any account)."""

    def __init__(self, account: str | None) -> None:
        self.account = account
        self.changed: set[str] = set()
        self.wake = asyncio.Event()

    def mark(self, account: str) -> None:
        """Note that ``account`` was evaluated (when this stream shows it)."""
        if self.account is None or self.account == account:
            self.changed.add(account)
            self.wake.set()

    async def next_change(self, timeout: float) -> set[str]:
        """The accounts evaluated since the last call, waiting up to ``timeout`` for one."""
        if not self.changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)
        self.wake.clear()
        changed, self.changed = self.changed, set()
        return changed


class LiveHub:
    """Fans each evaluation out to the open streams (a set add per stream: never blocks)."""

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.closed = False
        self._none_open = asyncio.Event()
        self._none_open.set()

    def subscribe(self, account: str | None) -> Subscriber:
        """A new stream's subscriber."""
        subscriber = Subscriber(account)
        self.subscribers.add(subscriber)
        self._none_open.clear()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a stream that ended."""
        self.subscribers.discard(subscriber)
        if not self.subscribers:
            self._none_open.set()

    async def drained(self, timeout: float) -> bool:
        """Wait (bounded) until every stream has ended; True when none is left."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._none_open.wait(), timeout)
        return not self.subscribers

    def publish(self, account: str) -> None:
        """Tell every stream that ``account`` was evaluated."""
        for subscriber in list(self.subscribers):
            subscriber.mark(account)

    def close(self) -> None:
        """End every stream (the server is stopping)."""
        self.closed = True
        for subscriber in list(self.subscribers):
            subscriber.wake.set()


def token_digest(token: str) -> bytes:
    """A fixed-length digest of a token, so comparing two never depends on their lengths."""
    return hashlib.sha256(token.encode("utf-8")).digest()


class WebServer:
    """The status page over ``source`` (the service) on ``host:port``; see the module docstring.

    ``port`` 0 picks a free port (the bound one is in :attr:`port` after :meth:`start`).
    :meth:`evaluated` is the service's ``on_evaluated`` hook: it feeds the open streams.
    """

    def __init__(
        self,
        source: WebSource,
        host: str,
        port: int,
        *,
        token: str | None = None,
        summaries_dir: Path | None = None,
    ) -> None:
        self.source = source
        self.host = host
        self.port = port
        self.summaries_dir = summaries_dir or source.settings.monitor.summaries_path
        self.hub = LiveHub()
        self.recent = Recent()
        self.zone = zone_named(source.settings.summary.timezone)
        self.stale_seconds = source.settings.rules.stale_data.stale_minutes * 60
        self._token = token_digest(token) if token else None
        self._session = (
            hmac.new(token.encode("utf-8"), b"margin-monitor web session", "sha256").hexdigest()
            if token
            else None
        )
        self._runner: web.AppRunner | None = None
        self._static = {
            path.name: (path.read_bytes(), STATIC_TYPES[path.suffix])
            for path in sorted((ASSETS / "static").iterdir())
            if path.suffix in STATIC_TYPES
        }
        self.templates = Environment(
            loader=FileSystemLoader(ASSETS / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["clock"] = self._clock
        self.templates.filters["age"] = age_text
        self.templates.globals["zone_name"] = source.settings.summary.timezone
        self.templates.globals["stale_seconds"] = self.stale_seconds

    # -- life cycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The overview's address (never with the token)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def protected(self) -> bool:
        """True when a token is required."""
        return self._token is not None

    async def start(self) -> None:
        """Bind and start serving; :class:`~monitor.settings.ConfigError` naming ``[web] port``
        when it cannot be bound (in use, or not allowed), so the daemon stops with one line."""
        app = web.Application(middlewares=[self._guard])
        app.on_response_prepare.append(_security_headers)
        app.on_shutdown.append(self._on_shutdown)
        app.router.add_get("/", self._overview)
        app.router.add_get("/events", self._overview_events)
        app.router.add_get("/account/{account}", self._account)
        app.router.add_get("/account/{account}/events", self._account_events)
        app.router.add_get("/summaries", self._summaries)
        app.router.add_get("/summaries/charts/{name}", self._summary_chart)
        app.router.add_get("/summaries/{day}", self._summary)
        app.router.add_get("/static/{name}", self._static_file)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException as error:
            await runner.cleanup()
            if isinstance(error, OSError):
                reason = os.strerror(error.errno) if error.errno else str(error)
                raise ConfigError(
                    f"the status page cannot listen on {self.host}:{self.port} ({reason}): "
                    "set another [web] port, or stop what uses it"
                ) from None
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def serve(self, stop: asyncio.Event) -> None:
        """Start (unless started) and serve until ``stop`` is set, then close."""
        if self._runner is None:
            await self.start()
        try:
            await stop.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        """End the streams (they finish their current write), then stop listening."""
        self.hub.close()
        await self.hub.drained(timeout=2.0)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            with contextlib.suppress(Exception):
                await runner.cleanup()

    async def _on_shutdown(self, _app: web.Application) -> None:
        self.hub.close()

    def evaluated(self, account: str, view: EvaluatedView) -> None:
        """The service evaluated ``account``: remember it for the page, wake the streams."""
        self.recent.record(account, view)
        self.hub.publish(account)

    # -- guard: GET only, the token, error pages ------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            response = self._error(405, "This page is read-only: only GET is served.")
            response.headers["Allow"] = "GET, HEAD"
            return response
        if self._token is not None and not request.path.startswith("/static/"):
            denied = self._check_token(request)
            if denied is not None:
                return denied
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return self._error(404, "There is no such page or account here.")
        except web.HTTPMethodNotAllowed:
            return self._error(405, "This page is read-only: only GET is served.")

    def _check_token(self, request: web.Request) -> web.Response | None:
        """``None`` when the request carries the token; else the 401 page (or, for a right
        ``?token=``, a redirect to the same address without it that sets the session cookie)."""
        assert self._token is not None and self._session is not None
        offered = request.query.get("token")
        if offered is not None:
            if hmac.compare_digest(token_digest(offered), self._token):
                rest = [(k, v) for k, v in request.query.items() if k != "token"]
                target = request.path + (f"?{urlencode(rest)}" if rest else "")
                response = web.Response(status=303, headers={"Location": target})
                response.set_cookie(
                    SESSION_COOKIE, self._session, httponly=True, samesite="Strict", path="/"
                )
                return response
            return self._unauthorised()
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            if hmac.compare_digest(token_digest(header[7:].strip()), self._token):
                return None
            return self._unauthorised()
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if hmac.compare_digest(token_digest(cookie), token_digest(self._session)):
            return None
        return self._unauthorised()

    def _unauthorised(self) -> web.Response:
        response = self._error(
            401,
            "This status page needs its token: open it once as /?token=<your [web] token> "
            "(or send Authorization: Bearer <token>).",
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="margin-monitor"'
        return response

    def _error(self, status: int, message: str) -> web.Response:
        titles = {401: "Token required", 404: "Not found", 405: "Read-only"}
        return self._page(
            "error.html", status=status, code=status, title=titles[status], message=message
        )

    # -- pages -----------------------------------------------------------------------------------

    def _page(self, template: str, *, status: int = 200, **values: Any) -> web.Response:
        values.setdefault("stream", "")
        values.setdefault("link", None)
        html = self.templates.get_template(template).render(**values)
        return web.Response(
            text=html,
            status=status,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )

    async def _overview(self, request: web.Request) -> web.StreamResponse:
        view = overview(self.source, self.recent)
        return self._page(
            "overview.html", overview=view, link=view.status, stream="/events"
        )

    async def _account(self, request: web.Request) -> web.StreamResponse:
        account = request.match_info["account"]
        page = account_page(self.source, account, self.recent)
        if page is None:
            raise web.HTTPNotFound()
        return self._page(
            "account.html",
            page=page,
            link=link_status(self.source),
            stream=f"/account/{_quoted(account)}/events",
        )

    async def _summaries(self, request: web.Request) -> web.StreamResponse:
        return self._page("summaries.html", entries=summaries(self.summaries_dir))

    async def _summary(self, request: web.Request) -> web.StreamResponse:
        entry = summary_for(self.summaries_dir, request.match_info["day"])
        if entry is None:
            raise web.HTTPNotFound()
        text = await asyncio.to_thread(entry.markdown.read_text, encoding="utf-8")
        return self._page("summary.html", entry=entry, body=markdown_html(text))

    async def _summary_chart(self, request: web.Request) -> web.StreamResponse:
        path = chart_path(self.summaries_dir, request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": "image/png"})

    async def _static_file(self, request: web.Request) -> web.StreamResponse:
        found = self._static.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, kind = found
        return web.Response(body=body, headers={"Content-Type": kind, "Cache-Control": "no-cache"})

    # -- live streams ----------------------------------------------------------------------------

    async def _overview_events(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, None)

    async def _account_events(self, request: web.Request) -> web.StreamResponse:
        account = request.match_info["account"]
        if account not in known_accounts(self.source):
            raise web.HTTPNotFound()
        return await self._stream(request, account)

    async def _stream(self, request: web.Request, account: str | None) -> web.StreamResponse:
        """Push the changed fragments after each evaluation (coalesced), and the link's state
        at least every :data:`PING_SECONDS`, until the client leaves or the server stops."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        subscriber = self.hub.subscribe(account)
        # A new (or reconnected) stream first gets everything it shows.
        for name in [account] if account else known_accounts(self.source):
            subscriber.mark(name)
        try:
            await response.write(b"retry: 2000\n\n")
            while not self.hub.closed:
                changed = await subscriber.next_change(PING_SECONDS)
                if self.hub.closed:
                    break
                fragments = self._fragments(account, changed)
                payload = json.dumps({"fragments": fragments}, separators=(",", ":"))
                await response.write(f"event: update\ndata: {payload}\n\n".encode())
                if changed:
                    await asyncio.sleep(COALESCE_SECONDS)
        except (ConnectionResetError, ConnectionError):
            pass  # the page was closed
        finally:
            self.hub.unsubscribe(subscriber)
        return response

    def _fragments(self, account: str | None, changed: set[str]) -> list[dict[str, str]]:
        """The page parts to replace: the link's banner, then each changed card (and, on an
        account's page, its chart and the rest of its live part; on the overview, the
        counts)."""
        link = link_status(self.source)
        fragments = [{"id": "link-status", "html": self._render("status.html", link=link)}]
        if account is not None:
            if changed:
                page = account_page(self.source, account, self.recent)
                if page is not None:
                    fragments.append(
                        {"id": f"card-{account}", "html": self._render("card.html", c=page.card)}
                    )
                    for part, template in (("chart", "account_chart"), ("live", "account_live")):
                        fragments.append(
                            {"id": part, "html": self._render(f"{template}.html", page=page)}
                        )
            return fragments
        accounts = known_accounts(self.source)
        for name in sorted(changed):
            fragments.append(
                {
                    "id": f"card-{name}",
                    "parent": "cards",
                    "html": self._render(
                        "card.html", c=card(self.source, name, recent=self.recent)
                    ),
                }
            )
        if changed:
            counts, overall = tally(account_status(self.source, name) for name in accounts)
            fragments.append(
                {
                    "id": "overall",
                    "html": self._render("overall.html", counts=counts, worst=overall),
                }
            )
        return fragments

    def _render(self, template: str, **values: Any) -> str:
        return self.templates.get_template(template).render(**values)

    def _clock(self, moment: datetime | None) -> str:
        return "" if moment is None else moment.astimezone(self.zone).strftime("%H:%M:%S")


def age_text(seconds: float | None) -> str:
    """``12 s``, ``3 min``, ``2 h 5 min``; ``n/a`` when unknown."""
    if seconds is None:
        return "n/a"
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _quoted(account: str) -> str:
    return quote(account, safe="")


async def _security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
