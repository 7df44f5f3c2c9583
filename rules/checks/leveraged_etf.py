"""The ``leveraged_etf`` rule: the leveraged/inverse ETF sleeve, and the cushion that would
remain if their Reg T requirement applied now. Holds the built-in table of leverage factors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rules import figures
from rules.checks.cushion import CushionConfig
from rules.clock import session_window
from rules.common import Book, RuleConfig, RuleSpec, absent, make, missing, not_applicable
from rules.model import (
    AccountSnapshot,
    EvaluationContext,
    Finding,
    Severity,
    grade_above,
    grade_below,
    is_number,
    worst,
)
from rules.text import money, names, pct
from rules.validation import finite, fraction, set_field, symbol_map, window_fields

#: Leverage factors of common US leveraged and inverse ETFs (negative = inverse). The API does
#: not report them; ``[rules.leveraged_etf] factors`` adds to or overrides this table.
BUILTIN_LEVERAGE_FACTORS: Mapping[str, float] = {
    # Nasdaq-100
    "TQQQ": 3.0,
    "SQQQ": -3.0,
    "QLD": 2.0,
    "QID": -2.0,
    "PSQ": -1.0,
    # S&P 500
    "UPRO": 3.0,
    "SPXU": -3.0,
    "SPXL": 3.0,
    "SPXS": -3.0,
    "SSO": 2.0,
    "SDS": -2.0,
    "SH": -1.0,
    # Dow
    "UDOW": 3.0,
    "SDOW": -3.0,
    "DDM": 2.0,
    "DXD": -2.0,
    "DOG": -1.0,
    # Russell 2000
    "TNA": 3.0,
    "TZA": -3.0,
    "URTY": 3.0,
    "SRTY": -3.0,
    "UWM": 2.0,
    "TWM": -2.0,
    "RWM": -1.0,
    # Sectors
    "SOXL": 3.0,
    "SOXS": -3.0,
    "TECL": 3.0,
    "TECS": -3.0,
    "FAS": 3.0,
    "FAZ": -3.0,
    "LABU": 3.0,
    "LABD": -3.0,
    "CURE": 3.0,
    "DPST": 3.0,
    "ROM": 2.0,
    "UYG": 2.0,
    "ERX": 2.0,
    "ERY": -2.0,
    "GUSH": 2.0,
    "DRIP": -2.0,
    "NUGT": 2.0,
    "DUST": -2.0,
    "JNUG": 2.0,
    "JDST": -2.0,
    # Treasuries
    "TMF": 3.0,
    "TMV": -3.0,
    "TYD": 3.0,
    "TYO": -3.0,
    "UBT": 2.0,
    "TBT": -2.0,
    # Emerging markets, China
    "EDC": 3.0,
    "EDZ": -3.0,
    "YINN": 3.0,
    "YANG": -3.0,
    # Commodities
    "UCO": 2.0,
    "SCO": -2.0,
    "BOIL": 2.0,
    "KOLD": -2.0,
    # Volatility
    "UVXY": 1.5,
    "UVIX": 2.0,
    "SVXY": -0.5,
}


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
    """The built-in factor table with the configured ``factors`` merged over it (0 removes)."""
    table = dict(BUILTIN_LEVERAGE_FACTORS)
    if config is not None:
        table.update(config.factors)
    return {symbol: factor for symbol, factor in table.items() if factor != 0}


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
    ccy = snapshot.base_currency
    factors = leveraged_factors(config)
    positions = Book.of(snapshot) if book is None else book
    quantities = positions.quantities
    held = [(symbol, factor) for symbol, factor in factors.items() if symbol in quantities]
    if not held:
        return not_applicable(
            rule,
            snapshot,
            "No leveraged or inverse ETFs held",
            value=0.0,
            threshold=config.sleeve_cap,
            details={"sleeve_share": 0.0},
        )
    unpriced = [symbol for symbol, _ in held if symbol in positions.unpriced]
    lacking = absent(snapshot, "excess_liquidity")
    if unpriced:
        lacking.append(f"market value of {names(unpriced)}")
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
    actions = []
    if sleeve_sev is not Severity.OK:
        parts.append(f"the sleeve is above its {pct(config.sleeve_cap)} cap")
        actions.append(
            f"Sell about {money(sleeve - config.sleeve_cap * nlv, ccy)} of leveraged ETFs "
            f"({symbols}) to bring the sleeve to {pct(config.sleeve_cap)} of NLV"
        )
    if proj_sev is not Severity.OK:
        where = "inside" if window else "outside"
        parts.append(
            f"the projected cushion is below the critical level {pct(critical_level)} "
            + (f"({where} the {span} rebalancing window)" if today.exists else f"({span})")
        )
        target = levels.warning
        average = required / sleeve if sleeve else 1.0
        sale = max(0.0, (target * nlv - projected_el) / average)
        when = "Now" if window else f"Before {today.starts}"
        if sale <= sleeve:
            actions.append(
                f"{when}, sell about {money(sale, ccy)} of leveraged ETFs (at their "
                f"{pct(average)} Reg T requirement) to keep a {pct(target)} cushion through "
                "the close"
            )
        else:
            deposit = figures.restoring_deposit(nlv, projected_el + average * sleeve, target)
            actions.append(
                f"{when}, sell all leveraged ETFs ({money(sleeve, ccy)}) and deposit about "
                f"{money(deposit, ccy)} to keep a {pct(target)} cushion through the close"
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
        action="; ".join(actions) or None,
        clear=clear,
        details=details,
    )


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
