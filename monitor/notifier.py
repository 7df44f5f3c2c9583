"""Notifications through Apprise: routing by severity, a durable outbox, retries, quiet hours.

The only module that imports apprise. The path of a notification:

1. :meth:`Notifier.submit` (or :meth:`Notifier.enqueue`) routes it to the targets that receive
   its severity and writes one outbox row per target *before* any attempt (held back to the
   end of quiet hours for anything but ``critical``).
2. :meth:`Notifier.run` (the daemon) gives each target a :class:`Lane` of its own: its rows
   are sent in order, one attempt at a time, each in a thread of its own with a hard deadline
   (``send_timeout``, connect, send and read together: at the deadline the attempt's sockets
   are cut, see :class:`Attempt`), and at most ``max_in_flight`` threads per target ever
   exist, so one failing, hanging or dribbling target never delays another nor piles up
   threads. The ``AppriseResult`` is checked (truthy only on success); a failure is retried
   with exponential backoff (5 s doubling up to 15 min, timed on the monotonic clock) until
   it succeeds or the row is older than ``max_age`` (24 h), then it expires. A success is
   written to the outbox by the sending thread the moment Apprise reports it.
3. :meth:`Notifier.deliver_due` is one round of the same for commands that run once.

When the outbox cannot be written (a full disk), :meth:`Notifier.submit_direct` sends from
memory instead, best effort, and :meth:`Notifier.record_direct` writes it all down once the
state file works again.

Every message ends with a line ``id: <notification id>``; the id is stable across restarts, so
a receiver can drop a duplicate (the outbox already never queues one twice).

Routing: a target receives some of ``info``, ``warning``, ``critical`` and ``summary`` (the
daily summary, whatever its severity). A notification is routed by its severity, or by
``summary`` when it is one (:func:`route_of`). The service routes ``resolved`` and
``de-escalated`` by the worst level of the episode
(:attr:`rules.lifecycle.Transition.notify_severity`), so whoever was told about a critical also
hears that it is over. A notification submitted with severity ``ok`` goes to every target that
receives ``warning`` or ``critical``.

Targets also come from an Apprise configuration file (YAML or text, read by Apprise's own
``AppriseConfig``: :func:`apprise_config_targets`), each receiving what its Apprise tags name;
an entry without a tag (or tagged ``all`` or ``always``) receives everything.

Secrets: a target's URL holds its tokens. It never appears in a log line, an error message, the
outbox or a ``repr``: targets are shown by a safe name (``json#1`` or the configured name),
stored by a key derived from a hash, and error texts are scrubbed of the URL and its parts.

The ``console://`` scheme is a custom Apprise plugin, registered when a ``console://`` URL is
first used, that prints each notification to stdout in a readable block (the demo uses it).
Registering a plugin makes Apprise load every one of its own: done at import, that cost a
tenth of a second to every command, ``check`` included, whether it had a URL or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import socket
import sys
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import apprise
import structlog
from apprise import NotifyFormat, NotifyType

from monitor.clock import Clock, utc_now
from monitor.logs import NOTIFY_THREAD, masker, redactor
from monitor.settings import WEB_SCHEMES, Settings, mask_url
from monitor.store import OutboxItem, Store, StoreError, scrub_error
from rules.catalog import unit_of
from rules.clock import parse_hhmm, zone
from rules.lifecycle import RESOLVED, Transition
from rules.model import Severity
from rules.text import format_value

log = structlog.get_logger("monitor.notifier")

SEVERITIES = ("info", "warning", "critical")
#: What a target can receive: the severities and the daily summary (also Apprise tags).
ROUTES = (*SEVERITIES, "summary")
ALERT_SEVERITIES = frozenset({"warning", "critical"})
#: Apprise tags that mean "everything" (Apprise's own ``all`` and ``always``).
EVERY_ROUTE_TAGS = frozenset({"all", "always"})
#: After the deadline cut a send's sockets, this long is left for its thread to report.
CUT_GRACE = 0.5
#: On stop, a send in flight gets this long to finish before it is cut.
STOP_GRACE = 2.0

ResultHook = Callable[[str, str], None]


# -- values ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One Apprise URL and what it receives (of :data:`ROUTES`).

    ``name`` is what logs and reports show; it must not hold a secret (``json#1``, ``slack#2``
    or a name from the configuration). ``url`` is secret and left out of ``repr``.
    """

    name: str
    url: str = field(repr=False)
    severities: frozenset[str] = frozenset(ROUTES)

    def __post_init__(self) -> None:
        chosen = frozenset(str(severity).lower() for severity in self.severities)
        unknown = chosen - set(ROUTES)
        if unknown:
            raise ValueError(
                f"target {self.name}: unknown severities {sorted(unknown)}; use {ROUTES}"
            )
        object.__setattr__(self, "severities", chosen)

    @classmethod
    def from_url(
        cls,
        url: str,
        index: int,
        severities: Iterable[str] = ROUTES,
        name: str | None = None,
    ) -> Target:
        """A target named ``<scheme>#<index>`` unless a name is given."""
        scheme = url.split("://", 1)[0].lower() if "://" in url else "url"
        return cls(name=name or f"{scheme}#{index}", url=url, severities=frozenset(severities))

    @property
    def key(self) -> str:
        """A stable key for the outbox that does not reveal the URL (a truncated hash)."""
        return "t-" + hashlib.sha256(self.url.encode("utf-8")).hexdigest()[:16]

    def receives(self, severity: str) -> bool:
        """True when this target should get a notification routed by ``severity`` (one of
        :data:`ROUTES`, or ``ok``: every alert target)."""
        severity = str(severity).lower()
        if severity == Severity.OK.value:
            return bool(self.severities & ALERT_SEVERITIES)
        return severity in self.severities

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to deliver. ``severity`` routes it (``info``, ``warning``, ``critical``;
    ``ok`` = every alert target); ``kind`` is the lifecycle kind or e.g. ``summary``.
    ``everywhere``: news about the monitor itself, sent to every target whatever it receives.
    A ``summary`` goes to the targets that receive summaries (:func:`route_of`).
    """

    id: str
    account: str
    rule: str
    severity: str
    kind: str
    title: str
    body: str
    created_at: datetime
    attachments: tuple[str, ...] = ()
    everywhere: bool = False


def route_of(notification: Notification) -> str:
    """What ``notification`` is routed by: ``summary`` for the daily summary, else its
    severity."""
    return "summary" if notification.kind == "summary" else notification.severity


@dataclass(frozen=True, slots=True)
class TargetResult:
    """What happened when sending to one target (``error`` is redacted)."""

    name: str
    ok: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """One delivery attempt of one outbox row."""

    notification_id: str
    target: str
    ok: bool
    error: str | None = None


@dataclass
class DeliveryReport:
    """What one :meth:`Notifier.deliver_due` round did."""

    sent: int = 0
    failed: int = 0
    expired: int = 0
    deferred: int = 0
    results: list[DeliveryResult] = field(default_factory=list)


# -- the console:// plugin ---------------------------------------------------------------------


def render_console(title: str, body: str) -> str:
    """The block printed by ``console://``."""
    rule = "=" * max(40, min(100, len(title) + 8))
    return f"\n{rule}\n  {title}\n{rule}\n{body}\n{rule}"


def _console_plugin(body: str, title: str, *args: Any, **kwargs: Any) -> bool:
    """Apprise plugin for ``console://``: print the notification to stdout."""
    print(render_console(title, body), file=sys.stdout, flush=True)
    return True


_CONSOLE_LOCK = threading.Lock()
_console_registered: list[bool] = []


def _know_scheme(url: str) -> None:
    """Register the ``console://`` plugin before Apprise first meets a ``console://`` URL."""
    if not url.lower().startswith("console://") or _console_registered:
        return
    with _CONSOLE_LOCK:
        if not _console_registered:
            apprise.decorators.notify(on="console", name="Console (margin-monitor)")(
                _console_plugin
            )
            _console_registered.append(True)


# -- formatting --------------------------------------------------------------------------------

def _when(moment: datetime | None) -> str:
    if moment is None:
        return "?"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_transition(transition: Transition, base_currency: str) -> tuple[str, str]:
    """Title and body of a lifecycle notification.

    Title: ``[CRITICAL] DU123456 cushion`` (plus ``(escalated from warning)``, ``(eased from
    critical)`` or ``(reminder)``); a recovery reads ``[RESOLVED] DU123456 cushion (was
    critical)``. Body: the finding's message, value and threshold, the recommended action,
    an ``estimated`` marker, and when the episode started.
    """
    finding = transition.finding
    new, previous = transition.new_severity, transition.previous_severity
    who = f"{finding.account} {finding.rule}"
    kind = transition.kind
    if kind == RESOLVED:
        title = f"[RESOLVED] {who} (was {previous.value})"
    elif kind == "escalated":
        title = f"[{new.value.upper()}] {who} (escalated from {previous.value})"
    elif kind == "de-escalated":
        title = f"[{new.value.upper()}] {who} (eased from {previous.value})"
    elif kind == "reminder":
        title = f"[{new.value.upper()}] {who} (reminder)"
    else:
        title = f"[{new.value.upper()}] {who}"

    def shown(number: float | None) -> str:
        return format_value(number, unit_of(finding.rule), base_currency)

    lines = []
    if finding.data_missing:
        lines.append(f"Still {new.value}: no fresh data ({finding.message}).")
        lines.append(f"Last value notified: {shown(transition.last_value)}")
    else:
        lines.append(finding.message)
        measured = f"Value: {shown(finding.value)}"
        if finding.threshold is not None:
            measured += f" (threshold {shown(finding.threshold)})"
        if finding.estimated:
            age = finding.authoritative_age
            since = f"IB's own figures are {age:.0f} s old" if age is not None else "IB's follow"
            measured += f" [estimated from streaming prices; {since}]"
        lines.append(measured)
    if kind == RESOLVED:
        lines.append(
            f"Resolved: back to ok (was {previous.value}, "
            f"since {_when(transition.episode_started)})."
        )
    else:
        if finding.action and not finding.data_missing:
            lines.append(f"Action: {finding.action}")
        if kind == "fired":
            lines.append(f"Alert: {new.value} since {_when(transition.now)}.")
        else:
            lines.append(
                f"Alert: {previous.value} -> {new.value}; "
                f"firing since {_when(transition.episode_started)}."
            )
    lines.append(f"Account: {finding.account}   Rule: {finding.rule}   At: {_when(transition.now)}")
    return title, "\n".join(lines)


def notification_for(
    transition: Transition, base_currency: str, attachments: Sequence[str] = ()
) -> Notification:
    """The notification of a lifecycle transition, routed by its ``notify_severity``."""
    title, body = format_transition(transition, base_currency)
    return Notification(
        id=transition.notification_id,
        account=transition.finding.account,
        rule=transition.finding.rule,
        severity=transition.notify_severity.value,
        kind=transition.kind,
        title=title,
        body=body,
        created_at=transition.now,
        attachments=tuple(attachments),
    )


def monitor_notice(
    kind: str, title: str, body: str, notification_id: str, now: datetime
) -> Notification:
    """A notification about the monitor itself (its state file), sent to every target as
    ``critical`` so quiet hours never hold it; ``kind`` is ``fired`` or ``resolved``."""
    return Notification(
        id=notification_id,
        account="monitor",
        rule="state",
        severity="critical",
        kind=kind,
        title=title,
        body=body,
        created_at=now,
        everywhere=True,
    )


def degraded_notice(reason: str, path: Path, episode: str, now: datetime) -> Notification:
    """"monitor degraded: state not writable", with what still works and what to do."""
    return monitor_notice(
        "fired",
        "[CRITICAL] monitor degraded: state not writable",
        f"The monitor cannot use its state file {path}: {reason}.\n"
        "Alerts are still sent, directly: one that fails is retried only while the monitor "
        "runs, and a restart now would announce the open alerts again.\n"
        f"Action: free space on that disk (or fix the file or its directory: {path.parent}); "
        "the monitor recovers by itself and says so. A damaged file is moved aside at the "
        f"next start.\nAt: {_when(now)}",
        f"monitor:degraded:{episode}",
        now,
    )


def recovered_notice(path: Path, episode: str, since: datetime, now: datetime) -> Notification:
    """The end of a degraded stretch: the outbox is written again."""
    return monitor_notice(
        "resolved",
        "[RESOLVED] monitor degraded: state writable again",
        f"The state file {path} is written again (degraded since {_when(since)}); what was "
        f"sent meanwhile is recorded and the outbox is back in use.\nAt: {_when(now)}",
        f"monitor:degraded:{episode}:resolved",
        now,
    )


def state_reset_notice(path: Path, kept: Path, reason: str, now: datetime) -> Notification:
    """The state file was damaged at start: moved aside, a fresh one created."""
    return monitor_notice(
        "fired",
        "[CRITICAL] monitor state reset: damaged state file moved aside",
        f"The state file {path} was damaged ({reason}); it is kept as {kept} and a fresh one "
        "was created.\nAlert states and history start over: alerts still open are announced "
        "again, and notifications waiting in the old outbox were not sent.\n"
        f"At: {_when(now)}",
        f"monitor:state-reset:{kept.name}",
        now,
    )


def with_id(body: str, notification_id: str) -> str:
    """The body as sent: the stable id on the last line, for duplicate detection."""
    return f"{body}\n\nid: {notification_id}"


# -- quiet hours -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window (may wrap midnight) during which only ``critical`` is sent at once."""

    start: time
    end: time
    zone: tzinfo | None = None  # None: the machine's local time zone

    @classmethod
    def parse(cls, spec: tuple[str, str, str | None] | tuple[str, str]) -> QuietHours:
        """From ``("22:00", "07:00", "Europe/Paris")`` (time zone optional or empty)."""
        start, end, *rest = spec
        zone_name = rest[0] if rest else None
        return cls(
            parse_hhmm(start), parse_hhmm(end), zone(zone_name) if zone_name else None
        )

    def until(self, now: datetime) -> datetime | None:
        """When the quiet period containing ``now`` ends (``None`` when not quiet)."""
        local = now.astimezone(self.zone) if self.zone else now.astimezone()
        zone = local.tzinfo
        current = local.time().replace(tzinfo=None)
        if self.start == self.end:
            return None
        if self.start < self.end:
            if not (self.start <= current < self.end):
                return None
            day = local.date()
        elif current >= self.start:
            day = local.date() + timedelta(days=1)
        elif current < self.end:
            day = local.date()
        else:
            return None
        return datetime.combine(day, self.end, tzinfo=zone).astimezone(UTC)


# -- sending with a hard deadline --------------------------------------------------------------

_ATTEMPT = threading.local()
_TRACKING_LOCK = threading.Lock()
_tracking: list[bool] = []


def _remember_socket(event: str, args: tuple[Any, ...]) -> None:
    """Audit hook (PEP 578): note each socket made by a thread that runs an :class:`Attempt`."""
    if event == "socket.__new__":
        sockets = getattr(_ATTEMPT, "sockets", None)
        if sockets is not None:
            sockets.add(args[0])


def _track_sockets() -> None:
    """Install :func:`_remember_socket` once per process (audit hooks cannot be removed)."""
    with _TRACKING_LOCK:
        if not _tracking:
            sys.addaudithook(_remember_socket)
            _tracking.append(True)


class Attempt:
    """One blocking call in a daemon thread of its own, which :meth:`cut` can end at any time.

    Apprise sends synchronously and cannot be interrupted; a target that accepts the
    connection and then answers one byte every few seconds would hold a thread for as long
    as it likes. The thread here remembers every socket it opens (an audit hook on
    ``socket.__new__``: the only way to reach the sockets of a library that keeps them to
    itself, TLS wrappers included); :meth:`cut` shuts them down, so a connect, send or read
    blocked on them returns at once and the thread ends. A call blocked elsewhere (a DNS
    lookup) ends when that returns: :attr:`busy` tells, and the caller bounds how many
    such threads a target may hold. The thread is a daemon: it never delays the exit.
    """

    def __init__(self, call: Callable[[], tuple[bool, str]], name: str) -> None:
        _track_sockets()
        self._call = call
        self._loop = asyncio.get_running_loop()
        self.result: asyncio.Future[tuple[bool, str]] = self._loop.create_future()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Attempt:
        """Start the thread."""
        self._thread.start()
        return self

    @property
    def busy(self) -> bool:
        """True until the call has returned."""
        return self._thread.is_alive() and not self.result.done()

    def _run(self) -> None:
        _ATTEMPT.sockets = self._sockets
        try:
            outcome = self._call()
        except BaseException as error:  # the call must hand back an outcome, whatever happens
            outcome = (False, f"{type(error).__name__} in the sender")
        finally:
            _ATTEMPT.sockets = None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._settle, outcome)

    def _settle(self, outcome: tuple[bool, str]) -> None:
        if not self.result.done():
            self.result.set_result(outcome)

    def cut(self) -> None:
        """Shut down every socket the call opened (a closed one is skipped)."""
        for sock in list(self._sockets):
            with contextlib.suppress(OSError, ValueError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


@dataclass
class _Direct:
    """A notification sent without the outbox, while the state file cannot be written."""

    note: Notification
    attempts: int = 0
    sent_at: datetime | None = None
    in_flight: bool = False


class Lane:
    """One target's delivery: its order, its retries, its bound on stuck sends.

    Every target has its own lane, so a target that fails, hangs or dribbles delays nothing
    but itself. ``retry_at`` (event-loop time, i.e. the monotonic clock) holds the lane after
    a failure: a wall-clock step neither stalls nor hurries a retry.
    """

    def __init__(self, target: Target, max_in_flight: int) -> None:
        self.target = target
        self.max_in_flight = max_in_flight
        self.attempts: set[Attempt] = set()
        self.direct: list[_Direct] = []
        self.unrecorded: dict[str, datetime] = {}  # sent, but the outbox could not say so yet
        self.retry_at = 0.0
        self.wake = asyncio.Event()
        self._stuck_reported = False

    def busy(self) -> list[Attempt]:
        """The sends of this target whose call has not returned (in flight or abandoned)."""
        self.attempts = {attempt for attempt in self.attempts if attempt.busy}
        return list(self.attempts)

    async def room(self) -> None:
        """Wait until fewer than ``max_in_flight`` sends of this target are still running."""
        while len(stuck := self.busy()) >= self.max_in_flight:
            if not self._stuck_reported:
                self._stuck_reported = True
                log.warning(
                    "target holds sends that never ended; waiting for one to end",
                    target=self.target.name,
                    stuck=len(stuck),
                )
            await asyncio.wait(
                [attempt.result for attempt in stuck],
                timeout=1.0,
                return_when=asyncio.FIRST_COMPLETED,
            )
        self._stuck_reported = False


# -- the notifier ------------------------------------------------------------------------------


class Notifier:
    """Routes notifications to Apprise targets through the store's outbox."""

    def __init__(
        self,
        targets: Sequence[Target],
        store: Store,
        *,
        clock: Clock = utc_now,
        max_age: timedelta = timedelta(hours=24),
        backoff_base: timedelta = timedelta(seconds=5),
        backoff_max: timedelta = timedelta(minutes=15),
        quiet_hours: tuple[str, str, str | None] | tuple[str, str] | QuietHours | None = None,
        send_timeout: float = 30.0,
        max_in_flight: int = 2,
        poll_interval: float = 1.0,
        on_result: ResultHook | None = None,
    ) -> None:
        self.targets = list(targets)
        self.store = store
        self.clock = clock
        self.max_age = max_age
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.quiet_hours = (
            quiet_hours
            if isinstance(quiet_hours, QuietHours) or quiet_hours is None
            else QuietHours.parse(quiet_hours)
        )
        self.send_timeout = send_timeout
        self.poll_interval = poll_interval
        self.on_result = on_result
        self._by_key: dict[str, Target] = {}
        self._apprise: dict[str, apprise.Apprise | None] = {}
        self._lanes: dict[str, Lane] = {}
        for target in self.targets:
            redactor.register(secret_fragments(target.url))
            if target.key in self._by_key:
                log.warning("duplicate notification target ignored", target=target.name)
                continue
            self._by_key[target.key] = target
            self._apprise[target.key] = self._build(target)
            self._lanes[target.key] = Lane(target, max_in_flight)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._running = False
        self.store_problem: str | None = None

    def _bind_loop(self) -> None:
        """asyncio primitives belong to one loop: renew them if used from a new one
        (a command may call ``asyncio.run`` more than once with the same notifier)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._lock = asyncio.Lock()
            for lane in self._lanes.values():
                lane.wake = asyncio.Event()
                lane.attempts.clear()

    @staticmethod
    def _build(target: Target) -> apprise.Apprise | None:
        # Synchronous and without Apprise's own deadline, the send runs inline in the thread
        # of its Attempt (whose sockets can be cut), never in Apprise's shared thread pool.
        instance = apprise.Apprise(asset=apprise.AppriseAsset(async_mode=False, service_timeout=0))
        _know_scheme(target.url)
        if not instance.add(target.url):
            log.error("notification target has an invalid Apprise URL", target=target.name)
            return None
        return instance

    # -- routing and queueing --------------------------------------------------------------

    def route(self, severity: str, *, everywhere: bool = False) -> list[Target]:
        """The targets that receive a notification routed by ``severity`` (all of them when
        ``everywhere``: news about the monitor itself)."""
        return [
            target
            for target in self._by_key.values()
            if everywhere or target.receives(severity)
        ]

    def enqueue(self, notification: Notification) -> bool:
        """Write the notification to the outbox (one row per routed target); no sending.

        Synchronous, so the service can call it inside ``store.transaction()`` together with
        the alert state it belongs to. True when at least one row was new. Raises
        :class:`~monitor.store.StateUnavailable` when the outbox cannot be written.
        """
        targets = self.route(route_of(notification), everywhere=notification.everywhere)
        if not targets:
            log.info(
                "no target receives this severity",
                notification_id=notification.id,
                severity=notification.severity,
            )
            return False
        now = self.clock()
        held_until = None
        if self.quiet_hours is not None and notification.severity != "critical":
            held_until = self.quiet_hours.until(now)
        new = self.store.enqueue(
            notification,
            {target.key: target.name for target in targets},
            not_before=held_until,
            now=now,
        )
        (log.info if new else log.debug)(
            "notification queued" if new else "notification already queued",
            notification_id=notification.id,
            severity=notification.severity,
            kind=notification.kind,
            targets=[target.name for target in targets],
            held_until=held_until.isoformat() if held_until else None,
        )
        self._wake(targets)
        return new

    def _held(self, notification: Notification, now: datetime) -> bool:
        """True while quiet hours hold this notification back (never a critical one)."""
        if self.quiet_hours is None or notification.severity == "critical":
            return False
        return self.quiet_hours.until(now) is not None

    def _wake(self, targets: Iterable[Target]) -> None:
        for target in targets:
            self._lanes[target.key].wake.set()

    async def submit(self, notification: Notification) -> bool:
        """Queue the notification, then deliver it.

        While :meth:`run` is active this only wakes it (the caller is not held up by a slow
        target); otherwise it delivers this notification's due rows before returning.
        """
        new = self.enqueue(notification)
        if not self._running:
            await self.deliver_due(ids=[notification.id])
        return new

    async def submit_direct(self, notification: Notification) -> int:
        """Send without the outbox (it cannot be written): best effort, retried with backoff
        while this process runs, written to the outbox by :meth:`record_direct` once it can
        be. Quiet hours still hold back anything but ``critical``. Returns the targets."""
        targets = self.route(route_of(notification), everywhere=notification.everywhere)
        jobs = []
        for target in targets:
            job = _Direct(notification)
            self._lanes[target.key].direct.append(job)
            jobs.append((self._lanes[target.key], job))
        log.warning(
            "notification sent without the outbox (state not writable); best effort",
            notification_id=notification.id,
            severity=notification.severity,
            targets=[target.name for target in targets],
        )
        self._wake(targets)
        if not self._running:
            self._bind_loop()
            await asyncio.gather(*(self._send_direct(lane, job) for lane, job in jobs))
        return len(targets)

    # -- delivery --------------------------------------------------------------------------

    async def deliver_due(self, ids: Iterable[str] | None = None) -> DeliveryReport:
        """Send every due outbox row (or only those of ``ids``) once; expire what is too old.

        For commands that run once (``summary --send``) and for tests: it reads when each row
        is due from the outbox. The daemon's :meth:`run` keeps its own retry times instead.
        """
        wanted = list(ids) if ids is not None else None
        self._bind_loop()
        async with self._lock:
            report = DeliveryReport()
            now = self.clock()
            for item in self.store.expire(now, self.max_age):
                report.expired += 1
                self._expired(item, "older than max_age")
            by_target: dict[str, list[OutboxItem]] = {}
            for item in self.store.due(now, ids=wanted):
                if item.target not in self._lanes:
                    self._expire_unrouted(item, now)
                    report.expired += 1
                    continue
                by_target.setdefault(item.target, []).append(item)
            await asyncio.gather(
                *(
                    self._deliver_in_order(self._lanes[key], items, report)
                    for key, items in by_target.items()
                )
            )
            return report

    async def _deliver_in_order(
        self, lane: Lane, items: list[OutboxItem], report: DeliveryReport
    ) -> None:
        """Send one target's due rows in order; on a failure, defer the rest with it."""
        for position, item in enumerate(items):
            outcome = await self._attempt_row(lane, item, report)
            if outcome is False:
                # The target is failing: hold its other rows until the same retry time instead
                # of hammering it (they keep their attempt counts; order is preserved).
                retry_at = self.clock() + self.backoff(item.attempts + 1)
                for later in items[position + 1 :]:
                    self.store.defer(later.notification_id, later.target, retry_at)
                    report.deferred += 1
                return

    async def _attempt_row(
        self, lane: Lane, item: OutboxItem, report: DeliveryReport | None = None
    ) -> bool | None:
        """One attempt at one outbox row: claimed, sent, recorded. ``None`` when another
        process holds the row, else whether it was delivered.

        Success is written to the outbox by the sending thread the moment Apprise reports
        it, so a kill right after a delivery leaves the narrowest window for a repeat.
        """
        target = lane.target
        now = self.clock()
        lease = now + timedelta(seconds=self.send_timeout + 10)
        try:
            if not self.store.claim(item.notification_id, item.target, now, lease):
                return None
        except StoreError as problem:  # no lease can be written: send all the same (degraded)
            self._store_trouble(problem)

        def record(sent_at: datetime) -> None:  # in the sending thread
            try:
                self.store.mark_sent(item.notification_id, item.target, sent_at)
            except StoreError:
                lane.unrecorded[item.notification_id] = sent_at

        try:
            ok, error = await self._send(
                lane,
                item.title,
                with_id(item.body, item.notification_id),
                item.severity,
                item.kind,
                item.attachments,
                on_sent=record,
            )
        except asyncio.CancelledError:
            # Stopped mid-send: hand the row back so the next start retries it at once
            # instead of waiting for the lease to lapse (its id lets a receiver drop a
            # copy that did arrive).
            with contextlib.suppress(Exception):
                self.store.release(item.notification_id, item.target)
            raise
        attempt = item.attempts + 1
        if ok:
            lane.retry_at = 0.0
            if report is not None:
                report.sent += 1
                report.results.append(DeliveryResult(item.notification_id, target.name, True))
            log.info(
                "notification sent",
                notification_id=item.notification_id,
                target=target.name,
                attempt=attempt,
            )
            self._count(item.severity, "sent")
            return True
        delay = self.backoff(attempt)
        lane.retry_at = asyncio.get_running_loop().time() + delay.total_seconds()
        done = self.clock()
        try:
            self.store.mark_failed(item.notification_id, item.target, done, error, done + delay)
        except StoreError as problem:
            self._store_trouble(problem)
        if report is not None:
            report.failed += 1
            report.results.append(DeliveryResult(item.notification_id, target.name, False, error))
        log.warning(
            "notification failed",
            notification_id=item.notification_id,
            target=target.name,
            attempt=attempt,
            error=error,
            retry_in=round(delay.total_seconds(), 1),
        )
        self._count(item.severity, "failed")
        return False

    async def _send_direct(self, lane: Lane, job: _Direct) -> bool:
        """One attempt at a notification kept in memory (the outbox cannot be written)."""
        note = job.note
        job.in_flight = True
        try:
            ok, error = await self._send(
                lane,
                note.title,
                with_id(note.body, note.id),
                note.severity,
                note.kind,
                note.attachments,
            )
        finally:
            job.in_flight = False
        job.attempts += 1
        if ok:
            job.sent_at = self.clock()
            lane.retry_at = 0.0
            log.info(
                "notification sent directly (not recorded in the outbox yet)",
                notification_id=note.id,
                target=lane.target.name,
                attempt=job.attempts,
            )
            self._count(note.severity, "sent")
            return True
        delay = self.backoff(job.attempts)
        lane.retry_at = asyncio.get_running_loop().time() + delay.total_seconds()
        log.warning(
            "notification failed (sent directly; retried while the monitor runs)",
            notification_id=note.id,
            target=lane.target.name,
            attempt=job.attempts,
            error=error,
            retry_in=round(delay.total_seconds(), 1),
        )
        self._count(note.severity, "failed")
        return False

    def record_direct(self) -> bool:
        """Write what was sent directly (or is still to send) into the outbox, now that it
        can be written: sent ones as sent, the others as pending rows this notifier then
        delivers as usual. True when nothing is left to record (a send in flight is written
        on a later call). :class:`~monitor.store.StateUnavailable` if the write fails."""
        now = self.clock()
        left = False
        for lane in self._lanes.values():
            key, name = lane.target.key, lane.target.name
            settled = [job for job in lane.direct if not job.in_flight]
            left = left or len(settled) < len(lane.direct)
            sent = dict(lane.unrecorded)
            with self.store.transaction():
                for job in settled:
                    self.store.enqueue(job.note, {key: name}, now=now)
                    if job.sent_at is not None:
                        self.store.mark_sent(job.note.id, key, job.sent_at)
                for notification_id, sent_at in sent.items():
                    self.store.mark_sent(notification_id, key, sent_at)
            lane.direct = [job for job in lane.direct if job not in settled]
            for notification_id in sent:
                lane.unrecorded.pop(notification_id, None)
            if settled:
                lane.wake.set()
        return not left

    @property
    def direct_pending(self) -> bool:
        """True while some notification sent (or to send) directly is not in the outbox."""
        return any(lane.direct or lane.unrecorded for lane in self._lanes.values())

    def backoff(self, attempts: int) -> timedelta:
        """Delay before the next try after ``attempts`` failures: base x 2^(n-1), capped."""
        factor = 2 ** max(0, min(attempts - 1, 30))
        return min(self.backoff_base * factor, self.backoff_max)

    async def _send(
        self,
        lane: Lane,
        title: str,
        body: str,
        severity: str,
        kind: str,
        attachments: Sequence[str] = (),
        on_sent: Callable[[datetime], None] | None = None,
    ) -> tuple[bool, str]:
        """One Apprise call to one target within ``send_timeout`` seconds, connect, send
        and read included; returns (ok, redacted error). ``on_sent`` runs in the sending
        thread when Apprise reports success (also after the deadline: then it did arrive)."""
        target = lane.target
        instance = self._apprise.get(target.key)
        if instance is None:
            return False, "invalid Apprise URL (check the configuration)"
        files = [path for path in attachments if Path(path).is_file()]
        missing = [Path(path).name for path in attachments if not Path(path).is_file()]
        if missing:
            body = f"{body}\n(attachment missing: {', '.join(missing)})"
        notify_type = _notify_type(severity, kind)

        def call() -> tuple[bool, str]:
            try:
                result = instance.notify(
                    body=body,
                    title=title,
                    notify_type=notify_type,
                    body_format=NotifyFormat.TEXT,
                    attach=files or None,
                )
            except Exception as error:  # a plugin crash must not take the notifier down
                return False, redact(f"{type(error).__name__}: {error}", target)
            try:
                if not result:
                    return False, describe_failure(result, target)
            finally:
                with contextlib.suppress(Exception):
                    result.close()
            if on_sent is not None:
                on_sent(self.clock())
            return True, ""

        await lane.room()
        attempt = Attempt(call, f"{NOTIFY_THREAD}{target.name}").start()
        lane.attempts.add(attempt)
        try:
            return await asyncio.wait_for(asyncio.shield(attempt.result), self.send_timeout)
        except TimeoutError:
            attempt.cut()
            with contextlib.suppress(TimeoutError):  # a reply completed as it was cut counts
                ok, _ = await asyncio.wait_for(asyncio.shield(attempt.result), CUT_GRACE)
                if ok:
                    return True, ""
            return False, f"no complete answer within {self.send_timeout:g} s (connection cut)"
        except asyncio.CancelledError:
            attempt.cut()
            raise

    def _expired(self, item: OutboxItem, reason: str) -> None:
        log.warning(
            "notification expired undelivered",
            notification_id=item.notification_id,
            target=item.target_name,
            attempts=item.attempts,
            reason=reason,
            last_error=item.last_error,
        )
        self._count(item.severity, "expired")

    def _expire_unrouted(self, item: OutboxItem, now: datetime) -> None:
        self.store.expire_item(
            item.notification_id, item.target, now, "target no longer configured"
        )
        self._expired(item, "target no longer configured")

    def _count(self, severity: str, result: str) -> None:
        if self.on_result is not None:
            with contextlib.suppress(Exception):
                self.on_result(severity, result)

    def _store_trouble(self, problem: StoreError) -> None:
        """Log once per stretch that the outbox cannot be read or written."""
        reason = getattr(problem, "reason", str(problem))
        if self.store_problem != reason:
            self.store_problem = reason
            log.warning(
                "outbox not usable; delivery outcomes are kept in memory until it is",
                reason=reason,
            )

    # -- the loop --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set: one lane per target, each on its own, while this
        loop expires what is too old. On ``stop`` a send in flight gets :data:`STOP_GRACE`
        seconds to finish; then it is cut and its row handed back for the next start."""
        self._bind_loop()
        self._running = True
        lanes = [
            asyncio.create_task(self._serve(lane, stop), name=f"notify {lane.target.name}")
            for lane in self._lanes.values()
        ]
        try:
            while not stop.is_set():
                self._expire_old()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_interval)
        finally:
            self._running = False
            for lane in self._lanes.values():
                lane.wake.set()
            if lanes:
                _, late = await asyncio.wait(lanes, timeout=STOP_GRACE)
                for task in late:
                    task.cancel()
                await asyncio.gather(*lanes, return_exceptions=True)

    def _expire_old(self) -> None:
        """Give up on rows older than ``max_age`` or whose target is gone, and on direct
        sends older than ``max_age``."""
        now = self.clock()
        try:
            for item in self.store.expire(now, self.max_age):
                self._expired(item, "older than max_age")
            for item in self.store.outbox("pending"):
                if item.target not in self._lanes:
                    self._expire_unrouted(item, now)
            self.store_problem = None
        except StoreError as problem:
            self._store_trouble(problem)
        for lane in self._lanes.values():
            for job in [j for j in lane.direct if j.sent_at is None and not j.in_flight]:
                if now - job.note.created_at > self.max_age:
                    lane.direct.remove(job)
                    log.warning(
                        "notification expired undelivered (sent directly)",
                        notification_id=job.note.id,
                        target=lane.target.name,
                        attempts=job.attempts,
                    )
                    self._count(job.note.severity, "expired")

    async def _serve(self, lane: Lane, stop: asyncio.Event) -> None:
        """One target's loop: direct sends first, then its outbox rows, oldest first; after
        a failure nothing is tried before ``lane.retry_at``."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            lane.wake.clear()
            try:
                worked = await self._serve_once(lane, loop)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad row end a target's delivery
                log.exception("delivery round failed", target=lane.target.name)
                worked = False
            if worked or stop.is_set():
                continue
            wait = lane.retry_at - loop.time()
            pause = self.poll_interval if wait <= 0 else min(wait, self.poll_interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.wake.wait(), pause)

    async def _serve_once(self, lane: Lane, loop: asyncio.AbstractEventLoop) -> bool:
        """Make the next attempt of this lane, if one is due; True when one was made."""
        if loop.time() < lane.retry_at:
            return False
        now = self.clock()
        for job in lane.direct:
            if job.sent_at is None and not job.in_flight and not self._held(job.note, now):
                await self._send_direct(lane, job)
                return True
        try:
            rows = self.store.pending_for(lane.target.key, now)
        except StoreError as problem:
            self._store_trouble(problem)
            return False
        for item in rows:
            if item.notification_id not in lane.unrecorded:
                return await self._attempt_row(lane, item) is not None
        return False

    # -- notify-test -----------------------------------------------------------------------

    async def send_test(self, severity: str = "critical") -> list[TargetResult]:
        """Send a test message to every target routed ``severity``; per-target outcome.

        Sent directly (not through the outbox: a test is not worth retrying), through the
        same routing, formatting, Apprise objects and deadline as real alerts.
        """
        self._bind_loop()
        now = self.clock()
        test_id = f"test:{uuid.uuid4().hex[:12]}"
        title = f"[{severity.upper()}] margin-monitor test"
        body = with_id(
            f"Test notification from margin-monitor (severity {severity}) at {_when(now)}.\n"
            "If you can read this, this target receives alerts of that severity.",
            test_id,
        )
        targets = self.route(severity)
        outcomes = await asyncio.gather(
            *(
                self._send(self._lanes[target.key], title, body, severity, "test")
                for target in targets
            )
        )
        results = []
        for target, (ok, error) in zip(targets, outcomes, strict=True):
            results.append(TargetResult(target.name, ok, None if ok else error))
            log.info(
                "test notification",
                target=target.name,
                ok=ok,
                error=None if ok else error,
                severity=severity,
            )
        return results


# -- checking URLs at load ---------------------------------------------------------------------


def url_problem(url: str) -> str | None:
    """Why Apprise cannot use ``url``, in words without any part of it; ``None`` when it can.

    Apprise's own parser decides (``Apprise.instantiate``): an unknown scheme, a missing
    token or host, an unparseable address. A web URL's port must also be a number from 1 to
    65535.
    """
    _know_scheme(url)
    quiet = logging.getLogger("apprise")
    propagate = quiet.propagate
    quiet.propagate = False  # the reason goes into one configuration error, not the log
    try:
        with apprise.LogCapture(level=logging.ERROR, fmt="%(message)s") as captured:
            try:
                plugin = apprise.Apprise.instantiate(url)
            except Exception as error:
                plugin, raised = None, type(error).__name__
            else:
                raised = ""
            said = [line for line in captured.getvalue().splitlines() if line.strip()]
    finally:
        quiet.propagate = propagate
    if plugin is None:
        reason = said[-1] if said else raised or "not understood"
        return redactor.clean(masker(secret_fragments(url))(reason)).strip()
    if url.partition("://")[0].lower() in WEB_SCHEMES:
        try:
            _ = urlsplit(url).port
        except ValueError:
            return "its port is not a number from 1 to 65535"
    return None


def apprise_config_targets(path: Path, first_index: int = 1) -> tuple[list[Target], list[str]]:
    """The targets of an Apprise configuration file (YAML or text, as Apprise reads it) and
    the problems Apprise found in it, in words with every URL masked.

    Each entry receives what its tags name of :data:`ROUTES` (``warning``, ``critical``,
    ``info``, ``summary``); an entry without a tag, or tagged ``all`` or ``always``, receives
    everything. Targets are named ``<scheme>#<n>`` from ``first_index`` on.
    """
    quiet = logging.getLogger("apprise")
    propagate = quiet.propagate
    quiet.propagate = False  # Apprise logs whole URLs: its words go into one problem list
    try:
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
            config = apprise.AppriseConfig()
            config.add(str(path))
            services = list(config.services())
            said = [line for line in captured.getvalue().splitlines() if line.strip()]
    finally:
        quiet.propagate = propagate
    targets = []
    for offset, plugin in enumerate(services):
        tags = {str(tag).lower() for tag in plugin.tags}
        routes = ROUTES if not tags or tags & EVERY_ROUTE_TAGS else tuple(tags & set(ROUTES))
        target = Target.from_url(plugin.url(privacy=False), first_index + offset, routes)
        if not routes:
            log.warning(
                "an Apprise configuration entry receives nothing: none of its tags is one of "
                "warning, critical, info, summary",
                target=target.name,
                tags=sorted(tags),
            )
        targets.append(target)
    problems = [_URLS_IN_TEXT.sub(lambda url: mask_url(url.group(0)), line) for line in said]
    if not services and not problems:
        problems.append("it holds no notification URL")
    return targets, problems


def target_problems(settings: Settings) -> list[str]:
    """Each configured Apprise URL that Apprise cannot use, named by its place in the
    configuration with its secret parts masked (``notify.urls, entry 2 (tgram://***): ...``),
    and what Apprise could not read in the ``[notify] config`` file."""
    urls = len(settings.notify.urls)
    problems = []
    if settings.notify.config is not None:
        path = settings.notify.config
        _, unread = apprise_config_targets(path, urls + len(settings.notify.targets) + 1)
        problems += [f"notify.config ({path}): {problem}" for problem in unread]
    for index, entry in enumerate(settings.notify.all_targets()):
        url = entry.url.get_secret_value()
        problem = url_problem(url)
        if problem is None:
            continue
        if index < urls:
            where = f"notify.urls, entry {index + 1}"
        else:
            named = f" {entry.name!r}" if entry.name else ""
            where = f"notify.targets, entry {index - urls + 1}{named}"
        problems.append(f"{where} ({mask_url(url)}): not a URL Apprise can use: {problem}")
    return problems


# -- helpers -----------------------------------------------------------------------------------


def _notify_type(severity: str, kind: str) -> NotifyType:
    if kind == RESOLVED:
        return NotifyType.SUCCESS
    if severity == "critical":
        return NotifyType.FAILURE
    if severity == "warning":
        return NotifyType.WARNING
    return NotifyType.INFO


_SEPARATORS = re.compile(r"[/:@?&=#,;+!$'()*\[\]\s]+")
_URLS_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}://\S+")
# A host that reads as a domain name or an IPv4 address (with an optional port).
_HOSTNAME = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:\d+)?")
# Query keys whose values are credentials (the other values are options such as format=text).
_SECRET_KEYS = re.compile(r"token|key|secret|pass|auth|sig|cred|session|code|pwd|hook|id$", re.I)


def secret_fragments(url: str) -> list[str]:
    """The URL and every credential part of it, for the log redactor, whatever its length.

    Libraries log pieces of a URL without the rest (urllib3 logs ``POST /bot<token>/...``),
    so redacting the whole URL is not enough. Registered: everything after the scheme, the
    user and password, every path segment and the fragment, the values of credential-like
    query keys, and the host unless it reads as a domain name or an IP address (in
    ``tgram://<bot token>/<chat>`` or ``pover://<user>@<token>`` the "host" is a key). A web
    URL's host and port stay readable in the logs.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return [url] if url else []
    if not rest:
        return []
    pieces = [url, rest]
    try:
        parts = urlsplit(f"x://{rest}")
    except ValueError:  # unparseable (an invalid IPv6 host): every piece of it is suspect
        pieces += _SEPARATORS.split(rest)
    else:
        userinfo, _, hostport = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        pieces += [userinfo, user, password, parts.path.strip("/"), parts.fragment]
        pieces += _SEPARATORS.split(parts.path) + _SEPARATORS.split(parts.fragment)
        pieces += [
            value for key, value in parse_qsl(parts.query) if _SECRET_KEYS.search(key)
        ]
        if scheme.lower() not in WEB_SCHEMES and not _HOSTNAME.fullmatch(hostport):
            pieces += [hostport, *_SEPARATORS.split(hostport)]
    found = {piece for piece in pieces if piece} | {unquote(piece) for piece in pieces if piece}
    return sorted(found, key=len, reverse=True)


def redact(text: str, target: Target) -> str:
    """``text`` without the target's URL or any of its credential parts, nor any other URL."""
    cleaned = text.replace(target.url, f"<{target.name}>")
    cleaned = masker(secret_fragments(target.url))(cleaned)
    return scrub_error(cleaned) or ""


def describe_failure(result: Any, target: Target) -> str:
    """A short, redacted reason from an ``AppriseResult`` that is not a success."""
    status = getattr(getattr(result, "status", None), "name", "FAILURE")
    message = ""
    with contextlib.suppress(Exception):
        for entry in result.logs():
            if entry.level in ("WARNING", "ERROR", "CRITICAL"):
                message = entry.message
    text = f"{status}: {message}" if message else status
    return redact(text.strip(), target)
