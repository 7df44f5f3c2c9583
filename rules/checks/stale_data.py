"""The ``stale_data`` rule: is the data the monitor judges by still flowing?

It reads only ``context`` (the link state and when values last arrived), so it also works on
an empty snapshot while the gateway is down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rules.clock import as_utc, utc_minute
from rules.common import RuleConfig, RuleSpec, make
from rules.model import AccountSnapshot, EvaluationContext, Finding, Severity
from rules.validation import positive


@dataclass(frozen=True)
class StaleDataConfig(RuleConfig):
    """``stale_data``: values older than ``stale_minutes`` while connected is a warning;
    disconnected for ``blind_minutes`` is critical ("monitor blind"), except inside the daily
    restart window (until the disconnect outlasts it).
    """

    stale_minutes: float = 10.0
    blind_minutes: float = 5.0

    def __post_init__(self) -> None:
        positive("stale_minutes", self.stale_minutes)
        positive("blind_minutes", self.blind_minutes)


def _minutes(later: datetime, earlier: datetime) -> float:
    return max(0.0, (as_utc(later) - as_utc(earlier)).total_seconds() / 60)


def stale_data(
    snapshot: AccountSnapshot, context: EvaluationContext, config: StaleDataConfig
) -> Finding:
    """Values older than 10 minutes while connected is a warning; disconnected for 5 minutes or
    more is a critical "monitor blind", except inside the daily restart window (the context
    says whether we are in it; once the window is over, a longer disconnect is critical).
    Inside the window such a finding is ``ok`` with a ``critical`` clear level, so it holds an
    alert already raised before the window (no false recovery) without starting one.

    The value is the age of the data in minutes (while connected) or the length of the
    disconnect (while disconnected).
    """
    rule = "stale_data"
    now = context.now
    if not context.connected:
        since = context.disconnected_since or context.last_update
        if since is None:
            return Finding(
                rule=rule,
                account=snapshot.account,
                severity=Severity.UNKNOWN,
                value=None,
                threshold=config.blind_minutes,
                message="Gateway disconnected; when it dropped is not known",
                data_missing=True,
                estimated=snapshot.estimated,
            )
        down = _minutes(now, since)
        details = {"connected": False, "disconnected_since": as_utc(since).isoformat()}
        length = f"{down:.0f} min"
        if down >= config.blind_minutes and not context.in_restart_window:
            return make(
                rule,
                snapshot,
                Severity.CRITICAL,
                down,
                config.blind_minutes,
                f"Monitor blind: the gateway has been disconnected for {length} (since "
                f"{utc_minute(since)}); margin is not being watched",
                action=(
                    "Check TWS / IB Gateway and its API connection (is it running, logged in, "
                    f"API enabled?): no account data for {length}"
                ),
                details=details,
            )
        why = (
            "inside the daily restart window (expected)"
            if context.in_restart_window
            else f"alert after {config.blind_minutes:g} min"
        )
        # In the window a long disconnect starts no alert, but it does not end one either: a
        # "monitor blind" alert raised before the window opened stays until data flows again.
        blind = down >= config.blind_minutes
        return make(
            rule,
            snapshot,
            Severity.OK,
            down,
            config.blind_minutes,
            f"Gateway disconnected for {length}, {why}",
            clear=Severity.CRITICAL if blind else None,
            details=details,
        )
    if context.last_update is None:
        return Finding(
            rule=rule,
            account=snapshot.account,
            severity=Severity.UNKNOWN,
            value=None,
            threshold=config.stale_minutes,
            message="Connected, but no account values received yet",
            data_missing=True,
            estimated=snapshot.estimated,
        )
    age = _minutes(now, context.last_update)
    details = {"connected": True, "last_update": as_utc(context.last_update).isoformat()}
    if age > config.stale_minutes:
        return make(
            rule,
            snapshot,
            Severity.WARNING,
            age,
            config.stale_minutes,
            f"Stale data: account values are {age:.0f} min old while connected (IB pushes every "
            f"3 min; stale after {config.stale_minutes:g} min)",
            action=(
                "Check the gateway's connection to IB (error 1100?) and the account "
                f"subscription: last values at {utc_minute(context.last_update)}"
            ),
            details=details,
        )
    return make(
        rule,
        snapshot,
        Severity.OK,
        age,
        config.stale_minutes,
        f"Account values {age:.1f} min old (stale after {config.stale_minutes:g} min)",
        details=details,
    )


SPEC = RuleSpec(
    "stale_data", stale_data, StaleDataConfig, "minutes", "age of IB's values; time disconnected"
)
