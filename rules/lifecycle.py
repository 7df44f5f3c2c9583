"""The alert lifecycle: a pure state machine per (account, rule).

``ok -> fired -> (escalated | de-escalated | reminder)* -> resolved -> ok``

The rules say how bad things are *now*; this module decides what is worth telling the owner:

* **Escalation is immediate**: a worse severity than the one alerted is announced at once.
* **Hysteresis**: an alert eases (de-escalates or resolves) only once the value has passed the
  rule's *clear* level, beyond its trigger. The level held is
  ``max(severity, min(current, held_severity))`` where ``held_severity`` is the finding graded
  against the clear levels; a value between the trigger and the clear level keeps the alert.
* **Missing data never resolves**: a finding with ``data_missing`` or severity ``unknown`` keeps
  a firing alert at its level (reminders continue), and never fires a new one.
* **Reminders** while still firing, once the last notification is older than the interval for
  the current level (defaults: critical every 60 minutes, warning every 4 hours).

Every transition carries a notification id derived only from the stored state (account, rule,
episode start, sequence) and the transition (kind, severity), so a daemon that reloads its state
after a restart produces the same ids, and a receiver can drop a duplicate.

Standard library only: no clock (``now`` is passed in), no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from rules.clock import iso_utc
from rules.model import Finding, Severity

TransitionKind = Literal["fired", "escalated", "de-escalated", "resolved", "reminder"]

FIRED: TransitionKind = "fired"
ESCALATED: TransitionKind = "escalated"
DE_ESCALATED: TransitionKind = "de-escalated"
RESOLVED: TransitionKind = "resolved"
REMINDER: TransitionKind = "reminder"

# Levels an alert can be at: unknown is not a level (it means "no data"), only ok < warning <
# critical.
_LEVEL = {Severity.OK: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    """How often a still-firing alert is repeated (``None`` = never)."""

    reminder_critical: timedelta | None = timedelta(minutes=60)
    reminder_warning: timedelta | None = timedelta(hours=4)

    def reminder_for(self, severity: Severity) -> timedelta | None:
        """The reminder interval for an alert at ``severity``."""
        if severity == Severity.CRITICAL:
            return self.reminder_critical
        if severity == Severity.WARNING:
            return self.reminder_warning
        return None


@dataclass(frozen=True, slots=True)
class AlertState:
    """What has been announced for one (account, rule).

    ``severity`` is the level currently alerted (``ok`` = not firing). ``episode_started`` is
    when the current breach was first announced and ``episode_peak`` the worst level of that
    episode (recoveries are routed to whoever heard the worst). ``last_notified`` and
    ``last_value`` are the time and measured value of the last notification. ``sequence``
    counts notifications ever made for this key; it makes every id unique and reproducible.
    """

    account: str
    rule: str
    severity: Severity = Severity.OK
    episode_started: datetime | None = None
    episode_peak: Severity = Severity.OK
    last_notified: datetime | None = None
    last_value: float | None = None
    sequence: int = 0

    @property
    def key(self) -> tuple[str, str]:
        """The (account, rule) this state belongs to."""
        return (self.account, self.rule)


@dataclass(frozen=True, slots=True)
class Transition:
    """A change worth a notification.

    ``previous_severity`` -> ``new_severity`` (``ok`` for ``resolved``; equal for
    ``reminder``). ``finding`` is the finding that caused it (for a reminder during missing
    data, the data-missing finding: ``last_value`` then holds the value last announced).
    ``notification_id`` is stable across restarts.
    """

    kind: TransitionKind
    previous_severity: Severity
    new_severity: Severity
    finding: Finding
    notification_id: str
    now: datetime
    episode_started: datetime | None = None
    episode_peak: Severity = Severity.OK
    sequence: int = 0
    last_value: float | None = None

    @property
    def account(self) -> str:
        """The account the alert is about."""
        return self.finding.account

    @property
    def rule(self) -> str:
        """The rule the alert is about."""
        return self.finding.rule

    @property
    def notify_severity(self) -> Severity:
        """The severity to route the notification by.

        Firing, escalating and reminding go to the targets of the level now alerted; easing
        and recovery go to the targets of the worst level of the episode, so whoever was paged
        for a critical also hears that it is over.
        """
        if self.kind in (DE_ESCALATED, RESOLVED):
            return _worse(self.episode_peak, self.previous_severity)
        return self.new_severity


def notification_id(
    account: str,
    rule: str,
    episode_started: datetime | None,
    kind: str,
    severity: Severity,
    sequence: int,
) -> str:
    """A deterministic id: readable prefix plus a digest of everything that makes it unique."""
    material = "|".join(
        (account, rule, _canonical(episode_started), kind, severity.value, str(sequence))
    )
    digest = hashlib.sha256(material.encode("utf-8")).hexdigest()[:12]
    return f"{account}:{rule}:{sequence}:{digest}"


def step(
    state: AlertState | None,
    finding: Finding,
    now: datetime,
    policy: LifecyclePolicy | None = None,
) -> tuple[AlertState, Transition | None]:
    """Advance the alert of ``(finding.account, finding.rule)`` by one finding.

    Returns the new state (equal to the old one when nothing happened) and the transition to
    announce, if any. Pure: the same inputs always give the same outputs.
    """
    policy = policy or LifecyclePolicy()
    if state is None:
        state = AlertState(account=finding.account, rule=finding.rule)
    current = state.severity if state.severity in _LEVEL else Severity.OK

    if finding.data_missing or finding.severity not in _LEVEL:
        # No data: hold the level as it is (a new alert cannot fire on nothing).
        return _maybe_remind(state, current, finding, now, policy)

    severity = finding.severity
    held = finding.held_severity if finding.held_severity in _LEVEL else severity
    target = _worse(severity, _better(current, held))

    if target == current:
        return _maybe_remind(state, current, finding, now, policy)

    if _LEVEL[target] > _LEVEL[current]:
        kind: TransitionKind = FIRED if current == Severity.OK else ESCALATED
    else:
        kind = RESOLVED if target == Severity.OK else DE_ESCALATED

    episode_started = now if kind == FIRED else state.episode_started
    peak = target if kind == FIRED else _worse(state.episode_peak, target)
    sequence = state.sequence + 1
    transition = Transition(
        kind=kind,
        previous_severity=current,
        new_severity=target,
        finding=finding,
        notification_id=notification_id(
            state.account, state.rule, episode_started, kind, target, sequence
        ),
        now=now,
        episode_started=episode_started,
        episode_peak=peak,
        sequence=sequence,
        last_value=finding.value,
    )
    if kind == RESOLVED:
        new_state = replace(
            state,
            severity=Severity.OK,
            episode_started=None,
            episode_peak=Severity.OK,
            last_notified=now,
            last_value=finding.value,
            sequence=sequence,
        )
    else:
        new_state = replace(
            state,
            severity=target,
            episode_started=episode_started,
            episode_peak=peak,
            last_notified=now,
            last_value=finding.value,
            sequence=sequence,
        )
    return new_state, transition


def _maybe_remind(
    state: AlertState,
    current: Severity,
    finding: Finding,
    now: datetime,
    policy: LifecyclePolicy,
) -> tuple[AlertState, Transition | None]:
    """The level does not change: remind when the last notification is old enough."""
    if current == Severity.OK:
        return state, None
    interval = policy.reminder_for(current)
    if interval is None or state.last_notified is None or now - state.last_notified < interval:
        return state, None
    sequence = state.sequence + 1
    value = state.last_value if finding.data_missing or finding.value is None else finding.value
    transition = Transition(
        kind=REMINDER,
        previous_severity=current,
        new_severity=current,
        finding=finding,
        notification_id=notification_id(
            state.account, state.rule, state.episode_started, REMINDER, current, sequence
        ),
        now=now,
        episode_started=state.episode_started,
        episode_peak=state.episode_peak,
        sequence=sequence,
        last_value=value,
    )
    return replace(state, last_notified=now, last_value=value, sequence=sequence), transition


def _worse(a: Severity, b: Severity) -> Severity:
    return a if _LEVEL.get(a, 0) >= _LEVEL.get(b, 0) else b


def _better(a: Severity, b: Severity) -> Severity:
    return a if _LEVEL.get(a, 0) <= _LEVEL.get(b, 0) else b


def _canonical(moment: datetime | None) -> str:
    """An instant as text that does not depend on the time zone it was expressed in."""
    return iso_utc(moment) or "-"
