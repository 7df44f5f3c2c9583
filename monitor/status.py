"""``margin-monitor status``: what the daemon last wrote down, read offline.

It opens the state database read-only (nothing is created, migrated or locked, so it is safe
beside a running daemon and on a copy of the file) and never connects to the gateway:
each account's last figures from IB and their age, every alert firing (rule, severity, since
when, last notified, next reminder), the notifications waiting in the outbox with their
attempts, the NLV peaks, the gateway link as the daemon last recorded it, and whether a daemon
holds the state directory now. Neither ib_async nor Apprise is imported: it answers at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from monitor.settings import Settings
from monitor.store import (
    RANGE_FIGURES,
    StateUnavailable,
    Store,
    lock_holder,
    worst_in_minute,
)
from rules.clock import as_utc, parse_iso
from rules.lifecycle import AlertState
from rules.model import Severity
from rules.text import format_value, money, pct

#: History columns shown for each account (besides the age), in this order.
ACCOUNT_FIGURES = (
    "net_liquidation",
    "excess_liquidity",
    "cushion",
    "net_leverage",
    "leverage",
    "maint_margin_req",
    "margin_loan",
)


class NoState(Exception):
    """There is no state database to read: the daemon never ran with this state directory."""


def read_status(settings: Settings, now: datetime) -> dict[str, Any]:
    """The ``status --json`` object; :class:`NoState` without a database, a
    :class:`~monitor.store.StoreError` when it cannot be read."""
    path = settings.monitor.database_path
    if not path.is_file():
        raise NoState(
            f"no state yet: {path} does not exist (no daemon has run with "
            f"[monitor] state_dir = {settings.monitor.state_dir})"
        )
    with Store(path, readonly=True) as store:
        samples = store.latest_samples()
        states = store.load_alert_states()
        pending = store.outbox("pending")
        peaks = store.peaks()
        try:
            link = store.daemon_state("gateway")
        except StateUnavailable:  # written by a version that did not record it
            link = None
    holder = lock_holder(settings.monitor.state_path)
    policy = settings.notify.reminder_policy()
    return {
        "state_file": str(path),
        "read_at": now.isoformat(),
        "daemon": {"running": holder is not None, "pid": holder},
        "gateway": _gateway(link, now),
        "accounts": [_account(sample, now) for sample in samples],
        "alerts": [
            _alert(state, policy.reminder_for(state.severity))
            for state in sorted(states.values(), key=lambda s: (s.account, s.rule))
            if state.severity in (Severity.WARNING, Severity.CRITICAL)
        ],
        "outbox": [
            {
                "notification_id": item.notification_id,
                "account": item.account,
                "rule": item.rule,
                "severity": item.severity,
                "kind": item.kind,
                "title": item.title,
                "target": item.target_name,
                "attempts": item.attempts,
                "created_at": item.created_at.isoformat(),
                "next_attempt_at": item.next_attempt_at.isoformat(),
                "last_error": item.last_error,
            }
            for item in pending
        ],
        "peaks": [
            {"account": account, "peak": peak, "updated_at": updated.isoformat()}
            for account, (peak, updated) in peaks.items()
        ],
    }


def _gateway(link: tuple[dict[str, Any], datetime] | None, now: datetime) -> dict[str, Any] | None:
    if link is None:
        return None
    record, recorded_at = link
    return {**record, "recorded_at": recorded_at.isoformat(), "age_seconds": _age(recorded_at, now)}


def _account(sample: dict[str, Any], now: datetime) -> dict[str, Any]:
    extra = sample.get("extra") or {}
    entry: dict[str, Any] = {
        "account": sample["account"],
        "base_currency": extra.get("base_currency"),
        "at": sample["at"].isoformat(),
        "age_seconds": _age(sample["at"], now),
    }
    for name in ACCOUNT_FIGURES:
        entry[name] = extra.get(name) if name == "net_leverage" else sample.get(name)
    # The history's last minute at its worst: a dip inside it that the last value hides.
    entry["worst_in_minute"] = {name: worst_in_minute(sample, name) for name in RANGE_FIGURES}
    return entry


def _alert(state: AlertState, reminder: timedelta | None) -> dict[str, Any]:
    last = state.last_notified
    return {
        "account": state.account,
        "rule": state.rule,
        "severity": state.severity.value,
        "since": _iso(state.episode_started),
        "last_notified": _iso(last),
        "next_reminder": _iso(last + reminder) if last and reminder else None,
        "last_value": state.last_value,
    }


def _age(moment: datetime, now: datetime) -> float:
    return round(max(0.0, (now - moment).total_seconds()), 1)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# -- the readable form -------------------------------------------------------------------------


def render_status(status: dict[str, Any]) -> str:
    """``status`` without ``--json``: one block per part, times in UTC with their age."""
    now = as_utc(datetime.fromisoformat(status["read_at"]))
    daemon = status["daemon"]
    lines = [
        f"State file: {status['state_file']}",
        "Daemon: " + (f"running (PID {daemon['pid']})" if daemon["running"] else "not running"),
        f"Gateway, as last recorded: {_link_text(status['gateway'], now)}",
        "",
    ]
    lines.append(f"Accounts ({len(status['accounts'])}), IB's last figures:")
    for entry in status["accounts"]:
        lines.append(f"  {entry['account']}  at {_when(entry['at'], now)}")
        lines.append("    " + _figures_text(entry))
    if not status["accounts"]:
        lines.append("  none recorded yet")
    lines.append("")
    lines.append(f"Alerts firing ({len(status['alerts'])}):")
    for alert in status["alerts"]:
        reminder = _when(alert["next_reminder"], now) if alert["next_reminder"] else "none"
        lines.append(
            f"  {alert['account']} {alert['rule']} {alert['severity'].upper()} "
            f"since {_when(alert['since'], now)}"
        )
        lines.append(
            f"    last notified {_when(alert['last_notified'], now)}; next reminder {reminder}"
        )
    if not status["alerts"]:
        lines.append("  none")
    lines.append("")
    lines.append(f"Outbox: {len(status['outbox'])} pending")
    for row in status["outbox"]:
        tries = "attempt" if row["attempts"] == 1 else "attempts"
        lines.append(f"  {row['title']} -> {row['target']}")
        due = parse_iso(row["next_attempt_at"])
        following = (
            "due now" if due is None or due <= now else f"next {_when(due.isoformat(), now)}"
        )
        lines.append(
            f"    queued {_when(row['created_at'], now)}; {row['attempts']} {tries}; {following}"
        )
        if row["last_error"]:
            lines.append(f"    last error: {row['last_error']}")
    lines.append("")
    lines.append(f"Peaks ({len(status['peaks'])}):")
    currencies = {entry["account"]: entry["base_currency"] for entry in status["accounts"]}
    for peak in status["peaks"]:
        shown = money(peak["peak"], currencies.get(peak["account"]) or "")
        lines.append(f"  {peak['account']} {shown} (set {_when(peak['updated_at'], now)})")
    if not status["peaks"]:
        lines.append("  none")
    return "\n".join(lines)


def _link_text(link: dict[str, Any] | None, now: datetime) -> str:
    if link is None:
        return "no connection state recorded yet"
    if link["connected"] and link["live"]:
        state = f"connected to {link['endpoint']}"
    elif link["connected"]:
        state = f"connected to {link['endpoint']}, but it lost IB (no live data)"
    else:
        state = f"disconnected from {link['endpoint']}"
    text = f"{state} since {_when(link['since'], now)}"
    if not link["connected"] and link.get("last_error"):
        text += f"; last error: {link['last_error']}"
    return text + f"; recorded {_age_text(link['age_seconds'])} ago"


def _figures_text(entry: dict[str, Any]) -> str:
    currency = entry["base_currency"] or ""
    parts = [
        f"NLV {format_value(entry['net_liquidation'], 'money', currency)}",
        f"EL {format_value(entry['excess_liquidity'], 'money', currency)}",
    ]
    for name, label in (("cushion", "cushion"), ("net_leverage", "net"), ("leverage", "gross")):
        if entry[name] is not None:
            parts.append(f"{label} {_figure(entry, name)}")
    if entry["margin_loan"]:
        parts.append(f"loan {money(entry['margin_loan'], currency)}")
    return ", ".join(parts)


def _figure(entry: dict[str, Any], name: str) -> str:
    """``24.6%``, or ``24.6% (worst 8.7% within that minute)`` when the minute went worse
    than its last value (a dip the last value hides)."""
    def shown(value: float) -> str:
        return pct(value) if name == "cushion" else format_value(value, "multiple")

    last = shown(entry[name])
    worst = (entry.get("worst_in_minute") or {}).get(name)
    shown_worst = shown(worst) if worst is not None else last
    return last if shown_worst == last else f"{last} (worst {shown_worst} within that minute)"


def _when(text: str | None, now: datetime) -> str:
    """``2026-11-22 08:13 UTC (5 min ago)``, or ``(in 3 h)`` for a time ahead."""
    moment = parse_iso(text) if text else None
    if moment is None:
        return "never"
    stamp = as_utc(moment).strftime("%Y-%m-%d %H:%M UTC")
    seconds = (now - moment).total_seconds()
    if seconds >= 0:
        return f"{stamp} ({_age_text(seconds)} ago)"
    return f"{stamp} (in {_age_text(-seconds)})"


def _age_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"
