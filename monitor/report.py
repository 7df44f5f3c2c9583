"""What ``check`` reports: the ``--json`` object, and the same as a Nagios/Icinga plugin.

An account's entry holds the snapshot figures of :data:`REPORTED_FIGURES` (``None`` where IB
sent no value, or where a ratio would mean nothing: ``null_reasons`` then says why), its number
of positions, its status and every finding. The status is never milder than what
ExcessLiquidity alone says (EL < 0 is critical); the report's status is the worst over all
accounts and its exit code follows the Nagios convention.

:func:`plugin_output` renders that object by the Monitoring Plugins development guidelines:
a first line ``MARGIN CRITICAL - DU1 cushion 8.5% < 10% | 'DU1 cushion'=8.50%;20:;10: ...``,
the details on the lines after it, and performance data (cushion, net and gross leverage,
ExcessLiquidity and NetLiquidation per account, with the rules' levels as warning and
critical ranges) wherever it fits: on the first line, then after a ``|`` on the last lines.
No line is wider than the width it is given (the terminal's) unless it is told to be wide.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from rules import RulesConfig, account_status
from rules.catalog import unit_of
from rules.common import MIN_EQUITY, Book, exposure_of
from rules.model import AccountSnapshot, Finding, Severity, is_number, worst
from rules.text import Unit, format_value, money, pct, times

#: Snapshot figures in each account of ``check --json``. ``cushion`` is EL / NLV, ``leverage``
#: gross leverage GPV / NLV, ``net_leverage`` (long - short) / NLV (negative: net short); all
#: three are null unless NLV is positive.
REPORTED_FIGURES = (
    "base_currency",
    "net_liquidation",
    "excess_liquidity",
    "cushion",
    "gross_position_value",
    "maint_margin_req",
    "init_margin_req",
    "equity_with_loan",
    "available_funds",
    "sma",
    "margin_loan",
    "leverage",
    "net_leverage",
)

#: Exit status per overall severity (Nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
EXIT_CODES = {Severity.OK: 0, Severity.WARNING: 1, Severity.CRITICAL: 2, Severity.UNKNOWN: 3}

_RATIOS = ("cushion", "leverage", "net_leverage")


def account_report(
    account: str, snapshot: AccountSnapshot | None, findings: list[Finding]
) -> dict[str, Any]:
    """One account's entry in ``check --json``."""
    entry: dict[str, Any] = {"account": account}
    figures, reasons = reported_figures(snapshot)
    entry.update(figures)
    entry["null_reasons"] = reasons
    entry["positions"] = len(snapshot.positions) if snapshot else 0
    entry["status"] = account_status(snapshot, findings).value
    entry["findings"] = [finding.to_dict() for finding in findings]
    return entry


def reported_figures(
    snapshot: AccountSnapshot | None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The figures of :data:`REPORTED_FIGURES` and, for each ratio left null, why."""
    figures: dict[str, Any] = {
        name: getattr(snapshot, name, None) for name in REPORTED_FIGURES if name not in _RATIOS
    }
    reasons: dict[str, str] = {}
    if snapshot is None:
        return {**figures, **dict.fromkeys(_RATIOS)}, reasons
    nlv = snapshot.net_liquidation
    figures["cushion"] = snapshot.measured_cushion
    figures["leverage"] = snapshot.leverage
    figures["net_leverage"] = None
    if not is_number(nlv):
        why = "NetLiquidation was not reported"
    elif nlv < MIN_EQUITY:
        why = (
            f"NetLiquidation is {money(nlv, snapshot.base_currency)}: a ratio to equity that is "
            "not positive means nothing"
        )
    else:
        why = ""
        exposure = exposure_of(snapshot, Book.of(snapshot))
        if exposure is not None:
            figures["net_leverage"] = exposure.net / nlv
        else:
            reasons["net_leverage"] = "a position has no market value yet"
    if why:
        reasons.update(dict.fromkeys(_RATIOS, why))
    else:
        if figures["cushion"] is None:
            reasons["cushion"] = "neither Cushion nor ExcessLiquidity was reported"
        if figures["leverage"] is None:
            reasons["leverage"] = "GrossPositionValue was not reported"
    return figures, reasons


def report(accounts: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole ``check --json`` object of the accounts' entries (``unknown`` without any)."""
    if not accounts:
        return unknown("the gateway reported no managed accounts (or none of [ib] accounts)")
    severities = [Severity(account["status"]) for account in accounts]
    return {"status": worst(severities).value, "accounts": accounts}


def unknown(error: str) -> dict[str, Any]:
    """The ``check --json`` object when nothing could be evaluated, saying why."""
    return {"status": Severity.UNKNOWN.value, "error": error, "accounts": []}


# -- the Nagios/Icinga plugin ------------------------------------------------------------------

#: The service name that opens the first line.
PLUGIN_NAME = "MARGIN"
_PROBLEM_ORDER = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.UNKNOWN: 2}
_RATIO_LABELS: tuple[tuple[str, str, Unit], ...] = (
    ("cushion", "cushion", "percent"),
    ("net_leverage", "net", "multiple"),
    ("leverage", "gross", "multiple"),
)


@dataclass(frozen=True, slots=True)
class PerfDatum:
    """One performance-data item: ``'label'=value[UOM];[warn];[crit]``, its label quoted
    (a quote doubled), warn and crit in the guidelines' range format (``20:`` alerts below
    20, ``-1.6:1.6`` outside that band, ``2`` above 2 or below 0)."""

    label: str
    value: float
    uom: str = ""
    warn: str = ""
    crit: str = ""
    decimals: int = 2

    def __str__(self) -> str:
        label = "'" + self.label.replace("'", "''") + "'"
        fields = [f"{self.value:.{self.decimals}f}{self.uom}", self.warn, self.crit]
        while len(fields) > 1 and not fields[-1]:
            fields.pop()
        return f"{label}=" + ";".join(fields)


def perfdata(entry: dict[str, Any], rules: RulesConfig) -> list[PerfDatum]:
    """The performance data of one account of ``check --json``: cushion (percent), net and
    gross leverage (plain numbers), EL and NLV (in the account's currency); a figure that is
    null is left out. The ranges are the configured levels of the rules that judge them; EL
    is critical below 0 and below IBKR's warning line (``ib_warning_line`` of the
    maintenance requirement), as the cushion rule judges it."""
    account = entry["account"]
    data: list[PerfDatum] = []
    cushion, net, gross = rules.cushion, rules.leverage, rules.gross_leverage
    if entry.get("cushion") is not None:
        warn, crit = (_at_least(level * 100) for level in (cushion.warning, cushion.critical))
        if not cushion.enabled:
            warn = crit = ""
        data.append(PerfDatum(f"{account} cushion", entry["cushion"] * 100, "%", warn, crit))
    if entry.get("net_leverage") is not None:
        warn, crit = (_band(net.warning), _band(net.critical)) if net.enabled else ("", "")
        data.append(PerfDatum(f"{account} net leverage", entry["net_leverage"], "", warn, crit, 3))
    if entry.get("leverage") is not None:
        warn, crit = (
            _number(level) if gross.enabled and level is not None else ""
            for level in (gross.warning, gross.critical)
        )
        data.append(PerfDatum(f"{account} gross leverage", entry["leverage"], "", warn, crit, 3))
    if entry.get("excess_liquidity") is not None:
        floor = 0.0
        maint = entry.get("maint_margin_req")
        if cushion.enabled and is_number(maint) and maint > 0:
            floor = round(cushion.ib_warning_line * maint, 2)
        data.append(PerfDatum(f"{account} EL", entry["excess_liquidity"], crit=_at_least(floor)))
    if entry.get("net_liquidation") is not None:
        data.append(PerfDatum(f"{account} NLV", entry["net_liquidation"]))
    return data


def _number(value: float) -> str:
    """A threshold in the guidelines' number class ``[-0-9.]``: no exponent, no trailing 0."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _at_least(level: float) -> str:
    """The range that alerts below ``level``."""
    return f"{_number(level)}:"


def _band(level: float | None) -> str:
    """The range that alerts outside ``-level..level`` (net leverage, long or short)."""
    return "" if level is None else f"{_number(-level)}:{_number(level)}"


def plugin_output(result: dict[str, Any], rules: RulesConfig, width: int | None) -> str:
    """``check``'s output as a Monitoring Plugin: status line, details, performance data.

    ``width`` is the widest a line may be (the terminal's); ``None`` puts everything on the
    first line and leaves the details unwrapped (``--wide``).
    """
    status = Severity(result["status"])
    head = f"{PLUGIN_NAME} {status.value.upper()} - "
    # "|" opens the performance data: a text holding one (|long - short|) would corrupt it.
    items = [item.replace("|", "¦") for item in _status_items(result)]
    data = [str(datum) for entry in result["accounts"] for datum in perfdata(entry, rules)]
    details = [line.replace("|", "¦") for line in _details(result)]
    if width is None:
        first = head + "; ".join(items)
        if data:
            first += " | " + " ".join(data)
        return "\n".join([first, *details])
    first = head + _fit(items, width - len(head))
    room = width - len(first) - len(" | ")
    on_first: list[str] = []
    while data and len(data[0]) + (1 if on_first else 0) <= room:
        room -= len(data[0]) + (1 if on_first else 0)
        on_first.append(data.pop(0))
    if on_first:
        first += " | " + " ".join(on_first)
    lines = [first]
    for line in details:
        indent = " " * (len(line) - len(line.lstrip()))
        lines += textwrap.wrap(
            line,
            width,
            initial_indent="",
            subsequent_indent=indent + "    ",
            break_on_hyphens=False,
        ) or [""]
    return "\n".join(lines + _packed(data, width, "| "))


def _status_items(result: dict[str, Any]) -> list[str]:
    """What the first line says after the status: each problem, worst first (or, when all
    is well, how many accounts and the lowest cushion; or why nothing could be judged)."""
    if result.get("error"):
        return [result["error"]]
    problems: list[tuple[int, str]] = []
    for entry in result["accounts"]:
        found = False
        for finding in entry["findings"]:
            severity = Severity(finding["severity"])
            if severity in _PROBLEM_ORDER:
                problems.append((_PROBLEM_ORDER[severity], _problem(entry, finding)))
                found = True
        account_severity = Severity(entry["status"])
        if not found and account_severity in _PROBLEM_ORDER:  # EL < 0 with its rule off
            problems.append(
                (_PROBLEM_ORDER[account_severity], f"{entry['account']} {account_severity.value}")
            )
    if problems:
        return [text for _, text in sorted(problems, key=lambda item: item[0])]
    accounts = result["accounts"]
    cushions = [(e["cushion"], e["account"]) for e in accounts if e.get("cushion") is not None]
    plural = "s" if len(accounts) != 1 else ""
    text = f"{len(accounts)} account{plural} ok"
    if cushions:
        lowest, account = min(cushions)
        text += f", lowest cushion {pct(lowest)} ({account})"
    return [text]


def _problem(entry: dict[str, Any], finding: dict[str, Any]) -> str:
    """``DU1 cushion 8.5% < 10%``: the value against the level it crossed; when the message
    says otherwise (a cushion above its level, critical for ExcessLiquidity at IBKR's warning
    line) or a figure is missing, ``DU1 cushion: <the message's first clause>``."""
    who = f"{entry['account']} {finding['rule']}"
    value, level = finding.get("value"), finding.get("threshold")
    message = str(finding.get("message") or finding["severity"])
    if is_number(value) and is_number(level) and value != level:
        sign = "<" if value < level else ">"
        words = message.lower()
        contradicted = ("below" in words and sign == ">") or ("above" in words and sign == "<")
        if not contradicted:
            unit = unit_of(finding["rule"])
            base = entry.get("base_currency") or ""
            return f"{who} {_short(value, unit, base)} {sign} {_short(level, unit, base)}"
    return f"{who}: {_first_clause(message)}"


def _first_clause(message: str) -> str:
    """A message up to its first ``; `` or `` (``, or the first ``: `` after a lead-in
    (``LIQUIDATING: ExcessLiquidity is USD -27,500.00, below 0``)."""
    clause = message.split("; ")[0].split(" (")[0]
    start = 0
    while (colon := clause.find(": ", start)) != -1:
        if colon > 20:
            return clause[:colon]
        start = colon + 2
    return clause


def _short(value: float, unit: Unit, currency: str) -> str:
    if unit == "percent":
        return pct(value)
    if unit == "multiple":
        return times(value)
    return format_value(value, unit, currency)


def _fit(items: list[str], room: int) -> str:
    """``items`` joined by ``; `` within ``room`` characters: those that fit, then
    ``(+N more)``; a first item too long for the room is cut with an ellipsis."""
    shown: list[str] = []
    for index, item in enumerate(items):
        rest = len(items) - index - 1
        more = f" (+{rest} more)" if rest else ""
        candidate = "; ".join([*shown, item])
        if len(candidate + more) <= room:
            shown.append(item)
            continue
        left = len(items) - len(shown)
        if shown:
            return "; ".join(shown) + f" (+{left} more)"
        tail = f" (+{left - 1} more)" if left > 1 else ""
        return item[: max(1, room - len(tail) - 1)] + "…" + tail
    return "; ".join(shown)


def _details(result: dict[str, Any]) -> list[str]:
    """The lines after the first: per account its figures, then each problem with the
    action that clears it; the error in full when nothing could be judged."""
    lines = []
    if result.get("error"):
        lines.append(f"error: {result['error']}")
    for entry in result["accounts"]:
        base = entry.get("base_currency") or ""
        figures = [
            f"NLV {format_value(entry.get('net_liquidation'), 'money', base)}",
            f"EL {format_value(entry.get('excess_liquidity'), 'money', base)}",
        ]
        reasons = entry.get("null_reasons") or {}
        for key, label, unit in _RATIO_LABELS:
            if entry.get(key) is not None:
                figures.append(f"{label} {format_value(entry[key], unit, digits=2)}")
            elif key in reasons:
                figures.append(f"{label} n/a")
        lines.append(
            f"{entry['account']} ({base}) {entry['status'].upper()}: " + ", ".join(figures)
        )
        for reason in dict.fromkeys(reasons.values()):
            lines.append(f"  n/a: {reason}")
        problems = [f for f in entry["findings"] if Severity(f["severity"]) in _PROBLEM_ORDER]
        for finding in sorted(problems, key=lambda f: _PROBLEM_ORDER[Severity(f["severity"])]):
            lines.append(f"  {finding['severity'].upper()} {finding['rule']}: {finding['message']}")
            if finding.get("action"):
                lines.append(f"    -> {finding['action']}")
    return lines


def _packed(items: list[str], width: int, lead: str) -> list[str]:
    """``items`` space-separated on as few lines of ``width`` as they fit, the first line
    opened by ``lead`` (an item longer than a line gets a line of its own)."""
    lines: list[str] = []
    current = lead if items else ""
    for item in items:
        if current.strip() and len(current) + 1 + len(item) > width:
            lines.append(current)
            current = item
        else:
            current = f"{current}{item}" if current in ("", lead) else f"{current} {item}"
    if current:
        lines.append(current)
    return lines
