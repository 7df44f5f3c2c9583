"""The alert lifecycle: hysteresis, escalation, reminders, missing data and stable ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import examples

from monitor.store import Store
from rules.lifecycle import AlertState, LifecyclePolicy, Transition, notification_id, step
from rules.model import Finding, Severity, grade_below

# A cushion-like rule: warning below 20%, critical below 10%, clear 2 pp beyond each trigger.
WARNING, CRITICAL, MARGIN = 0.20, 0.10, 0.02
START = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
NO_REMINDERS = LifecyclePolicy(reminder_critical=None, reminder_warning=None)


def cushion(value: float, account: str = "DU123456") -> Finding:
    """The finding a cushion rule reports for ``value``."""
    severity, clear = grade_below(value, WARNING, CRITICAL, MARGIN)
    return Finding(
        rule="cushion",
        account=account,
        severity=severity,
        value=value,
        threshold=CRITICAL if severity == Severity.CRITICAL else WARNING,
        message=f"cushion {value:.2%}",
        action="sell something" if severity != Severity.OK else None,
        clear_severity=clear,
    )


def missing(account: str = "DU123456") -> Finding:
    """The finding of a rule whose inputs are absent."""
    return Finding(
        rule="cushion",
        account=account,
        severity=Severity.UNKNOWN,
        value=None,
        threshold=None,
        message="no data: gateway disconnected",
        data_missing=True,
    )


def missing_graded_ok() -> Finding:
    """A rule that flags its data as missing but still says ok (must not resolve anything)."""
    return Finding("cushion", "DU123456", Severity.OK, None, None, "stale", data_missing=True)


def unknown_without_flag() -> Finding:
    """Severity unknown without the data_missing flag: treated the same."""
    return Finding("cushion", "DU123456", Severity.UNKNOWN, None, None, "could not compute")


def run(
    findings: list[tuple[Finding, datetime]],
    policy: LifecyclePolicy = NO_REMINDERS,
    state: AlertState | None = None,
) -> tuple[AlertState | None, list[Transition]]:
    transitions = []
    for finding, now in findings:
        state, transition = step(state, finding, now, policy)
        if transition is not None:
            transitions.append(transition)
    return state, transitions


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


LEVEL = {Severity.OK: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


# -- examples --------------------------------------------------------------------------------


def test_sell_off_fires_escalates_eases_and_resolves_once_each():
    """A falling then recovering cushion: one fired, one escalation, one easing, one resolved;
    values between a trigger and its clear level change nothing."""
    values = [0.25, 0.18, 0.17, 0.09, 0.11, 0.115, 0.13, 0.21, 0.219, 0.23, 0.24]
    _, transitions = run([(cushion(v), at(i)) for i, v in enumerate(values)])
    assert [(t.kind, t.previous_severity, t.new_severity) for t in transitions] == [
        ("fired", Severity.OK, Severity.WARNING),
        ("escalated", Severity.WARNING, Severity.CRITICAL),
        ("de-escalated", Severity.CRITICAL, Severity.WARNING),
        ("resolved", Severity.WARNING, Severity.OK),
    ]
    assert [t.finding.value for t in transitions] == [0.18, 0.09, 0.13, 0.23]


def test_recoveries_are_routed_by_the_worst_level_of_the_episode():
    """Whoever was paged for the critical also hears it eased and resolved."""
    values = [0.18, 0.05, 0.15, 0.30]
    _, transitions = run([(cushion(v), at(i)) for i, v in enumerate(values)])
    assert [t.notify_severity for t in transitions] == [
        Severity.WARNING,
        Severity.CRITICAL,
        Severity.CRITICAL,
        Severity.CRITICAL,
    ]


def test_a_jump_straight_to_critical_fires_critical():
    """From ok to critical in one step is one 'fired' at critical (no warning first)."""
    _, transitions = run([(cushion(0.5), at(0)), (cushion(-0.1), at(1))])
    assert [(t.kind, t.new_severity) for t in transitions] == [("fired", Severity.CRITICAL)]


def test_a_new_unknown_or_missing_finding_does_not_fire():
    """No data is not an alert by itself (the stale_data rule says so separately)."""
    state, transitions = run([(missing(), at(0)), (unknown_without_flag(), at(1))])
    assert transitions == []
    assert state is not None and state.severity == Severity.OK


def test_missing_data_holds_a_critical_alert_and_then_recovery_needs_real_data():
    """A disconnect mid-breach neither resolves nor eases the alert."""
    state, transitions = run(
        [
            (cushion(0.05), at(0)),
            (missing(), at(1)),
            (unknown_without_flag(), at(2)),
            (missing_graded_ok(), at(3)),
        ]
    )
    assert [t.kind for t in transitions] == ["fired"]
    assert state is not None and state.severity == Severity.CRITICAL
    state, transitions = run([(cushion(0.30), at(4))], state=state)
    assert [t.kind for t in transitions] == ["resolved"]


def test_reminders_repeat_at_the_interval_of_the_current_level():
    """Critical every 60 minutes; after easing to warning, every 4 hours."""
    policy = LifecyclePolicy()
    sequence = [
        (cushion(0.05), at(0)),
        (cushion(0.05), at(59)),
        (cushion(0.05), at(60)),  # reminder
        (cushion(0.06), at(119)),
        (cushion(0.06), at(120)),  # reminder
        (cushion(0.15), at(121)),  # eased to warning
        (cushion(0.15), at(121 + 239)),
        (cushion(0.15), at(121 + 240)),  # reminder
    ]
    _, transitions = run(sequence, policy)
    assert [(t.kind, t.now) for t in transitions] == [
        ("fired", at(0)),
        ("reminder", at(60)),
        ("reminder", at(120)),
        ("de-escalated", at(121)),
        ("reminder", at(361)),
    ]


def test_reminders_continue_while_data_is_missing_with_the_last_value():
    """The owner keeps hearing about an open critical even when the gateway is away."""
    _, transitions = run([(cushion(0.05), at(0)), (missing(), at(61))], LifecyclePolicy())
    reminder = transitions[-1]
    assert reminder.kind == "reminder"
    assert reminder.new_severity == Severity.CRITICAL
    assert reminder.last_value == 0.05
    assert reminder.finding.data_missing


def test_no_reminders_when_disabled():
    """A policy with ``None`` intervals never reminds."""
    _, transitions = run([(cushion(0.05), at(0)), (cushion(0.05), at(600))], NO_REMINDERS)
    assert [t.kind for t in transitions] == ["fired"]


def test_notification_id_does_not_depend_on_the_time_zone_of_the_instant():
    """The same instant written in two zones gives the same id."""
    paris = START.astimezone(timezone(timedelta(hours=1)))
    first = notification_id("DU1", "cushion", START, "fired", Severity.WARNING, 1)
    second = notification_id("DU1", "cushion", paris, "fired", Severity.WARNING, 1)
    assert first == second
    assert first.startswith("DU1:cushion:1:")
    assert first != notification_id("DU1", "cushion", START, "fired", Severity.WARNING, 2)


def test_step_is_deterministic():
    """The same state, finding and time always give the same transition id."""
    state, _ = step(None, cushion(0.05), at(0), NO_REMINDERS)
    again = [step(state, cushion(0.3), at(5), NO_REMINDERS)[1] for _ in range(3)]
    assert len({t.notification_id for t in again if t is not None}) == 1


# -- properties ------------------------------------------------------------------------------

values = st.floats(min_value=-0.2, max_value=0.6, allow_nan=False)
event = st.one_of(
    values.map(lambda v: ("value", v)),
    st.just(("missing", None)),
    st.just(("unknown", None)),
    st.just(("missing-ok", None)),
)
steps = st.lists(st.tuples(event, st.integers(min_value=0, max_value=300)), max_size=60)
policies = st.sampled_from([NO_REMINDERS, LifecyclePolicy()])


def to_findings(raw: list[tuple[tuple[str, float | None], int]]) -> list[tuple[Finding, datetime]]:
    result, now = [], START
    for (kind, value), gap in raw:
        now = now + timedelta(minutes=gap)
        if kind == "value":
            result.append((cushion(value), now))  # type: ignore[arg-type]
        elif kind == "missing":
            result.append((missing(), now))
        elif kind == "missing-ok":
            result.append((missing_graded_ok(), now))
        else:
            result.append((unknown_without_flag(), now))
    return result


@settings(max_examples=examples(300), deadline=None)
@given(steps, policies)
def test_fired_and_resolved_alternate(raw, policy):
    """Per key: fired, (escalated | de-escalated | reminder)*, resolved, fired, ... in order;
    every transition leaves the state at its new severity."""
    state: AlertState | None = None
    firing = False
    for finding, now in to_findings(raw):
        before = state
        state, transition = step(state, finding, now, policy)
        if transition is None:
            assert state.severity == (before.severity if before else Severity.OK)
            continue
        assert state.severity == transition.new_severity
        if transition.kind == "fired":
            assert not firing
            firing = True
        elif transition.kind == "resolved":
            assert firing
            firing = False
        else:
            assert firing, transition.kind
    assert firing == (state is not None and state.severity != Severity.OK)


@settings(max_examples=examples(200), deadline=None)
@given(
    st.sampled_from([(0.15, WARNING, WARNING + MARGIN), (0.05, CRITICAL, CRITICAL + MARGIN)]),
    st.lists(st.floats(min_value=0, max_value=1, exclude_max=True), min_size=1, max_size=30),
    st.lists(st.integers(min_value=1, max_value=600), min_size=30, max_size=30),
)
def test_a_value_held_between_trigger_and_clear_level_never_changes_state(band, fractions, gaps):
    """Once firing, values in [trigger, clear) neither ease nor resolve the alert."""
    breach, trigger, clear = band
    state, transition = step(None, cushion(breach), START, NO_REMINDERS)
    assert transition is not None and transition.kind == "fired"
    now = START
    for fraction, gap in zip(fractions, gaps, strict=False):
        value = trigger + fraction * (clear - trigger)
        if not value < clear:
            continue
        now += timedelta(minutes=gap)
        new_state, transition = step(state, cushion(value), now, NO_REMINDERS)
        assert transition is None
        assert new_state == state


@settings(max_examples=examples(300), deadline=None)
@given(steps, policies)
def test_missing_data_never_resolves_or_changes_the_level(raw, policy):
    """A data-missing or unknown finding keeps the level; at most it reminds."""
    state: AlertState | None = None
    for finding, now in to_findings(raw):
        before = state.severity if state else Severity.OK
        state, transition = step(state, finding, now, policy)
        if finding.data_missing or finding.severity == Severity.UNKNOWN:
            assert state.severity == before
            assert transition is None or transition.kind == "reminder"


@settings(max_examples=examples(300), deadline=None)
@given(steps, policies)
def test_escalation_is_immediate_and_easing_needs_the_clear_level(raw, policy):
    """A worse severity is alerted at once; the level held is max(sev, min(cur, held))."""
    state: AlertState | None = None
    for finding, now in to_findings(raw):
        before = state.severity if state else Severity.OK
        state, transition = step(state, finding, now, policy)
        if finding.data_missing or finding.severity == Severity.UNKNOWN:
            continue
        held = finding.held_severity
        expected = max(LEVEL[finding.severity], min(LEVEL[before], LEVEL[held]))
        assert LEVEL[state.severity] == expected
        if LEVEL[finding.severity] > LEVEL[before]:
            assert transition is not None
            assert transition.kind in ("fired", "escalated")
            assert transition.new_severity == finding.severity


@settings(max_examples=examples(200), deadline=None)
@given(steps, policies, st.lists(st.booleans(), min_size=60, max_size=60))
def test_ids_are_stable_across_a_reload_of_the_state(raw, policy, reloads):
    """A run that saves its state to the SQLite store and reloads it (a restart) yields exactly
    the same ids, and every id of a run is unique."""
    findings = to_findings(raw)
    _, straight = run(findings, policy)
    state: AlertState | None = None
    reloaded = []
    store = Store(":memory:")
    for (finding, now), reload in zip(findings, reloads, strict=False):
        if reload and state is not None:
            store.save_alert_state(state)
            state = store.load_alert_states()[state.key]
        state, transition = step(state, finding, now, policy)
        if transition is not None:
            reloaded.append(transition)
    assert [t.notification_id for t in reloaded] == [t.notification_id for t in straight]
    ids = [t.notification_id for t in straight]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (Severity.CRITICAL, timedelta(minutes=60)),
        (Severity.WARNING, timedelta(hours=4)),
        (Severity.OK, None),
    ],
    ids=["critical", "warning", "ok"],
)
def test_default_reminder_intervals(severity, expected):
    """Defaults from the reliability issue: critical hourly, warning every four hours."""
    assert LifecyclePolicy().reminder_for(severity) == expected
