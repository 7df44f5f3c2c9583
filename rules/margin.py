"""Margin rules: cushion, look-ahead, SMA, portfolio-margin floor, distance to liquidation,
minimum equity.

Each rule is ``(snapshot, context, config) -> Finding``: one finding per account, reported on
every evaluation (``ok`` when fine), ``unknown`` with ``data_missing`` when its inputs are absent.
"""

from __future__ import annotations

from rules import figures
from rules.clock import in_window, local_time, window_of, zone
from rules.common import MIN_EQUITY, absent, book, make, missing, not_applicable
from rules.config import (
    CushionConfig,
    DistanceToLiquidationConfig,
    LookAheadConfig,
    MinEquityConfig,
    PmEquityFloorConfig,
    SmaConfig,
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


def _restore_action(
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
    excess = snapshot.excess_liquidity if is_number(snapshot.excess_liquidity) else None
    value = snapshot.cushion if is_number(snapshot.cushion) else None
    if not lacking:
        if value is None and excess is not None:
            value = excess / nlv  # type: ignore[operator]
        if excess is None and value is not None:
            excess = value * nlv  # type: ignore[operator]
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
        action = _restore_action(
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


def look_ahead(
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: LookAheadConfig,
    *,
    cushion: CushionConfig | None = None,
) -> Finding:
    """LookAheadExcessLiquidity < 0 is critical, naming when it takes effect; a look-ahead
    cushion (LookAheadExcessLiquidity / NLV) below the warning level is a warning."""
    rule = "look_ahead"
    lacking = absent(snapshot, "net_liquidation", "look_ahead_excess_liquidity")
    if lacking:
        return missing(rule, snapshot, lacking)
    nlv: float = snapshot.net_liquidation  # type: ignore[assignment]
    ahead: float = snapshot.look_ahead_excess_liquidity  # type: ignore[assignment]
    warning = config.warning
    if warning is None:
        warning = (cushion or CushionConfig()).warning
    value = ahead / nlv
    severity, clear = grade_below(value, warning, 0.0, config.clear_margin)
    current = snapshot.excess_liquidity
    # A look-ahead cushion no lower than today's adds nothing the cushion rule does not say.
    adds_nothing = is_number(current) and ahead >= current - 0.005 * abs(nlv)  # type: ignore[operator]
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
    elif severity is Severity.WARNING:
        message = (
            f"Look-ahead cushion {pct(value)} {when} is below the warning level {pct(warning)}"
        )
    elif adds_nothing and value < warning:
        message = (
            f"Look-ahead cushion {pct(value)} {when} is no lower than today's "
            "(the cushion rule covers it)"
        )
    else:
        message = f"Look-ahead cushion {pct(value)} {when} (warning below {pct(warning)})"
    action = None
    if severity is not Severity.OK:
        rate = None
        gross = snapshot.gross_position_value
        if is_number(snapshot.look_ahead_maint_margin_req) and is_number(gross) and gross > 0:  # type: ignore[operator]
            rate = snapshot.look_ahead_maint_margin_req / gross  # type: ignore[operator]
        rate = rate or snapshot.maintenance_rate
        before = when.removeprefix("at ") if change is not None else "the next margin change"
        action = _restore_action(
            snapshot,
            nlv,
            ahead,
            warning,
            rate,
            goal=f"keep a {pct(warning)} cushion when the look-ahead margin takes effect",
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
    )


def sma(snapshot: AccountSnapshot, context: EvaluationContext, config: SmaConfig) -> Finding:
    """SMA < 0 is a warning, critical inside the Reg T end-of-day window (15:50-17:20 ET)."""
    rule = "sma"
    lacking = absent(snapshot, "sma")
    if lacking:
        return missing(rule, snapshot, lacking)
    value: float = snapshot.sma  # type: ignore[assignment]
    window = in_window(
        context.now,
        window_of(config.window_start, config.window_end),
        zone(config.timezone),
        weekdays_only=True,
    )
    severity, clear = grade_below(value, 0.0, None, config.clear_margin)
    if window:
        severity = Severity.CRITICAL if severity is Severity.WARNING else severity
        clear = Severity.CRITICAL if clear is Severity.WARNING else clear
    ccy = snapshot.base_currency
    span = f"{config.window_start}-{config.window_end} {config.timezone}"
    if severity is Severity.OK:
        message = f"SMA {money(value, ccy)} (must be 0 or more at the Reg T check, {span})"
    elif window:
        message = (
            f"SMA is {money(value, ccy)}, below 0, inside the Reg T end-of-day check ({span}): "
            "a Reg T call or liquidation follows on a day with a position change"
        )
    else:
        message = f"SMA is {money(value, ccy)}, below 0: it must be 0 or more by the {span} check"
    action = None
    if severity is not Severity.OK:
        deficit = -value
        sale = deficit / config.reg_t_rate
        when = "now" if window else f"before {config.window_start} {config.timezone}"
        action = (
            f"Raise SMA by {money(deficit, ccy)} {when}: deposit {money(deficit, ccy)} or sell "
            f"about {money(sale, ccy)} of positions (a sale credits {pct(config.reg_t_rate)} "
            "of its proceeds to SMA)"
        )
    return make(
        rule,
        snapshot,
        severity,
        value,
        0.0,
        message,
        action=action,
        clear=clear,
        details={"sma": value, "in_window": window},
    )


def _usd_equity(snapshot: AccountSnapshot) -> tuple[float | None, float | None, list[str]]:
    """NLV converted to USD, the base units per USD, and what is missing."""
    lacking = absent(snapshot, "net_liquidation")
    rate = snapshot.rate_to_base("USD")
    if rate is None:
        lacking.append(f"USD exchange rate for base currency {snapshot.base_currency}")
    if lacking:
        return None, rate, lacking
    return snapshot.net_liquidation / rate, rate, []  # type: ignore[operator]


def _deposit_text(snapshot: AccountSnapshot, usd: float, rate: float) -> str:
    base = usd * rate
    if snapshot.base_currency in ("USD", ""):
        return money(usd, "USD")
    return f"{money(base, snapshot.base_currency)} ({money(usd, 'USD')})"


def pm_equity_floor(
    snapshot: AccountSnapshot, context: EvaluationContext, config: PmEquityFloorConfig
) -> Finding:
    """Portfolio-margin accounts: NLV (in USD) under 110,000 warning, under 100,000 critical."""
    rule = "pm_equity_floor"
    if snapshot.account.upper() not in config.portfolio_margin_accounts:
        return not_applicable(
            rule,
            snapshot,
            "Not a portfolio-margin account (list it in portfolio_margin_accounts to check "
            "the USD 110,000 floor)",
        )
    usd, rate, lacking = _usd_equity(snapshot)
    if lacking:
        return missing(rule, snapshot, lacking)
    assert usd is not None and rate is not None
    severity, clear = grade_below(usd, config.warning, config.critical, config.clear_margin)
    floor = money(config.warning, "USD")
    if severity is Severity.CRITICAL:
        message = (
            f"Portfolio-margin NLV {money(usd, 'USD')} is under {money(config.critical, 'USD')}: "
            "only margin-reducing trades are allowed, and a surcharge applies"
        )
    elif severity is Severity.WARNING:
        message = f"Portfolio-margin NLV {money(usd, 'USD')} is under the {floor} eligibility floor"
    else:
        message = f"Portfolio-margin NLV {money(usd, 'USD')} (floor {floor})"
    action = None
    if severity is not Severity.OK:
        deposit = _deposit_text(snapshot, config.warning - usd, rate)
        action = f"Deposit about {deposit} to bring NLV back to {floor}"
    threshold = config.critical if severity is Severity.CRITICAL else config.warning
    return make(
        rule,
        snapshot,
        severity,
        usd,
        threshold,
        message,
        action=action,
        clear=clear,
        details={"net_liquidation_usd": usd},
    )


def min_equity(
    snapshot: AccountSnapshot, context: EvaluationContext, config: MinEquityConfig
) -> Finding:
    """Margin accounts need at least USD 2,000 (NLV converted to USD)."""
    rule = "min_equity"
    usd, rate, lacking = _usd_equity(snapshot)
    if lacking:
        return missing(rule, snapshot, lacking)
    assert usd is not None and rate is not None
    severity, clear = grade_below(usd, config.warning, config.critical, config.clear_margin)
    minimum = money(config.warning, "USD")
    if severity is Severity.OK:
        message = f"NLV {money(usd, 'USD')} (margin accounts need at least {minimum})"
    else:
        message = f"NLV {money(usd, 'USD')} is under the {minimum} a margin account needs to trade"
    action = None
    if severity is not Severity.OK:
        deposit = _deposit_text(snapshot, config.warning - usd, rate)
        action = f"Deposit about {deposit} to reach {minimum}"
    return make(
        rule,
        snapshot,
        severity,
        usd,
        config.warning,
        message,
        action=action,
        clear=clear,
        details={"net_liquidation_usd": usd},
    )


def distance_to_liquidation(
    snapshot: AccountSnapshot, context: EvaluationContext, config: DistanceToLiquidationConfig
) -> Finding:
    """The uniform fall d* = EL / ((1 - m) x GPV) that empties ExcessLiquidity, with the cushion
    after each configured fall (EL' = EL - (1 - m) d GPV, NLV' = NLV - d x long value)."""
    rule = "distance_to_liquidation"
    lacking = absent(
        snapshot, "net_liquidation", "excess_liquidity", "gross_position_value", "maint_margin_req"
    )
    if lacking:
        return missing(rule, snapshot, lacking)
    nlv: float = snapshot.net_liquidation  # type: ignore[assignment]
    excess: float = snapshot.excess_liquidity  # type: ignore[assignment]
    gross: float = snapshot.gross_position_value  # type: ignore[assignment]
    ccy = snapshot.base_currency
    if gross < MIN_EQUITY:
        return not_applicable(rule, snapshot, "No positions: no fall can liquidate the account")
    rate: float = snapshot.maintenance_rate  # type: ignore[assignment]
    distance = figures.distance_to_liquidation(excess, gross, rate)
    if distance is None:
        return not_applicable(
            rule,
            snapshot,
            f"Maintenance is {pct(rate)} of positions: a uniform fall cannot empty ExcessLiquidity",
        )
    positions = book(snapshot)
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
