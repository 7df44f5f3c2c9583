"""The ``leverage`` rule: gross leverage GPV / NLV against the envelope."""

from __future__ import annotations

from dataclasses import dataclass

from rules.common import RuleConfig, RuleSpec, absent, make, missing
from rules.model import (
    AccountSnapshot,
    EvaluationContext,
    Finding,
    Severity,
    grade_above,
    is_number,
)
from rules.text import money, times
from rules.validation import ordered_above, positive


@dataclass(frozen=True)
class LeverageConfig(RuleConfig):
    """``leverage``: gross leverage GPV / NLV (a multiple, 1.6 = 1.6x)."""

    warning: float | None = 1.6
    critical: float | None = 2.0
    clear_margin: float = 0.05

    def __post_init__(self) -> None:
        for name in ("warning", "critical"):
            value = getattr(self, name)
            if value is not None:
                positive(name, value)
        positive("clear_margin", self.clear_margin, allow_zero=True)
        ordered_above(self.warning, self.critical)


def leverage(
    snapshot: AccountSnapshot, context: EvaluationContext, config: LeverageConfig
) -> Finding:
    """Gross leverage GPV / NLV against the envelope (warning above 1.6x, critical above 2.0x)."""
    rule = "leverage"
    lacking = absent(snapshot, "net_liquidation", "gross_position_value")
    if lacking:
        return missing(rule, snapshot, lacking)
    nlv, gross = snapshot.net_liquidation, snapshot.gross_position_value
    assert is_number(nlv) and is_number(gross)  # absent() vouched for them
    value = gross / nlv
    severity, clear = grade_above(value, config.warning, config.critical, config.clear_margin)
    envelope = ", ".join(
        f"{label} above {times(level)}"
        for label, level in (("warning", config.warning), ("critical", config.critical))
        if level is not None
    )
    ccy = snapshot.base_currency
    if severity is Severity.OK:
        message = f"Gross leverage {times(value)} ({envelope})"
    else:
        level = config.critical if severity is Severity.CRITICAL else config.warning
        assert level is not None  # a level was breached
        shown = times(value) if times(value) != times(level) else f"{value:.5f}x"
        message = f"Gross leverage {shown} is above the {severity.value} level {times(level)}"
    action = None
    target = config.warning if config.warning is not None else config.critical
    if severity is not Severity.OK and target is not None:
        sale = gross - target * nlv
        action = (
            f"Reduce gross positions by about {money(sale, ccy)} (sell and repay the loan with "
            f"the proceeds) to bring leverage to {times(target)}"
        )
    threshold = config.critical if severity is Severity.CRITICAL else target
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
    )


SPEC = RuleSpec(
    "leverage",
    leverage,
    LeverageConfig,
    "multiple",
    "gross leverage GPV / NLV",
    reads=("net_liquidation", "gross_position_value"),
)
