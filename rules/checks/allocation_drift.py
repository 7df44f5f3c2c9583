"""The ``allocation_drift`` rule: weights against targets, with the trades that restore them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rules import actions, figures
from rules.common import Book, RuleConfig, RuleSpec, make, missing, not_applicable
from rules.model import (
    AccountSnapshot,
    EvaluationContext,
    Finding,
    Remedy,
    Severity,
    grade_above,
)
from rules.text import money, names, pct
from rules.validation import finite, fraction, ordered_above, set_field, symbol_map


@dataclass(frozen=True)
class AllocationDriftConfig(RuleConfig):
    """``allocation_drift``: weights against ``targets`` (fractions summing to 1).

    A weight is a symbol's market value over the combined value of the target symbols held
    (other holdings are ignored), so the trades that restore the targets are self-funding.
    Warning when a weight is more than ``band`` off its target; ``critical_band`` optional.
    No targets: the rule is not applicable.
    """

    targets: dict[str, float] = field(default_factory=dict)
    band: float = 0.05
    critical_band: float | None = None
    clear_margin: float = 0.01

    def __post_init__(self) -> None:
        numbers = symbol_map("targets", self.targets, finite)
        total = sum(numbers.values())
        if numbers and math.isclose(total, 100.0, abs_tol=0.5):
            raise ValueError(
                f"targets sum to {total:g}: they look like percent; write fractions that sum "
                "to 1, e.g. SCHD = 0.40, VOO = 0.40, BND = 0.20"
            )
        targets = symbol_map("targets", numbers, fraction)
        if targets and not math.isclose(total, 1.0, abs_tol=0.005):
            raise ValueError(
                "targets must be fractions that sum to 1 (e.g. SCHD = 0.40, VOO = 0.40, "
                f"BND = 0.20), but they sum to {total:g}"
            )
        set_field(self, "targets", targets)
        fraction("band", self.band, allow_zero=False)
        if self.critical_band is not None:
            fraction("critical_band", self.critical_band, allow_zero=False)
        ordered_above(self.band, self.critical_band)
        fraction("clear_margin", self.clear_margin)


def allocation_drift(
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: AllocationDriftConfig,
    *,
    book: Book | None = None,
) -> Finding:
    """Weights of the target symbols (value over their combined value) against the targets;
    the action lists the buys and sells, in base currency, that restore them."""
    rule = "allocation_drift"
    if not config.targets:
        return not_applicable(rule, snapshot, "No allocation targets configured")
    positions = Book.of(snapshot) if book is None else book
    unpriced = [symbol for symbol in config.targets if symbol in positions.unpriced]
    if unpriced:
        return missing(rule, snapshot, positions.lacking(unpriced))
    values = {symbol: positions.values.get(symbol, 0.0) for symbol in config.targets}
    total = sum(values.values())
    ccy = snapshot.base_currency
    if total <= 0:
        return not_applicable(
            rule,
            snapshot,
            f"None of the target symbols ({names(config.targets)}) is held",
            threshold=config.band,
        )
    trades = figures.rebalancing_trades(values, config.targets, total)
    rows: list[dict[str, Any]] = []
    drift_max = 0.0
    driver = ""
    for symbol, target in config.targets.items():
        weight = values[symbol] / total
        drift = weight - target
        rows.append(
            {
                "symbol": symbol,
                "value": values[symbol],
                "weight": weight,
                "target": target,
                "drift": drift,
                "trade": trades[symbol],
            }
        )
        if abs(drift) > drift_max:
            drift_max, driver = abs(drift), symbol
    severity, clear = grade_above(drift_max, config.band, config.critical_band, config.clear_margin)
    weights = ", ".join(
        f"{row['symbol']} {pct(row['weight'])} (target {pct(row['target'])})" for row in rows
    )
    if severity is Severity.OK:
        message = f"Weights within {pct(config.band)} of target: {weights}"
    else:
        message = (
            f"{driver} is {pct(drift_max)} off its target, more than the {pct(config.band)} "
            f"band: {weights}"
        )
    action = None
    remedies: list[Remedy] = []
    if severity is not Severity.OK:
        ordered = sorted(rows, key=lambda row: row["trade"])
        orders = [
            actions.trade(
                "sell" if row["trade"] < 0 else "buy",
                abs(row["trade"]),
                ccy,
                symbols=(row["symbol"],),
                held=row["value"] if row["trade"] < 0 else None,
            )
            for row in ordered
            if abs(row["trade"]) >= 0.005
        ]
        remedies = [actions.remedy(*orders)]
        steps = "; ".join(
            f"{order.kind} {money(order.amount, ccy)} {order.symbols[0]}" for order in orders
        )
        if steps:
            action = steps[0].upper() + steps[1:]
        else:
            action = f"Rebalance toward the targets (every trade is under {money(0.01, ccy)})"
        action += f" (restores the targets on {money(total, ccy)})"
    threshold = (
        config.critical_band
        if severity is Severity.CRITICAL and config.critical_band is not None
        else config.band
    )
    return make(
        rule,
        snapshot,
        severity,
        drift_max,
        threshold,
        message,
        action=action,
        clear=clear,
        details={"positions": rows, "total": total},
        remedies=remedies,
    )


SPEC = RuleSpec(
    "allocation_drift",
    allocation_drift,
    AllocationDriftConfig,
    "percent",
    "weights vs targets, with the trades that restore them",
    reads=("positions",),
)
