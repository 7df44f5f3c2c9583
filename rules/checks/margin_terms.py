"""The ``margin_terms`` rule: IB raising its requirements on the book as held (seed 000: "if
margin terms tighten, trim levered exposure").

Between two of IB's account updates (the previous one comes from the context), the book's
maintenance rate MaintMarginReq / GPV rose by more than a few points while the holdings and
their prices stayed the same: IB changed its terms, not the market. The warning names the
jump, the cushion it cost, and the trim (or deposit) that gives the cushion back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rules import figures
from rules.common import RuleConfig, RuleSpec, make
from rules.model import (
    AccountSnapshot,
    EvaluationContext,
    Finding,
    Severity,
    grade_above,
    is_number,
)
from rules.text import money, pct
from rules.validation import fraction, ordered_above


@dataclass(frozen=True)
class MarginTermsConfig(RuleConfig):
    """``margin_terms``: MaintMarginReq / GPV up by more than ``warning_points`` (0.05 = 5
    points) between two of IB's updates, with the same holdings and every price within
    ``price_tolerance`` (2%) of the earlier update. ``critical_points`` optional;
    ``clear_margin`` in points."""

    warning_points: float | None = 0.05
    critical_points: float | None = None
    price_tolerance: float = 0.02
    clear_margin: float = 0.01

    def __post_init__(self) -> None:
        for name in ("warning_points", "critical_points"):
            value = getattr(self, name)
            if value is not None:
                fraction(name, value, allow_zero=False)
        fraction("price_tolerance", self.price_tolerance)
        fraction("clear_margin", self.clear_margin)
        ordered_above(self.warning_points, self.critical_points)


def _held(snapshot: AccountSnapshot, message: str, **details: Any) -> Finding:
    """Nothing to judge (no comparable earlier update): ok, but holding any alert as it is."""
    finding = make("margin_terms", snapshot, Severity.OK, None, None, message, details=details)
    return replace(finding, data_missing=True)


def _rate(snapshot: AccountSnapshot) -> float | None:
    """The book's maintenance rate MaintMarginReq / GPV (``None`` without a book)."""
    return snapshot.maintenance_rate


#: con_id -> (quantity, value of one unit in its own currency or ``None``).
_Units = dict[int, tuple[float, float | None]]


def _unit_values(snapshot: AccountSnapshot) -> _Units:
    """con_id -> (quantity, value of one unit in its own currency, ``None`` when unpriced)."""
    units: _Units = {}
    for p in snapshot.positions:
        size = p.quantity * (p.multiplier or 1.0)
        value = p.market_value
        unit = value / size if is_number(value) and size else None
        units[p.con_id] = (p.quantity, unit)
    return units


def same_holdings(before: AccountSnapshot, after: AccountSnapshot) -> bool:
    """True when both snapshots hold the same contracts in the same quantities (no trade)."""
    return _same(_unit_values(before), _unit_values(after))


def _same(old: _Units, new: _Units) -> bool:
    return old.keys() == new.keys() and all(new[k][0] == old[k][0] for k in new)


def largest_price_move(before: AccountSnapshot, after: AccountSnapshot) -> float | None:
    """The largest relative price change of a holding between two snapshots of the same
    holdings; ``None`` when the holdings differ or a price is missing."""
    return _largest_move(_unit_values(before), _unit_values(after))


def _largest_move(old: _Units, new: _Units) -> float | None:
    """:func:`largest_price_move` on the snapshots' unit values (each read once: an
    evaluation of a 200-position book spent most of this rule reading them four times)."""
    if not _same(old, new):
        return None
    largest = 0.0
    for con_id, (_, unit) in new.items():
        unit_before = old[con_id][1]
        if unit is None or unit_before is None:
            return None
        if unit_before:
            largest = max(largest, abs(unit / unit_before - 1.0))
    return largest


def margin_terms(
    snapshot: AccountSnapshot, context: EvaluationContext, config: MarginTermsConfig
) -> Finding:
    """MaintMarginReq / GPV against IB's previous update: up by more than 5 points with the
    same holdings at the same prices is IB tightening its terms (a warning), named with the
    cushion it cost and the trim that restores it."""
    previous = context.previous_snapshot
    if previous is None:
        return _held(snapshot, "No earlier IB update to compare with yet (IB updates every 3 min)")
    before, now = _rate(previous), _rate(snapshot)
    if before is None or now is None:
        return _held(snapshot, "Not compared: MaintMarginReq or GrossPositionValue missing")
    old, new = _unit_values(previous), _unit_values(snapshot)
    if not _same(old, new):
        return _held(
            snapshot,
            f"Not compared: the holdings changed since IB's previous update (maintenance "
            f"{pct(before)} then, {pct(now)} now, a different book)",
        )
    move = _largest_move(old, new)
    if move is None:
        return _held(snapshot, "Not compared: a holding had no price at one of the two updates")
    if move > config.price_tolerance:
        return _held(
            snapshot,
            f"Not compared: prices moved up to {pct(move)} since IB's previous update (more "
            f"than {pct(config.price_tolerance)}; maintenance {pct(before)} then, {pct(now)} now)",
            price_move=move,
        )
    jump = now - before
    severity, clear = grade_above(
        jump, config.warning_points, config.critical_points, config.clear_margin
    )
    ccy = snapshot.base_currency
    points = f"{jump * 100:+.1f} points"
    details: dict[str, Any] = {
        "previous_rate": before,
        "rate": now,
        "jump": jump,
        "price_move": move,
        "previous_as_of": previous.as_of.isoformat(),
    }
    if severity is Severity.OK:
        message = (
            f"Margin terms steady: maintenance {pct(now)} of GPV ({pct(before)} at IB's previous "
            f"update, {points})"
        )
        return make("margin_terms", snapshot, severity, jump, config.warning_points, message,
                    clear=clear, details=details)  # fmt: skip
    cost = _cushion_cost(previous, snapshot)
    details.update(cost)
    message = (
        f"IB raised its margin terms: maintenance {pct(before)} -> {pct(now)} of GPV "
        f"({points}) between its updates, with the same holdings and prices within "
        f"{pct(config.price_tolerance)}"
    )
    if cost:
        message += (
            f"; it cost {money(cost['excess_liquidity_cost'], ccy)} of ExcessLiquidity, the "
            f"cushion fell from {pct(cost['cushion_before'])} to {pct(cost['cushion_after'])}"
        )
    action, trim = _trim(snapshot, cost, now, ccy)
    details.update(trim)
    threshold = (
        config.critical_points
        if severity is Severity.CRITICAL and config.critical_points is not None
        else config.warning_points
    )
    return make("margin_terms", snapshot, severity, jump, threshold, message, action=action,
                clear=clear, details=details)  # fmt: skip


def _cushion_cost(previous: AccountSnapshot, snapshot: AccountSnapshot) -> dict[str, float]:
    """ExcessLiquidity and cushion before and after (empty when a figure is missing)."""
    figures_needed = (
        previous.excess_liquidity,
        previous.net_liquidation,
        snapshot.excess_liquidity,
        snapshot.net_liquidation,
    )
    el_before, nlv_before, el_now, nlv_now = figures_needed
    if not all(is_number(v) for v in figures_needed):
        return {}
    assert is_number(el_before) and is_number(nlv_before)
    assert is_number(el_now) and is_number(nlv_now)
    if nlv_before <= 0 or nlv_now <= 0:
        return {}
    return {
        "excess_liquidity_cost": el_before - el_now,
        "cushion_before": el_before / nlv_before,
        "cushion_after": el_now / nlv_now,
    }


def _trim(
    snapshot: AccountSnapshot, cost: dict[str, float], rate: float, ccy: str
) -> tuple[str, dict[str, float]]:
    """The trim that gives back the cushion held before the change, sized at the lowest
    maintenance rate a holding can have (25%, Reg T long stock) so it suffices whatever is
    sold, with the figure at the book's new average rate beside it, and the deposit."""
    if not cost:
        return ("Trim levered exposure: IB now asks more margin for the same book", {})
    nlv, excess = snapshot.net_liquidation, snapshot.excess_liquidity
    assert is_number(nlv) and is_number(excess)  # _cushion_cost vouched for them
    target = cost["cushion_before"]
    shortfall = target * nlv - excess
    if shortfall <= 0:
        return (
            f"No trim needed to keep the {pct(target)} cushion; review the levered exposure",
            {},
        )
    lowest = figures.MAINTENANCE_LONG_BASE
    sale = figures.restoring_sale(nlv, excess, target, lowest)
    at_average = figures.restoring_sale(nlv, excess, target, rate) if rate > 0 else sale
    deposit = figures.restoring_deposit(nlv, excess, target)
    gross = snapshot.gross_position_value if is_number(snapshot.gross_position_value) else None
    trim = {"trim": sale, "trim_at_average_rate": at_average, "deposit": deposit}
    if gross is not None and sale > gross:
        return (
            f"Deposit about {money(deposit, ccy)} to restore the {pct(target)} cushion (no "
            f"sale of the {money(gross, ccy)} held would)",
            trim,
        )
    return (
        f"Trim about {money(sale, ccy)} of positions to restore the {pct(target)} cushion held "
        f"before the change (enough whatever is sold, at the lowest {pct(lowest)} rate; about "
        f"{money(at_average, ccy)} at the book's new {pct(rate)} average), or deposit about "
        f"{money(deposit, ccy)}",
        trim,
    )


SPEC = RuleSpec(
    "margin_terms",
    margin_terms,
    MarginTermsConfig,
    "percent",
    "IB raising MaintMarginReq / GPV between its updates, prices unchanged; the trim that "
    "restores the cushion",
    # positions too, but per holding (not the Book's per-symbol sums the engine passes)
    reads=("maint_margin_req", "gross_position_value", "excess_liquidity"),
)
