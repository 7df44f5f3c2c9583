"""The ``look_ahead`` rule: LookAheadExcessLiquidity and the look-ahead cushion."""

from __future__ import annotations

from dataclasses import dataclass

from rules.checks.cushion import CushionConfig, Restore, restore_action
from rules.clock import local_time
from rules.common import Book, RuleConfig, RuleSpec, absent, make, missing
from rules.model import (
    AccountSnapshot,
    EvaluationContext,
    Finding,
    Remedy,
    Severity,
    falls_short,
    grade_below,
    is_number,
)
from rules.rates import FactorSettings, PortfolioMarginSettings, lowest_rates
from rules.text import money, pct
from rules.validation import fraction, timezone_name


@dataclass(frozen=True)
class LookAheadConfig(RuleConfig):
    """``look_ahead``: LookAheadExcessLiquidity < 0 is critical; a look-ahead cushion below
    ``warning`` (default: the cushion rule's warning level) is a warning. ``timezone`` is used
    to name when the look-ahead margin takes effect.
    """

    warning: float | None = None
    timezone: str = "America/New_York"
    clear_margin: float = 0.02

    def __post_init__(self) -> None:
        if self.warning is not None:
            fraction("warning", self.warning)
        fraction("clear_margin", self.clear_margin)
        timezone_name("timezone", self.timezone)


def look_ahead(
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: LookAheadConfig,
    *,
    cushion: CushionConfig | None = None,
    leveraged: FactorSettings | None = None,
    portfolio_margin: PortfolioMarginSettings | None = None,
    book: Book | None = None,
) -> Finding:
    """LookAheadExcessLiquidity < 0 is critical, naming when it takes effect; a look-ahead
    cushion (LookAheadExcessLiquidity / NLV) below the warning level is a warning.

    The action restores the warning level plus ``clear_margin`` on the look-ahead figures, by
    a sale at the lowest rate a holding can have or by a deposit."""
    rule = "look_ahead"
    ahead = snapshot.look_ahead_excess_liquidity
    lacking = absent(snapshot, "net_liquidation", "look_ahead_excess_liquidity")
    # A known look-ahead deficit is critical whatever NLV is (only its cushion needs NLV > 0).
    deficit_only = (
        is_number(ahead)
        and falls_short(ahead, 0.0)
        and lacking == absent(snapshot, "net_liquidation")
    )
    if lacking and not deficit_only:
        return missing(rule, snapshot, lacking)
    assert is_number(ahead)
    nlv = snapshot.net_liquidation if is_number(snapshot.net_liquidation) else None
    warning = config.warning
    if warning is None:
        warning = (cushion or CushionConfig()).warning
    value: float | None = None
    if deficit_only:
        severity = clear = Severity.CRITICAL
        adds_nothing = False
    else:
        assert nlv is not None
        value = ahead / nlv
        severity, clear = grade_below(value, warning, 0.0, config.clear_margin)
        current = snapshot.excess_liquidity
        # A look-ahead cushion no lower than today's adds nothing the cushion rule does not say.
        adds_nothing = is_number(current) and ahead >= current - 0.005 * abs(nlv)
    if adds_nothing and severity is Severity.WARNING:
        severity = Severity.OK
    if adds_nothing and clear is Severity.WARNING:
        clear = Severity.OK
    change = snapshot.look_ahead_next_change
    when = (
        f"at {local_time(change, config.timezone)}"
        if change is not None
        else "at the next margin change (time not reported)"
    )
    ccy = snapshot.base_currency
    details = {
        "look_ahead_excess_liquidity": ahead,
        "look_ahead_cushion": value,
        "look_ahead_next_change": change.isoformat() if change is not None else None,
    }
    if severity is Severity.CRITICAL:
        message = (
            f"Look-ahead deficit: LookAheadExcessLiquidity will be {money(ahead, ccy)} {when}; "
            "positions will be liquidated then unless it is covered"
        )
    elif severity is Severity.WARNING and value is not None:
        message = (
            f"Look-ahead cushion {pct(value)} {when} is below the warning level {pct(warning)}"
        )
    elif adds_nothing and value is not None and value < warning:
        message = (
            f"Look-ahead cushion {pct(value)} {when} is no lower than today's "
            "(the cushion rule covers it)"
        )
    else:
        message = f"Look-ahead cushion {pct(value or 0.0)} {when} (warning below {pct(warning)})"
    action = None
    remedies: list[Remedy] = []
    if severity is not Severity.OK:
        average = None
        gross = snapshot.gross_position_value
        if is_number(snapshot.look_ahead_maint_margin_req) and is_number(gross) and gross > 0:
            average = snapshot.look_ahead_maint_margin_req / gross
        before = when.removeprefix("at ") if change is not None else "the next margin change"
        target = warning + config.clear_margin
        positions = Book.of(snapshot) if book is None else book
        rates = lowest_rates(
            snapshot, positions, leveraged=leveraged, portfolio_margin=portfolio_margin
        )
        action, remedies = restore_action(
            snapshot,
            nlv,
            ahead,
            Restore(target),
            rates,
            average_rate=average,
            purpose=(
                f"keep a {pct(target)} cushion when the look-ahead margin takes effect (where "
                "the alert clears)"
            ),
            before=before,
        )
    threshold = 0.0 if severity is Severity.CRITICAL else warning
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


SPEC = RuleSpec(
    "look_ahead",
    look_ahead,
    LookAheadConfig,
    "percent",
    "LookAheadExcessLiquidity and the look-ahead cushion",
    reads=(
        "net_liquidation",
        "excess_liquidity",
        "look_ahead_excess_liquidity",
        "look_ahead_maint_margin_req",
        "look_ahead_next_change",
        "gross_position_value",
        "positions",
    ),
    shares={
        "cushion": "cushion",
        "leveraged": "leveraged_etf",
        "portfolio_margin": "pm_equity_floor",
    },
)
