"""Notifications through Apprise: routing by severity, a durable outbox, retries, quiet hours.

The only module that imports apprise. The path of a notification:

1. :meth:`Notifier.submit` (or :meth:`Notifier.enqueue`) routes it to the targets that receive
   its severity and writes one outbox row per target *before* any attempt (held back to the
   end of quiet hours for anything but ``critical``).
2. :meth:`Notifier.deliver_due` sends what is due. Each target has its own ``Apprise`` object
   and targets are sent to concurrently, each call bounded by a timeout, so one failing or
   hanging target never blocks another. The ``AppriseResult`` is checked (truthy only on
   success); a failure is retried with exponential backoff (5 s doubling up to 15 min) until
   it succeeds or the row is older than ``max_age`` (24 h), then it expires.
3. :meth:`Notifier.run` loops over ``deliver_due``, waking at once when something is submitted.

Every message ends with a line ``id: <notification id>``; the id is stable across restarts, so
a receiver can drop a duplicate (the outbox already never queues one twice).

Routing of recoveries: a notification carries the severity it is routed by. The service routes
``resolved`` and ``de-escalated`` by the worst level of the episode
(:attr:`rules.lifecycle.Transition.notify_severity`), so whoever was told about a critical also
hears that it is over. A notification submitted with severity ``ok`` goes to every target that
receives ``warning`` or ``critical``.

Secrets: a target's URL holds its tokens. It never appears in a log line, an error message, the
outbox or a ``repr``: targets are shown by a safe name (``json#1`` or the configured name),
stored by a key derived from a hash, and error texts are scrubbed of the URL and its parts.

The ``console://`` scheme is registered here as a custom Apprise plugin that prints each
notification to stdout in a readable block (the demo uses it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import sys
import uuid
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
from monitor.logs import redactor
from monitor.store import OutboxItem, Store, scrub_error
from rules.catalog import unit_of
from rules.clock import parse_hhmm, zone
from rules.lifecycle import RESOLVED, Transition
from rules.model import Severity
from rules.text import format_value

log = structlog.get_logger("monitor.notifier")

SEVERITIES = ("info", "warning", "critical")
ALERT_SEVERITIES = frozenset({"warning", "critical"})

ResultHook = Callable[[str, str], None]


# -- values ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One Apprise URL and the severities it receives.

    ``name`` is what logs and reports show; it must not hold a secret (``json#1``, ``slack#2``
    or a name from the configuration). ``url`` is secret and left out of ``repr``.
    """

    name: str
    url: str = field(repr=False)
    severities: frozenset[str] = frozenset(SEVERITIES)

    def __post_init__(self) -> None:
        chosen = frozenset(str(severity).lower() for severity in self.severities)
        unknown = chosen - set(SEVERITIES)
        if unknown:
            raise ValueError(
                f"target {self.name}: unknown severities {sorted(unknown)}; use {SEVERITIES}"
            )
        object.__setattr__(self, "severities", chosen)

    @classmethod
    def from_url(
        cls,
        url: str,
        index: int,
        severities: Iterable[str] = SEVERITIES,
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
        """True when this target should get a notification routed by ``severity``."""
        severity = str(severity).lower()
        if severity == Severity.OK.value:
            return bool(self.severities & ALERT_SEVERITIES)
        return severity in self.severities

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to deliver. ``severity`` routes it (``info``, ``warning``, ``critical``;
    ``ok`` = every alert target); ``kind`` is the lifecycle kind or e.g. ``summary``."""

    id: str
    account: str
    rule: str
    severity: str
    kind: str
    title: str
    body: str
    created_at: datetime
    attachments: tuple[str, ...] = ()


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


@apprise.decorators.notify(on="console", name="Console (margin-monitor)")
def _console_plugin(body: str, title: str, *args: Any, **kwargs: Any) -> bool:
    """Apprise plugin for ``console://``: print the notification to stdout."""
    print(render_console(title, body), file=sys.stdout, flush=True)
    return True


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
        for target in self.targets:
            redactor.register(secret_fragments(target.url))
            if target.key in self._by_key:
                log.warning("duplicate notification target ignored", target=target.name)
                continue
            self._by_key[target.key] = target
            self._apprise[target.key] = self._build(target)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._running = False

    def _bind_loop(self) -> None:
        """asyncio primitives belong to one loop: renew them if used from a new one
        (a command may call ``asyncio.run`` more than once with the same notifier)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._lock = asyncio.Lock()
            self._wake = asyncio.Event()

    @staticmethod
    def _build(target: Target) -> apprise.Apprise | None:
        instance = apprise.Apprise()
        if not instance.add(target.url):
            log.error("notification target has an invalid Apprise URL", target=target.name)
            return None
        return instance

    # -- routing and queueing --------------------------------------------------------------

    def route(self, severity: str) -> list[Target]:
        """The targets that receive a notification routed by ``severity``."""
        return [target for target in self._by_key.values() if target.receives(severity)]

    def enqueue(self, notification: Notification) -> bool:
        """Write the notification to the outbox (one row per routed target); no sending.

        Synchronous, so the service can call it inside ``store.transaction()`` together with
        the alert state it belongs to. True when at least one row was new.
        """
        targets = self.route(notification.severity)
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
        self._wake.set()
        return new

    async def submit(self, notification: Notification) -> bool:
        """Queue the notification, then deliver it.

        While :meth:`run` is active this only wakes it (the caller is not held up by a slow
        target); otherwise it delivers this notification's due rows before returning.
        """
        new = self.enqueue(notification)
        if not self._running:
            await self.deliver_due(ids=[notification.id])
        return new

    # -- delivery --------------------------------------------------------------------------

    async def deliver_due(self, ids: Iterable[str] | None = None) -> DeliveryReport:
        """Send every due outbox row (or only those of ``ids``); expire what is too old."""
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
                if item.target not in self._by_key:
                    self.store.expire_item(
                        item.notification_id, item.target, now, "target no longer configured"
                    )
                    report.expired += 1
                    self._expired(item, "target no longer configured")
                    continue
                by_target.setdefault(item.target, []).append(item)
            if by_target:
                await asyncio.gather(
                    *(
                        self._deliver_to(self._by_key[key], items, report)
                        for key, items in by_target.items()
                    )
                )
            return report

    async def _deliver_to(
        self, target: Target, items: list[OutboxItem], report: DeliveryReport
    ) -> None:
        """Send one target's due rows in order; on a failure, defer the rest with it."""
        for position, item in enumerate(items):
            now = self.clock()
            lease = now + timedelta(seconds=self.send_timeout + 10)
            if not self.store.claim(item.notification_id, item.target, now, lease):
                continue
            try:
                ok, error = await self._send(
                    target,
                    item.title,
                    with_id(item.body, item.notification_id),
                    item.severity,
                    item.kind,
                    item.attachments,
                )
            except asyncio.CancelledError:
                # Stopped mid-send: hand the row back so the next start retries it at once
                # instead of waiting for the lease to lapse (its id lets a receiver drop a
                # copy that did arrive).
                with contextlib.suppress(Exception):
                    self.store.release(item.notification_id, item.target)
                raise
            done = self.clock()
            attempt = item.attempts + 1
            if ok:
                self.store.mark_sent(item.notification_id, item.target, done)
                report.sent += 1
                report.results.append(DeliveryResult(item.notification_id, target.name, True))
                log.info(
                    "notification sent",
                    notification_id=item.notification_id,
                    target=target.name,
                    attempt=attempt,
                )
                self._count(item.severity, "sent")
                continue
            retry_at = done + self.backoff(attempt)
            self.store.mark_failed(item.notification_id, item.target, done, error, retry_at)
            report.failed += 1
            report.results.append(DeliveryResult(item.notification_id, target.name, False, error))
            log.warning(
                "notification failed",
                notification_id=item.notification_id,
                target=target.name,
                attempt=attempt,
                error=error,
                retry_at=retry_at.isoformat(),
            )
            self._count(item.severity, "failed")
            # The target is failing: hold its other rows until the same retry time instead of
            # hammering it (they keep their attempt counts; order is preserved).
            for later in items[position + 1 :]:
                self.store.defer(later.notification_id, later.target, retry_at)
                report.deferred += 1
            return

    def backoff(self, attempts: int) -> timedelta:
        """Delay before the next try after ``attempts`` failures: base x 2^(n-1), capped."""
        factor = 2 ** max(0, min(attempts - 1, 30))
        return min(self.backoff_base * factor, self.backoff_max)

    async def _send(
        self,
        target: Target,
        title: str,
        body: str,
        severity: str,
        kind: str,
        attachments: Sequence[str] = (),
    ) -> tuple[bool, str]:
        """One Apprise call to one target, bounded; returns (ok, redacted error)."""
        instance = self._apprise.get(target.key)
        if instance is None:
            return False, "invalid Apprise URL (check the configuration)"
        files = [path for path in attachments if Path(path).is_file()]
        missing = [Path(path).name for path in attachments if not Path(path).is_file()]
        if missing:
            body = f"{body}\n(attachment missing: {', '.join(missing)})"
        try:
            result = await asyncio.wait_for(
                instance.async_notify(
                    body=body,
                    title=title,
                    notify_type=_notify_type(severity, kind),
                    body_format=NotifyFormat.TEXT,
                    attach=files or None,
                    timeout=self.send_timeout,
                ),
                self.send_timeout + 5,
            )
        except TimeoutError:
            return False, f"timed out after {self.send_timeout:g} s"
        except Exception as error:  # a plugin crash must not take the notifier down
            return False, redact(f"{type(error).__name__}: {error}", target)
        try:
            if result:
                return True, ""
            return False, describe_failure(result, target)
        finally:
            with contextlib.suppress(Exception):
                result.close()

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

    def _count(self, severity: str, result: str) -> None:
        if self.on_result is not None:
            with contextlib.suppress(Exception):
                self.on_result(severity, result)

    # -- the loop --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, waking early when something is submitted."""
        self._bind_loop()
        self._running = True
        watcher = asyncio.create_task(self._watch(stop))
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self.deliver_due()
                except Exception as error:
                    log.error("delivery round failed", error=type(error).__name__)
                if stop.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._pause())
        finally:
            self._running = False
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    def _pause(self) -> float:
        """Seconds to sleep: until the next row is due, at most ``poll_interval``."""
        upcoming = self.store.next_attempt_at()
        if upcoming is None:
            return self.poll_interval
        seconds = (upcoming - self.clock()).total_seconds()
        return max(0.05, min(self.poll_interval, seconds))

    # -- notify-test -----------------------------------------------------------------------

    async def send_test(self, severity: str = "critical") -> list[TargetResult]:
        """Send a test message to every target routed ``severity``; per-target outcome.

        Sent directly (not through the outbox: a test is not worth retrying), through the
        same routing, formatting and Apprise objects as real alerts.
        """
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
            *(self._send(target, title, body, severity, "test") for target in targets)
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


_WEB_SCHEMES = frozenset({"json", "jsons", "xml", "xmls", "form", "forms", "http", "https"})


def _token_like(piece: str) -> bool:
    return len(piece) >= 4 and (len(piece) >= 12 or any(char.isdigit() for char in piece))


def secret_fragments(url: str) -> list[str]:
    """Parts of a URL that are secret on their own, for the log redactor.

    Libraries log pieces of a URL without the rest (urllib3 logs ``POST /hooks/<token>``), so
    redacting the whole URL is not enough. Registered: the password, and every token-like
    piece (a digit in it, or 12+ characters) of the user, the path, the query and, for
    non-web schemes (where it is often a key, e.g. ``tgram://<bot token>/...``), the host.
    Plain words and a web URL's host and port stay readable in the logs.
    """
    scheme, _, rest = url.partition("://")
    if not rest:
        return [url] if _token_like(url) else []
    parts = urlsplit(f"x://{rest}")
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    pieces = [user, *_SEPARATORS.split(parts.path), parts.fragment]
    pieces += [value for pair in parse_qsl(parts.query) for value in pair]
    if scheme.lower() not in _WEB_SCHEMES:
        pieces += _SEPARATORS.split(hostport)
    found = {unquote(piece) for piece in pieces if _token_like(unquote(piece))}
    found |= {piece for piece in pieces if _token_like(piece)}
    if password:
        found |= {password, unquote(password)}
    return sorted(found, key=len, reverse=True)


def _secret_parts(url: str) -> list[str]:
    """The pieces of a URL that could be secret (everything but the scheme), longest first."""
    rest = url.split("://", 1)[1] if "://" in url else url
    parts = {part for part in _SEPARATORS.split(rest) if len(part) >= 4}
    return sorted(parts | ({rest} if rest else set()), key=len, reverse=True)


def redact(text: str, target: Target) -> str:
    """``text`` without the target's URL or any of its parts, nor any other URL."""
    cleaned = text.replace(target.url, f"<{target.name}>")
    for part in _secret_parts(target.url):
        cleaned = cleaned.replace(part, "***")
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
