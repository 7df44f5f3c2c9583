"""The ``leveraged_etf`` rule: the leveraged/inverse ETF sleeve, and the cushion that would
remain if their Reg T requirement applied now. The built-in table of leverage factors is in
:mod:`rules.rates`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rules import actions, figures
from rules.checks.cushion import CushionConfig
from rules.clock import session_window
from rules.common import (
    TRADE_WORDS,
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
    ActionKind,
    EvaluationContext,
    Finding,
    Remedy,
    Severity,
    grade_above,
    grade_below,
    is_number,
    worst,
)
from rules.rates import is_leveraged, merged_factors
from rules.text import money, names, pct
from rules.validation import finite, fraction, set_field, symbol_map, window_fields


@dataclass(frozen=True)
class LeveragedEtfConfig(RuleConfig):
    """``leveraged_etf``: leveraged and inverse ETFs.

    The sleeve (their absolute value over NLV) against ``sleeve_cap``; each one's Reg T
    requirement Min(``reg_t_base`` x |factor|, 100%); the cushion that would remain if those
    requirements applied now, graded against the cushion rule's critical level (or
    ``projected_critical``): below it is critical inside the window (``window_start``-
    ``window_end`` in ``timezone`` on the exchange's trading days, moved before an early
    close; weekdays when the calendar is unknown), a warning outside it. The action aims at
    the cushion rule's warning level. ``factors`` adds to or overrides the built-in table
    (0 removes a symbol).
    """

    sleeve_cap: float = 0.10
    factors: dict[str, float] = field(default_factory=dict)
    reg_t_base: float = 0.50
    projected_critical: float | None = None
    window_start: str = "15:30"
    window_end: str = "16:00"
    timezone: str = "America/New_York"
    clear_margin: float = 0.01

    def __post_init__(self) -> None:
        fraction("sleeve_cap", self.sleeve_cap)
        fraction("reg_t_base", self.reg_t_base, allow_zero=False)
        fraction("clear_margin", self.clear_margin)
        if self.projected_critical is not None:
            fraction("projected_critical", self.projected_critical)
        window_fields(self)

        def factor(name: str, value: Any) -> float:
            number = finite(name, value)
            if abs(number) > 10:
                raise ValueError(f"{name} must be a leverage factor such as 3 or -2, got {value!r}")
            return number

        set_field(self, "factors", symbol_map("factors", self.factors, factor))


def leveraged_factors(config: LeveragedEtfConfig | None = None) -> dict[str, float]:
    """The built-in factor table (:data:`rules.rates.BUILTIN_LEVERAGE_FACTORS`) with the
    configured ``factors`` merged over it (0 removes)."""
    return merged_factors(config.factors if config is not None else None)


def leveraged_etf(
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: LeveragedEtfConfig,
    *,
    cushion: CushionConfig | None = None,
    book: Book | None = None,
) -> Finding:
    """Leveraged and inverse ETFs: the sleeve's share of NLV, each one's Reg T requirement
    Min(50% x |factor|, 100%), and the cushion if those requirements applied now.

    Projected EL = EL - sum(|value| x max(0, requirement - current rate)), where the current rate
    is IB's maintenance for the fund, Min(25% x |factor|, 100%) long or Min(30% x |factor|, 100%)
    short (already inside MaintMarginReq). A projected cushion below the cushion rule's critical
    level is critical inside the pre-close window (15:30-16:00 ET on trading days, 30 minutes
    before an early close, none on holidays), a warning outside.
    """
    rule = "leveraged_etf"
    levels = cushion or CushionConfig()
    lacking = absent(snapshot, "net_liquidation")
    if lacking:
        return missing(rule, snapshot, lacking)
    nlv = snapshot.net_liquidation
    assert is_number(nlv)  # absent() vouched for it
    factors = leveraged_factors(config)
    positions = Book.of(snapshot) if book is None else book
    quantities = positions.quantities
    held = [
        (symbol, factor)
        for symbol, factor in factors.items()
        if symbol in quantities and is_leveraged(factor)
    ]
    if not held:
        unlevered = [s for s, f in factors.items() if s in quantities and not is_leveraged(f)]
        note = (
            f" ({names(unlevered)}: a factor of 1 or less in size is not leveraged)"
            if unlevered
            else ""
        )
        return not_applicable(
            rule,
            snapshot,
            f"No leveraged ETFs held{note}",
            value=0.0,
            threshold=config.sleeve_cap,
            details={"sleeve_share": 0.0},
        )
    unpriced = [symbol for symbol, _ in held if symbol in positions.unpriced]
    lacking = absent(snapshot, "excess_liquidity")
    if unpriced:
        lacking.extend(positions.lacking(unpriced))
    if lacking:
        return missing(rule, snapshot, lacking)
    excess = snapshot.excess_liquidity
    assert is_number(excess)  # absent() vouched for it
    rows: list[dict[str, Any]] = []
    sleeve = increase = required = 0.0
    for symbol, factor in held:
        value = positions.values.get(symbol, 0.0)
        size = abs(value)
        requirement = figures.leveraged_requirement(factor, config.reg_t_base)
        current = figures.leveraged_maintenance(factor, long=value >= 0)
        extra = size * max(0.0, requirement - current)
        sleeve += size
        increase += extra
        required += size * requirement
        rows.append(
            {
                "symbol": symbol,
                "factor": factor,
                "value": value,
                "share": size / nlv,
                "requirement": requirement,
                "current_rate": current,
                "increase": extra,
            }
        )
    share = sleeve / nlv
    projected_el = excess - increase
    projected = projected_el / nlv
    critical_level = (
        config.projected_critical if config.projected_critical is not None else levels.critical
    )
    today = session_window(
        context.now, config.window_start, config.window_end, config.timezone, context.trading_day
    )
    window = today.inside
    sleeve_sev, sleeve_clear = grade_above(share, config.sleeve_cap, None, config.clear_margin)
    proj_sev, proj_clear = grade_below(projected, None, critical_level, config.clear_margin)
    if not window:
        proj_sev = Severity.WARNING if proj_sev is Severity.CRITICAL else proj_sev
        proj_clear = Severity.WARNING if proj_clear is Severity.CRITICAL else proj_clear
    severity = worst((sleeve_sev, proj_sev))
    clear = worst((sleeve_clear, proj_clear))
    symbols = names(row["symbol"] for row in rows)
    span = today.text
    summary = (
        f"leveraged ETFs ({symbols}) are {pct(share)} of NLV; at their Reg T requirement the "
        f"cushion would be {pct(projected)}"
    )
    parts = []
    if sleeve_sev is not Severity.OK:
        parts.append(f"the sleeve is above its {pct(config.sleeve_cap)} cap")
    if proj_sev is not Severity.OK:
        where = "inside" if window else "outside"
        parts.append(
            f"the projected cushion is below the critical level {pct(critical_level)} "
            + (f"({where} the {span} rebalancing window)" if today.exists else f"({span})")
        )
    action = None
    remedies: list[Remedy] = []
    if severity is not Severity.OK:
        action, remedies = _trim(
            snapshot,
            rows,
            Trim(
                sleeve_cap=config.sleeve_cap - config.clear_margin if sleeve_clear.rank else None,
                cushion=(
                    max(levels.warning, critical_level + config.clear_margin)
                    if proj_clear.rank
                    else None
                ),
                projected_excess=projected_el,
                when=(
                    ""
                    if not proj_clear.rank
                    else "Now"
                    if window
                    else f"Before {today.starts}"
                ),
            ),
        )
    message = summary[0].upper() + summary[1:]
    if parts:
        message += ": " + "; ".join(parts)
    if proj_sev.rank >= sleeve_sev.rank and proj_sev is not Severity.OK:
        value, threshold = projected, critical_level
    else:
        value, threshold = share, config.sleeve_cap
    details = {
        "sleeve_share": share,
        "projected_excess_liquidity": projected_el,
        "projected_cushion": projected,
        "requirement_increase": increase,
        "in_window": window,
        "positions": rows,
    }
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


@dataclass(frozen=True, slots=True)
class Trim:
    """What a cut of the leveraged sleeve must reach: the sleeve at most ``sleeve_cap`` of NLV
    and the projected cushion at least ``cushion`` (``None``: that part is fine), by ``when``
    (empty when only the sleeve is concerned: it has no deadline)."""

    sleeve_cap: float | None
    cushion: float | None
    projected_excess: float
    when: str = ""


def _trim(
    snapshot: AccountSnapshot, rows: list[dict[str, Any]], goal: Trim
) -> tuple[str, list[Remedy]]:
    """Sell (or buy back) leveraged ETFs, sized at the lowest Reg T requirement among those
    held (each dollar cut frees its fund's requirement from the projection, so the cut
    suffices whichever fund is sold), or deposit; sell them all and deposit the rest when
    selling alone cannot."""
    nlv = snapshot.net_liquidation
    assert is_number(nlv)
    ccy = snapshot.base_currency
    sleeve = sum(abs(row["value"]) for row in rows)
    required = sum(abs(row["value"]) * row["requirement"] for row in rows)
    lowest = min(row["requirement"] for row in rows)
    symbols = tuple(row["symbol"] for row in rows)
    listed = names(symbols)
    cut = deposit = 0.0
    aims = []
    if goal.sleeve_cap is not None:
        cut = sleeve - goal.sleeve_cap * nlv
        deposit = sleeve / goal.sleeve_cap - nlv
        aims.append(f"the sleeve at {pct(goal.sleeve_cap)} of NLV")
    if goal.cushion is not None:
        target = goal.cushion
        cut = max(cut, (target * nlv - goal.projected_excess) / lowest)
        deposit = max(deposit, (target * nlv - goal.projected_excess) / (1 - target))
        aims.append(f"a {pct(target)} cushion through the close")
    aim = " and ".join(aims) + ", where the alert clears"
    kind: ActionKind = "reduce"
    if all(row["value"] > 0 for row in rows):
        kind = "sell"
    elif all(row["value"] < 0 for row in rows):
        kind = "buy_back"
    words = TRADE_WORDS[kind]
    whole = actions.deposit(deposit, ccy)
    trade = actions.trade(kind, cut, ccy, symbols=symbols, rate=lowest, held=sleeve)
    if trade.amount <= sleeve:
        average = required / sleeve if sleeve else lowest
        beside = f"; {pct(average)} on average" if average - lowest > 0.005 else ""
        text = (
            f"{words} about {money(trade.amount, ccy)} of leveraged ETFs ({listed}; "
            f"sized at {pct(lowest)}, the lowest Reg T requirement among them{beside}) or "
            f"deposit about {money(whole.amount, ccy)} to keep {aim}"
        )
        return _when(goal.when, text), [actions.remedy(trade), actions.remedy(whole)]
    rest = 0.0
    if goal.cushion is not None:  # selling them all frees their whole requirement
        rest = figures.restoring_deposit(nlv, goal.projected_excess + required, goal.cushion)
    everything = actions.trade(kind, sleeve, ccy, symbols=symbols, held=sleeve)
    remainder = actions.deposit(rest, ccy)
    text = (
        f"{words} all leveraged ETFs ({listed}, {money(everything.amount, ccy)}) "
        f"and deposit about {money(remainder.amount, ccy)}, or deposit about "
        f"{money(whole.amount, ccy)}, to keep {aim}"
    )
    return _when(goal.when, text), [actions.remedy(everything, remainder), actions.remedy(whole)]


def _when(when: str, text: str) -> str:
    """``Now, sell ...`` / ``Sell ...``."""
    return f"{when}, {text}" if when else text[0].upper() + text[1:]


SPEC = RuleSpec(
    "leveraged_etf",
    leveraged_etf,
    LeveragedEtfConfig,
    "percent",
    "leveraged/inverse ETF sleeve; cushion if their Reg T requirement applied now",
    reads=("net_liquidation", "excess_liquidity", "positions"),
    shares={"cushion": "cushion"},
    history={"leveraged_etf_share": "sleeve_share"},
)
