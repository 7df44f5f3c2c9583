"""The ``stale_data`` rule: stale values while connected, a blind monitor while disconnected."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from rules.checks.stale_data import StaleDataConfig, stale_data
from rules.model import AccountSnapshot, EvaluationContext, Severity
from rules.samples import SAMPLE_TIME, sample_snapshot

NOW = SAMPLE_TIME
OK, WARNING, CRITICAL, UNKNOWN = Severity.OK, Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN


def minutes_ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("context", "severity", "value", "in_message"),
    [
        (EvaluationContext(now=NOW, last_update=minutes_ago(2)), OK, 2.0, "2.0 min old"),
        (EvaluationContext(now=NOW, last_update=minutes_ago(10)), OK, 10.0, "stale after 10"),
        (
            EvaluationContext(now=NOW, last_update=minutes_ago(12)),
            WARNING,
            12.0,
            "account values are 12 min old while connected",
        ),
        (
            EvaluationContext(now=NOW, connected=False, disconnected_since=minutes_ago(3)),
            OK,
            3.0,
            "alert after 5 min",
        ),
        (
            EvaluationContext(now=NOW, connected=False, disconnected_since=minutes_ago(5)),
            CRITICAL,
            5.0,
            "Monitor blind: the gateway has been disconnected for 5 min",
        ),
        (
            EvaluationContext(
                now=NOW,
                connected=False,
                disconnected_since=minutes_ago(20),
                in_restart_window=True,
            ),
            OK,
            20.0,
            "inside the daily restart window (expected)",
        ),
        (
            EvaluationContext(now=NOW, connected=False, last_update=minutes_ago(30)),
            CRITICAL,
            30.0,
            "Monitor blind",
        ),
        (
            EvaluationContext(
                now=NOW.replace(tzinfo=None),
                connected=False,
                disconnected_since=minutes_ago(7).replace(tzinfo=None),
            ),
            CRITICAL,
            7.0,
            "since 2026-05-11 15:53 UTC",
        ),
    ],
    ids=[
        "fresh",
        "at-limit",
        "stale",
        "short-disconnect",
        "blind",
        "restart-window",
        "blind-since-last-update",
        "naive-times",
    ],
)
def test_stale_data(context, severity, value, in_message):
    """Stale after 10 minutes connected; blind after 5 minutes disconnected (not in the window)."""
    finding = stale_data(sample_snapshot(), context, StaleDataConfig())
    assert finding.rule == "stale_data"
    assert finding.severity is severity
    assert finding.value == pytest.approx(value)
    assert in_message in finding.message
    if severity in (WARNING, CRITICAL):
        assert finding.action
    assert not finding.data_missing


def test_stale_data_after_the_restart_window_is_blind():
    """Once the window is over (flag false), the same long disconnect is critical."""
    since = minutes_ago(35)
    inside = EvaluationContext(
        now=NOW, connected=False, disconnected_since=since, in_restart_window=True
    )
    after = EvaluationContext(now=NOW, connected=False, disconnected_since=since)
    assert stale_data(sample_snapshot(), inside, StaleDataConfig()).severity is OK
    assert stale_data(sample_snapshot(), after, StaleDataConfig()).severity is CRITICAL


def test_stale_data_unknowns_and_empty_snapshot():
    """No values yet, or a disconnect of unknown start: unknown (never a false recovery)."""
    empty = AccountSnapshot("DU9", "", NOW)
    waiting = stale_data(empty, EvaluationContext(now=NOW), StaleDataConfig())
    assert waiting.severity is UNKNOWN and waiting.data_missing
    assert waiting.account == "DU9"
    lost = stale_data(empty, EvaluationContext(now=NOW, connected=False), StaleDataConfig())
    assert lost.severity is UNKNOWN and lost.data_missing


def test_stale_data_thresholds_are_configurable():
    """Custom limits."""
    config = StaleDataConfig(stale_minutes=3, blind_minutes=1)
    context = EvaluationContext(now=NOW, last_update=minutes_ago(4))
    assert stale_data(sample_snapshot(), context, config).severity is WARNING
