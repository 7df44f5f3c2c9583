"""The ``shares_outstanding`` rule: a holding as a share of the company's shares outstanding."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rules import actions
from rules.common import Book, RuleConfig, RuleSpec, make, not_applicable
from rules.model import (
    LEVEL_TOLERANCE,
    AccountSnapshot,
    ActionKind,
    EvaluationContext,
    Finding,
    Remedy,
    Severity,
)
from rules.text import money, names, pct
from rules.validation import fraction, ordered_above, positive, set_field, symbol_map


@dataclass(frozen=True)
class SharesOutstandingConfig(RuleConfig):
    """``shares_outstanding``: a holding as a share of the company's shares outstanding.

    IBKR raises the margin above 1% and requires 100% at 5% or more (``critical`` is inclusive).
    ``shares_outstanding`` supplies counts by symbol; they win over IB fundamental data.
    """

    warning: float = 0.01
    critical: float = 0.05
    shares_outstanding: dict[str, float] = field(default_factory=dict)
    clear_margin: float = 0.001

    def __post_init__(self) -> None:
        fraction("warning", self.warning, allow_zero=False)
        fraction("critical", self.critical, allow_zero=False)
        fraction("clear_margin", self.clear_margin)
        ordered_above(self.warning, self.critical)
        set_field(
            self,
            "shares_outstanding",
            symbol_map("shares_outstanding", self.shares_outstanding, positive),
        )


def shares_outstanding(
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: SharesOutstandingConfig,
    *,
    book: Book | None = None,
) -> Finding:
    """Holding / shares outstanding: above 1% a warning (IBKR raises the margin), at 5% or
    more critical (100% margin). Counts from config win over IB fundamental data; symbols with
    neither are named, the rest are graded."""
    rule = "shares_outstanding"
    positions = Book.of(snapshot) if book is None else book
    if not positions.quantities:
        return not_applicable(rule, snapshot, "No stock positions")
    known = context.shares_outstanding
    ccy = snapshot.base_currency
    rows: list[dict[str, Any]] = []
    no_data: list[str] = []
    breaches: list[tuple[str, float, float, Severity]] = []
    worst_row: dict[str, Any] | None = None
    configured = config.shares_outstanding
    warning, critical, margin = config.warning, config.critical, config.clear_margin
    levels = (Severity.OK, Severity.WARNING, Severity.CRITICAL)
    severity_rank = clear_rank = 0
    worst_ratio = -1.0
    above_clear: list[tuple[str, float]] = []  # all must come down for the alert to clear
    for symbol, quantity in positions.quantities.items():
        count = configured.get(symbol)
        if count is None:
            count = known.get(symbol)
        held = abs(quantity)
        if count is None or not 0 < count < math.inf or held - held != 0:
            no_data.append(symbol)  # no count, or a quantity that is not a number
            continue
        ratio = held / count
        rows.append(
            {"symbol": symbol, "quantity": held, "shares_outstanding": count, "ratio": ratio}
        )
        if ratio > worst_ratio:
            worst_ratio, worst_row = ratio, rows[-1]
        if ratio <= warning - margin + LEVEL_TOLERANCE:  # not exceeds(), inlined
            continue  # fine even against the clear levels
        above_clear.append((symbol, count))
        level = 2 if ratio >= critical else 1 if ratio > warning else 0
        held_level = 2 if ratio >= critical - margin else 1
        severity_rank = max(severity_rank, level)
        clear_rank = max(clear_rank, held_level)
        if level:
            breaches.append((symbol, ratio, count, levels[level]))
    severity, clear = levels[severity_rank], levels[clear_rank]
    no_data_text = (
        f"; no shares-outstanding data for {names(no_data)} (set [rules.shares_outstanding] "
        "shares_outstanding)"
        if no_data
        else ""
    )
    details = {"positions": rows, "no_data": no_data}
    if worst_row is None:
        return not_applicable(
            rule, snapshot, f"Not graded{no_data_text}", threshold=config.warning, details=details
        )
    action = None
    remedies: list[Remedy] = []
    if breaches:
        breaches.sort(key=lambda item: item[1], reverse=True)
        listed = "; ".join(
            f"{symbol} holding is {pct(ratio, 2)} of shares outstanding"
            + (" (100% margin at 5% or more)" if level is Severity.CRITICAL else "")
            for symbol, ratio, _, level in breaches
        )
        message = f"{listed}{no_data_text}"
        action, remedies = _trim(above_clear, positions, warning - margin, ccy)
        value = breaches[0][1]
    else:
        value = worst_row["ratio"]
        message = (
            f"Largest holding {worst_row['symbol']} is {pct(value, 3)} of shares outstanding "
            f"(warning above {pct(config.warning)}){no_data_text}"
        )
    threshold = config.critical if severity is Severity.CRITICAL else config.warning
    return make(
        rule,
        snapshot,
        severity,
        value,
        threshold,
        message,
        action=action,
        clear=clear,
        details=details,
        remedies=remedies,
    )


def _trim(
    holdings: list[tuple[str, float]], positions: Book, target: float, ccy: str
) -> tuple[str, list[Remedy]]:
    """Sell (or buy back) whole shares of each holding above the clear level until it is at
    most ``target`` (the warning level less the clear margin) of shares outstanding."""
    steps = []
    trades = []
    for symbol, count in holdings:
        quantity = positions.quantities[symbol]
        shares = math.ceil(round(abs(quantity) - target * count, 6))
        worth = positions.values.get(symbol)
        per_share = abs(worth) / abs(quantity) if worth is not None and quantity else None
        kind: ActionKind = "sell" if quantity > 0 else "buy_back"
        amount = shares * per_share if per_share is not None else 0.0
        trades.append(
            actions.trade(
                kind,
                amount,
                ccy,
                symbols=(symbol,),
                quantity=shares,
                held=abs(worth) if worth is not None else None,
            )
        )
        priced = f" (about {money(trades[-1].amount, ccy)})" if per_share is not None else ""
        verb = "Sell" if kind == "sell" else "Buy back"
        steps.append(
            f"{verb} {shares:,} {symbol} shares{priced} to hold at most {pct(target, 2)} of "
            "shares outstanding, where the alert clears"
        )
    return "; ".join(steps), [actions.remedy(*trades)]


SPEC = RuleSpec(
    "shares_outstanding",
    shares_outstanding,
    SharesOutstandingConfig,
    "percent",
    "holding / shares outstanding (config or IB fundamentals)",
    reads=("positions",),
)
