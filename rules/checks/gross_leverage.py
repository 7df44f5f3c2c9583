"""The ``gross_leverage`` rule: GrossPositionValue / NLV (IB's Leverage-S) against its own cap.

It is reported beside the net envelope of ``leverage``: a hedged book can sit inside the net
envelope while its gross exposure, which the requirement follows, is far beyond it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rules.checks.leverage import Cut, breach_text, cut_exposure, envelope_text, unbounded
from rules.common import (
    MIN_EQUITY,
    Book,
    Exposure,
    RuleConfig,
    RuleSpec,
    absent,
    exposure_of,
    make,
    missing,
    reducing_kind,
)
from rules.model import (
    AccountSnapshot,
    EvaluationContext,
    Finding,
    Remedy,
    Severity,
    grade_above,
    is_number,
)
from rules.text import money, times
from rules.validation import upper_levels


@dataclass(frozen=True)
class GrossLeverageConfig(RuleConfig):
    """``gross_leverage``: GPV / NLV (a multiple); by default critical above 2.0x only."""

    warning: float | None = None
    critical: float | None = 2.0
    clear_margin: float = 0.05

    def __post_init__(self) -> None:
        upper_levels(self.warning, self.critical, self.clear_margin)


def gross_leverage(
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: GrossLeverageConfig,
    *,
    book: Book | None = None,
) -> Finding:
    """Gross leverage GPV / NLV against its cap (critical above 2.0x). The action sells longs
    or buys back shorts (gross falls by the amount either way, NLV does not move) down to the
    clear level, or deposits what brings the ratio there."""
    rule = "gross_leverage"
    lacking = absent(snapshot, "net_liquidation", "gross_position_value", positive_equity=False)
    if lacking:
        return missing(rule, snapshot, lacking)
    nlv, gross = snapshot.net_liquidation, snapshot.gross_position_value
    assert is_number(nlv) and is_number(gross)
    ccy = snapshot.base_currency
    target_level = config.warning if config.warning is not None else config.critical
    target = target_level - config.clear_margin if target_level is not None else None
    value: float | None = None
    if gross < MIN_EQUITY:
        value = 0.0 if nlv >= MIN_EQUITY else None
        severity = clear = Severity.OK
        message = "No positions: gross leverage 0x"
    elif nlv < MIN_EQUITY:
        severity, message = unbounded(
            snapshot, f"Gross positions {money(gross, ccy)}", nlv, config.critical
        )
        clear = severity
    else:
        value = gross / nlv
        severity, clear = grade_above(value, config.warning, config.critical, config.clear_margin)
        if severity is Severity.OK:
            message = (
                f"Gross leverage {times(value)} ({envelope_text(config.warning, config.critical)})"
            )
        else:
            level = config.critical if severity is Severity.CRITICAL else config.warning
            assert level is not None  # a level was breached
            message = breach_text("Gross leverage", value, severity, level)
    action = None
    remedies: list[Remedy] = []
    if severity is not Severity.OK and target is not None:
        positions = Book.of(snapshot) if book is None else book
        exposure = exposure_of(snapshot, positions) or Exposure(gross, 0.0)
        action, remedies = cut_exposure(
            snapshot,
            Cut(reducing_kind(exposure), gross, gross, target, "gross leverage"),
        )
    threshold = config.critical if severity is Severity.CRITICAL else target_level
    return make(
        rule,
        snapshot,
        severity,
        value,
        threshold,
        message,
        action=action,
        clear=clear,
        details={"gross_position_value": gross, "net_liquidation": nlv},
        remedies=remedies,
    )


SPEC = RuleSpec(
    "gross_leverage",
    gross_leverage,
    GrossLeverageConfig,
    "multiple",
    "gross leverage GPV / NLV",
    reads=("net_liquidation", "gross_position_value", "positions"),
)
