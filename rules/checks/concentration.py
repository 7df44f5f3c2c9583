"""The ``concentration`` rule: each holding's share of NLV against the stock or ETF cap.

Positions are summed per symbol over stock and ETF holdings (secType STK), in base currency;
``details["positions"]`` lists every holding's figures. A holding that cannot be valued (no
market value, or no exchange rate for its currency) could be the largest: unless another one
already breaches its cap, the finding is ``unknown``, naming what is missing, never ``ok``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rules import actions
from rules.checks.leveraged_etf import LeveragedEtfConfig, leveraged_factors
from rules.common import Book, RuleConfig, RuleSpec, absent, make, missing, not_applicable
from rules.model import (
    LEVEL_TOLERANCE,
    AccountSnapshot,
    ActionKind,
    EvaluationContext,
    Finding,
    Remedy,
    Severity,
    is_number,
)
from rules.text import money, pct
from rules.validation import fraction, positive, set_field, symbol_map


@dataclass(frozen=True)
class ConcentrationConfig(RuleConfig):
    """``concentration``: each holding's market value (absolute) as a share of NLV.

    Single stocks against ``stock_cap``, ETFs (stockType "ETF", or a known leveraged ETF)
    against ``etf_cap``; ``overrides`` sets a cap per symbol. ``etf_cap`` defaults to 50% so the
    seed's own SCHD 40 / VOO 40 / BND 20 portfolio does not warn unlevered, while one fund
    above half of NLV still does.
    """

    stock_cap: float = 0.20
    etf_cap: float = 0.50
    overrides: dict[str, float] = field(default_factory=dict)
    clear_margin: float = 0.01

    def __post_init__(self) -> None:
        positive("stock_cap", self.stock_cap)
        positive("etf_cap", self.etf_cap)
        fraction("clear_margin", self.clear_margin)
        set_field(self, "overrides", symbol_map("overrides", self.overrides, positive))
        for name, cap in (
            ("stock_cap", self.stock_cap),
            ("etf_cap", self.etf_cap),
            *((f"overrides.{s}", c) for s, c in self.overrides.items()),
        ):
            if cap <= self.clear_margin:
                raise ValueError(
                    f"{name} ({cap:g}) must be above clear_margin ({self.clear_margin:g})"
                )


def concentration(
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: ConcentrationConfig,
    *,
    leveraged: LeveragedEtfConfig | None = None,
    book: Book | None = None,
) -> Finding:
    """Each holding's absolute value as a share of NLV: single stocks against ``stock_cap``,
    ETFs (stockType ETF, or a leveraged ETF of the factor table) against ``etf_cap``,
    per-symbol overrides."""
    rule = "concentration"
    lacking = absent(snapshot, "net_liquidation")
    if lacking:
        return missing(rule, snapshot, lacking)
    nlv = snapshot.net_liquidation
    assert is_number(nlv)  # absent() vouched for it
    ccy = snapshot.base_currency
    positions = Book.of(snapshot) if book is None else book
    # Holdings above their clear level (cap less clear_margin): all must come down to clear.
    above_clear: list[tuple[str, float, float]] = []
    if not positions.quantities:
        return not_applicable(rule, snapshot, "No stock or ETF positions", value=0.0)
    factors = leveraged_factors(leveraged)
    rows: list[dict[str, Any]] = []
    breaches: list[tuple[str, float, float, float]] = []
    severity = clear = Severity.OK
    worst_row: dict[str, Any] | None = None
    worst_ratio = -math.inf
    largest: dict[str, Any] | None = None
    overrides, stock_cap, etf_cap = config.overrides, config.stock_cap, config.etf_cap
    margin = config.clear_margin
    etfs, unpriced = positions.etfs, positions.unpriced
    for symbol, value in positions.values.items():
        if symbol in unpriced:
            continue
        is_etf = symbol in etfs or symbol in factors
        cap = overrides.get(symbol)
        if cap is None:
            cap = etf_cap if is_etf else stock_cap
        share = abs(value) / nlv
        row = {
            "symbol": symbol,
            "value": value,
            "share": share,
            "cap": cap,
            "kind": "etf" if is_etf else "stock",
        }
        rows.append(row)
        ratio = share / cap
        if ratio > worst_ratio:
            worst_ratio, worst_row = ratio, row
        if largest is None or share > largest["share"]:
            largest = row
        if share > cap - margin + LEVEL_TOLERANCE:  # exceeds(), inlined: a loop over holdings
            clear = Severity.WARNING
            above_clear.append((symbol, value, cap))
            if share > cap:
                severity = Severity.WARNING
                breaches.append((symbol, value, share, cap))
    if worst_row is None or largest is None or (unpriced and not breaches):
        return missing(rule, snapshot, positions.lacking(unpriced))
    unpriced_text = f"; missing: {', '.join(positions.lacking(unpriced))}" if unpriced else ""
    details = {"positions": rows, "unpriced": list(unpriced)}
    if breaches:
        breaches.sort(key=lambda item: item[2] / item[3], reverse=True)
        listed = "; ".join(
            f"{symbol} is {pct(share)} of NLV (cap {pct(cap)})"
            for symbol, _, share, cap in breaches
        )
        message = f"Concentrated: {listed}{unpriced_text}"
        action, remedies = _trim(above_clear, nlv, margin, ccy)
        value, threshold = breaches[0][2], breaches[0][3]
    else:
        message = (
            f"Largest holding {largest['symbol']} is {pct(largest['share'])} of NLV "
            f"(caps: stocks {pct(config.stock_cap)}, ETFs {pct(config.etf_cap)}){unpriced_text}"
        )
        action, remedies = None, []
        value, threshold = worst_row["share"], worst_row["cap"]
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
    holdings: list[tuple[str, float, float]], nlv: float, margin: float, ccy: str
) -> tuple[str, list[Remedy]]:
    """Sell (or buy back) each holding above its clear level down to it, cap less ``margin``
    (a sale leaves NLV unchanged); or deposit what brings the largest ratio there."""
    holdings = sorted(holdings, key=lambda item: abs(item[1]) / item[2], reverse=True)
    trades = []
    for symbol, value, cap in holdings:
        kind: ActionKind = "sell" if value >= 0 else "buy_back"
        trades.append(
            actions.trade(
                kind, abs(value) - (cap - margin) * nlv, ccy, symbols=(symbol,), held=abs(value)
            )
        )
    steps = "; ".join(
        f"{'sell' if trade.kind == 'sell' else 'buy back'} about {money(trade.amount, ccy)} of "
        f"{trade.symbols[0]} (to {pct(cap - margin)} of NLV)"
        for trade, (_, _, cap) in zip(trades, holdings, strict=True)
        if trade.amount > 0
    )
    needed = max(abs(value) / (cap - margin) for _, value, cap in holdings) - nlv
    deposit = actions.deposit(needed, ccy)
    text = (
        f"{steps[0].upper()}{steps[1:]}, where the alert clears; or deposit about "
        f"{money(deposit.amount, ccy)} instead"
    )
    return text, [actions.remedy(*trades), actions.remedy(deposit)]


SPEC = RuleSpec(
    "concentration",
    concentration,
    ConcentrationConfig,
    "percent",
    "a holding's share of NLV (stocks vs ETFs, per-symbol overrides)",
    reads=("net_liquidation", "positions"),
    shares={"leveraged": "leveraged_etf"},
)
