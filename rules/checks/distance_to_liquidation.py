"""The ``distance_to_liquidation`` rule: the uniform fall that empties ExcessLiquidity."""

from __future__ import annotations

from dataclasses import dataclass

from rules import figures
from rules.common import (
    MIN_EQUITY,
    Book,
    RuleConfig,
    RuleSpec,
    absent,
    make,
    missing,
    not_applicable,
)
from rules.model import (
    AccountSnapshot,
    EvaluationContext,
    Finding,
    Severity,
    grade_below,
    is_number,
)
from rules.text import money, pct
from rules.validation import fraction, ordered_below, set_field


@dataclass(frozen=True)
class DistanceToLiquidationConfig(RuleConfig):
    """``distance_to_liquidation``: d* = EL / ((1 - m) x GPV), the uniform fall that empties EL.

    ``falls`` are the what-if falls whose resulting cushion is reported.
    """

    warning: float = 0.15
    critical: float = 0.08
    falls: tuple[float, ...] = (0.10, 0.12, 0.20)
    clear_margin: float = 0.02

    def __post_init__(self) -> None:
        fraction("warning", self.warning)
        fraction("critical", self.critical)
        fraction("clear_margin", self.clear_margin)
        ordered_below(self.warning, self.critical)
        falls = tuple(fraction("falls", fall, allow_zero=False) for fall in self.falls)
        set_field(self, "falls", falls)


def distance_to_liquidation(
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: DistanceToLiquidationConfig,
    *,
    book: Book | None = None,
) -> Finding:
    """The uniform fall d* = EL / ((1 - m) x GPV) that empties ExcessLiquidity, with the cushion
    after each configured fall (EL' = EL - (1 - m) d GPV, NLV' = NLV - d x long value)."""
    rule = "distance_to_liquidation"
    lacking = absent(
        snapshot, "net_liquidation", "excess_liquidity", "gross_position_value", "maint_margin_req"
    )
    if lacking:
        return missing(rule, snapshot, lacking)
    nlv, excess = snapshot.net_liquidation, snapshot.excess_liquidity
    gross = snapshot.gross_position_value
    assert is_number(nlv) and is_number(excess) and is_number(gross)  # absent() vouched for them
    ccy = snapshot.base_currency
    if gross < MIN_EQUITY:
        return not_applicable(rule, snapshot, "No positions: no fall can liquidate the account")
    rate = snapshot.maintenance_rate
    assert rate is not None  # GPV is positive and MaintMarginReq a number
    distance = figures.distance_to_liquidation(excess, gross, rate)
    if distance is None:
        return not_applicable(
            rule,
            snapshot,
            f"Maintenance is {pct(rate)} of positions: a uniform fall cannot empty ExcessLiquidity",
        )
    positions = Book.of(snapshot) if book is None else book
    long_value = positions.long_value if snapshot.positions and positions.all_priced else gross
    falls = {
        f"-{pct(fall)}": figures.cushion_after_fall(nlv, excess, gross, rate, fall, long_value)
        for fall in config.falls
    }
    severity, clear = grade_below(distance, config.warning, config.critical, config.clear_margin)
    after = ", ".join(
        f"{label}: {pct(value) if value is not None else 'equity gone'}"
        for label, value in falls.items()
    )
    if distance < 0:
        message = (
            f"ExcessLiquidity is already negative ({money(excess, ccy)}): liquidation is under way"
        )
    else:
        message = f"A uniform fall of {pct(distance)} would bring ExcessLiquidity to 0"
        if severity is not Severity.OK:
            level = config.critical if severity is Severity.CRITICAL else config.warning
            message += f", under the {severity.value} level {pct(level)}"
    message += f" (m = {pct(rate)}); cushion after {after}"
    action = None
    if severity is not Severity.OK:
        sale = figures.sale_for_distance(excess, gross, rate, config.warning)
        action = (
            f"Sell about {money(sale, ccy)} of positions (at {pct(rate)} maintenance) so the "
            f"account withstands a {pct(config.warning)} fall"
        )
    threshold = config.critical if severity is Severity.CRITICAL else config.warning
    details = {
        "distance": distance,
        "maintenance_rate": rate,
        "long_value": long_value,
        "cushion_after_falls": falls,
    }
    return make(
        rule,
        snapshot,
        severity,
        distance,
        threshold,
        message,
        action=action,
        clear=clear,
        details=details,
    )


SPEC = RuleSpec(
    "distance_to_liquidation",
    distance_to_liquidation,
    DistanceToLiquidationConfig,
    "percent",
    "the uniform move that empties ExcessLiquidity",
    reads=(
        "net_liquidation",
        "excess_liquidity",
        "gross_position_value",
        "maint_margin_req",
        "positions",
    ),
)
