"""The ``cushion`` rule: ExcessLiquidity / NLV against two levels, IBKR's own warning line
and EL < 0; its action restores the warning level by a sale or a deposit.
"""

from __future__ import annotations

from dataclasses import dataclass

from rules import figures
from rules.common import RuleConfig, RuleSpec, absent, make, missing
from rules.model import (
    AccountSnapshot,
    EvaluationContext,
    Finding,
    Severity,
    grade_below,
    is_number,
)
from rules.text import money, pct
from rules.validation import fraction, ordered_below


@dataclass(frozen=True)
class CushionConfig(RuleConfig):
    """``cushion``: EL / NLV against two levels, IBKR's own warning line, and EL < 0.

    ``ib_warning_line`` is IBKR's line as a fraction of MaintMarginReq (EL <= 10% of maintenance
    is critical). The action restores the ``warning`` level.
    """

    warning: float = 0.20
    critical: float = 0.10
    ib_warning_line: float = 0.10
    clear_margin: float = 0.02

    def __post_init__(self) -> None:
        fraction("warning", self.warning)
        fraction("critical", self.critical)
        fraction("ib_warning_line", self.ib_warning_line)
        fraction("clear_margin", self.clear_margin)
        ordered_below(self.warning, self.critical)


def restore_action(
    snapshot: AccountSnapshot,
    nlv: float,
    excess: float,
    target: float,
    rate: float | None,
    *,
    goal: str = "",
    extra_sale: float = 0.0,
    extra_deposit: float = 0.0,
    before: str = "",
) -> str:
    """The action text: sell about X of positions or deposit about Y to restore a c* cushion."""
    ccy = snapshot.base_currency
    goal = goal or f"restore a {pct(target)} cushion"
    deposit = max(figures.restoring_deposit(nlv, excess, target), extra_deposit)
    gross = snapshot.gross_position_value if is_number(snapshot.gross_position_value) else None
    if rate is None or rate <= 0:
        text = f"deposit about {money(deposit, ccy)} to {goal}"
    else:
        sale = max(figures.restoring_sale(nlv, excess, target, rate), extra_sale)
        if gross is not None and sale >= gross:
            text = (
                f"deposit about {money(deposit, ccy)} to {goal}: selling positions alone cannot "
                f"(it would take {money(sale, ccy)}, more than the {money(gross, ccy)} held)"
            )
        else:
            text = (
                f"sell about {money(sale, ccy)} of positions (at {pct(rate)} maintenance) or "
                f"deposit about {money(deposit, ccy)} to {goal}"
            )
    if before:
        return f"Before {before}, {text}"
    return text[0].upper() + text[1:]


def cushion(
    snapshot: AccountSnapshot, context: EvaluationContext, config: CushionConfig
) -> Finding:
    """Cushion EL / NLV against the warning and critical levels, IBKR's warning line
    (EL <= 10% of maintenance) and EL < 0 (IBKR liquidates in real time).

    The action is the sale S = (c* x NLV - EL) / m that restores the warning level (and lifts EL
    above IBKR's line), with m = MaintMarginReq / GPV, or the deposit that does the same.
    """
    rule = "cushion"
    lacking = absent(snapshot, "net_liquidation")
    nlv = snapshot.net_liquidation
    excess: float | None = (
        snapshot.excess_liquidity if is_number(snapshot.excess_liquidity) else None
    )
    value: float | None = snapshot.cushion if is_number(snapshot.cushion) else None
    if not lacking and is_number(nlv):
        if value is None and excess is not None:
            value = excess / nlv
        if excess is None and value is not None:
            excess = value * nlv
        if value is None:
            lacking = ["ExcessLiquidity", "Cushion"]
    if lacking:
        return missing(rule, snapshot, lacking)
    assert nlv is not None and excess is not None and value is not None
    ccy = snapshot.base_currency
    severity, clear = grade_below(value, config.warning, config.critical, config.clear_margin)
    reasons: list[str] = []
    maint = snapshot.maint_margin_req if is_number(snapshot.maint_margin_req) else None
    line_sale = line_deposit = 0.0
    details: dict[str, object] = {
        "cushion": value,
        "excess_liquidity": excess,
        "net_liquidation": nlv,
        "maint_margin_req": maint,
        "maintenance_rate": snapshot.maintenance_rate,
    }
    if excess < 0:
        severity = clear = Severity.CRITICAL
        reasons.append(
            f"LIQUIDATING: ExcessLiquidity is {money(excess, ccy)}, below 0: IBKR liquidates "
            "positions in real time, without a margin call"
        )
    if maint is not None and maint > 0:
        line = config.ib_warning_line * maint
        details["ib_warning_line"] = line
        if excess <= line:
            severity = Severity.CRITICAL
            if excess >= 0:
                reasons.append(
                    f"ExcessLiquidity {money(excess, ccy)} is at or below IBKR's warning line "
                    f"({pct(config.ib_warning_line)} of maintenance {money(maint, ccy)} = "
                    f"{money(line, ccy)})"
                )
        if excess <= (config.ib_warning_line + config.clear_margin) * maint:
            clear = Severity.CRITICAL
        rate = snapshot.maintenance_rate
        if excess <= line and rate:
            k = config.ib_warning_line
            line_sale = (k * maint - excess) / (rate * (1 + k))
            line_deposit = k * maint - excess
    levels = f"warning below {pct(config.warning)}, critical below {pct(config.critical)}"
    if value < config.critical:
        reasons.append(f"cushion {pct(value)} is below the critical level {pct(config.critical)}")
    elif value < config.warning:
        reasons.append(f"cushion {pct(value)} is below the warning level {pct(config.warning)}")
    elif reasons:
        reasons.append(f"cushion {pct(value)}")
    if reasons:
        message = "; ".join(reasons)
        message = message[0].upper() + message[1:]
    else:
        message = f"Cushion {pct(value)} ({levels})"
    action = None
    if severity is not Severity.OK:
        action = restore_action(
            snapshot,
            nlv,
            excess,
            config.warning,
            snapshot.maintenance_rate,
            extra_sale=line_sale,
            extra_deposit=line_deposit,
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
    )


SPEC = RuleSpec(
    "cushion",
    cushion,
    CushionConfig,
    "percent",
    "ExcessLiquidity / NLV; IBKR's warning line; EL < 0",
    reads=("net_liquidation", "excess_liquidity", "cushion", "maint_margin_req"),
)
