"""Exposure rules: leverage, margin utilization, concentration, leveraged ETFs, shares
outstanding, allocation drift.

Multi-position rules give one finding per account: the worst position drives the severity and
the value, ``details["positions"]`` lists every position's figures. Positions are summed per
symbol over stock and ETF holdings (secType STK); values are in the account's base currency.
"""

from __future__ import annotations

import math
from typing import Any

from rules import figures
from rules.clock import in_window, window_of, zone
from rules.common import absent, book, make, missing, not_applicable
from rules.config import (
    AllocationDriftConfig,
    ConcentrationConfig,
    CushionConfig,
    LeverageConfig,
    LeveragedEtfConfig,
    MarginUtilizationConfig,
    SharesOutstandingConfig,
    leveraged_factors,
)
from rules.model import (
    AccountSnapshot,
    EvaluationContext,
    Finding,
    Severity,
    grade_above,
    grade_below,
    worst,
)
from rules.text import money, names, pct, times


def leverage(
    snapshot: AccountSnapshot, context: EvaluationContext, config: LeverageConfig
) -> Finding:
    """Gross leverage GPV / NLV against the envelope (warning above 1.6x, critical above 2.0x)."""
    rule = "leverage"
    lacking = absent(snapshot, "net_liquidation", "gross_position_value")
    if lacking:
        return missing(rule, snapshot, lacking)
    nlv: float = snapshot.net_liquidation  # type: ignore[assignment]
    gross: float = snapshot.gross_position_value  # type: ignore[assignment]
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
        level: float = config.critical if severity is Severity.CRITICAL else config.warning  # type: ignore[assignment]
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


def margin_utilization(
    snapshot: AccountSnapshot, context: EvaluationContext, config: MarginUtilizationConfig
) -> Finding:
    """The margin loan (negative base cash) as a share of NLV, against the cap (30%)."""
    rule = "margin_utilization"
    lacking = absent(snapshot, "net_liquidation", "cash_balance")
    if lacking:
        return missing(rule, snapshot, lacking)
    nlv: float = snapshot.net_liquidation  # type: ignore[assignment]
    loan: float = snapshot.margin_loan  # type: ignore[assignment]
    ccy = snapshot.base_currency
    cap = config.warning if config.warning is not None else config.critical
    if loan <= 0:
        return not_applicable(
            rule, snapshot, "No margin loan (base cash is not negative)", value=0.0, threshold=cap
        )
    value = loan / nlv
    severity, clear = grade_above(value, config.warning, config.critical, config.clear_margin)
    share = f"margin loan {money(loan, ccy)} is {pct(value)} of NLV"
    if severity is Severity.OK:
        message = f"The {share}" + (f" (cap {pct(cap)})" if cap is not None else "")
    else:
        level = config.critical if severity is Severity.CRITICAL else config.warning
        message = f"The {share}, above the {pct(level)} cap"  # type: ignore[arg-type]
    action = None
    if severity is not Severity.OK and cap is not None:
        repay = loan - cap * nlv
        action = (
            f"Repay about {money(repay, ccy)} of the {money(loan, ccy)} margin loan (deposit, or "
            f"sell positions and keep the proceeds) to bring it to {pct(cap)} of NLV"
        )
    threshold = config.critical if severity is Severity.CRITICAL else cap
    return make(
        rule,
        snapshot,
        severity,
        value,
        threshold,
        message,
        action=action,
        clear=clear,
        details={"margin_loan": loan, "net_liquidation": nlv},
    )


def _sell_or_cover(symbol: str, value: float, amount: float, ccy: str) -> str:
    verb = "Sell" if value >= 0 else "Buy back"
    return f"{verb} about {money(amount, ccy)} of {symbol}"


def concentration(
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: ConcentrationConfig,
    *,
    leveraged: LeveragedEtfConfig | None = None,
) -> Finding:
    """Each holding's absolute value as a share of NLV: single stocks against ``stock_cap``,
    ETFs (stockType ETF, or a leveraged ETF of the factor table) against ``etf_cap``,
    per-symbol overrides."""
    rule = "concentration"
    lacking = absent(snapshot, "net_liquidation")
    if lacking:
        return missing(rule, snapshot, lacking)
    nlv: float = snapshot.net_liquidation  # type: ignore[assignment]
    ccy = snapshot.base_currency
    positions = book(snapshot)
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
        if share > cap - margin:
            clear = Severity.WARNING
            if share > cap:
                severity = Severity.WARNING
                breaches.append((symbol, value, share, cap))
    unpriced_text = f"; no value for {names(unpriced)}" if unpriced else ""
    if worst_row is None or largest is None:
        return missing(rule, snapshot, [f"market value of {names(unpriced)}"])
    details = {"positions": rows, "unpriced": list(unpriced)}
    if breaches:
        breaches.sort(key=lambda item: item[2] / item[3], reverse=True)
        listed = "; ".join(
            f"{symbol} is {pct(share)} of NLV (cap {pct(cap)})"
            for symbol, _, share, cap in breaches
        )
        message = f"Concentrated: {listed}{unpriced_text}"
        action = "; ".join(
            _sell_or_cover(symbol, value, abs(value) - cap * nlv, ccy) + f" (to {pct(cap)} of NLV)"
            for symbol, value, share, cap in breaches
        )
        value, threshold = breaches[0][2], breaches[0][3]
    else:
        message = (
            f"Largest holding {largest['symbol']} is {pct(largest['share'])} of NLV "
            f"(caps: stocks {pct(config.stock_cap)}, ETFs {pct(config.etf_cap)}){unpriced_text}"
        )
        action = None
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
    )


def leveraged_etf(
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: LeveragedEtfConfig,
    *,
    cushion: CushionConfig | None = None,
) -> Finding:
    """Leveraged and inverse ETFs: the sleeve's share of NLV, each one's Reg T requirement
    Min(50% x |factor|, 100%), and the cushion if those requirements applied now.

    Projected EL = EL - sum(|value| x max(0, requirement - current rate)), where the current rate
    is IB's maintenance for the fund, Min(25% x |factor|, 100%) long or Min(30% x |factor|, 100%)
    short (already inside MaintMarginReq). A projected cushion below the cushion rule's critical
    level is critical inside the pre-close window (weekdays, 15:30-16:00 ET), a warning outside.
    """
    rule = "leveraged_etf"
    levels = cushion or CushionConfig()
    lacking = absent(snapshot, "net_liquidation")
    if lacking:
        return missing(rule, snapshot, lacking)
    nlv: float = snapshot.net_liquidation  # type: ignore[assignment]
    ccy = snapshot.base_currency
    factors = leveraged_factors(config)
    positions = book(snapshot)
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
    excess: float = snapshot.excess_liquidity  # type: ignore[assignment]
    rows = []
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
    window = in_window(
        context.now,
        window_of(config.window_start, config.window_end),
        zone(config.timezone),
        weekdays_only=True,
    )
    sleeve_sev, sleeve_clear = grade_above(share, config.sleeve_cap, None, config.clear_margin)
    proj_sev, proj_clear = grade_below(projected, None, critical_level, config.clear_margin)
    if not window:
        proj_sev = Severity.WARNING if proj_sev is Severity.CRITICAL else proj_sev
        proj_clear = Severity.WARNING if proj_clear is Severity.CRITICAL else proj_clear
    severity = worst((sleeve_sev, proj_sev))
    clear = worst((sleeve_clear, proj_clear))
    symbols = names(row["symbol"] for row in rows)
    span = f"{config.window_start}-{config.window_end} {config.timezone}"
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
            f"({where} the {span} rebalancing window)"
        )
        target = levels.warning
        average = required / sleeve if sleeve else 1.0
        sale = max(0.0, (target * nlv - projected_el) / average)
        when = "Now" if window else f"Before {config.window_start} {config.timezone}"
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


def shares_outstanding(
    snapshot: AccountSnapshot, context: EvaluationContext, config: SharesOutstandingConfig
) -> Finding:
    """Holding / shares outstanding: above 1% a warning (IBKR raises the margin), at 5% or
    more critical (100% margin). Counts from config win over IB fundamental data; symbols with
    neither are named, the rest are graded."""
    rule = "shares_outstanding"
    positions = book(snapshot)
    if not positions.quantities:
        return not_applicable(rule, snapshot, "No stock positions")
    known = context.shares_outstanding
    ccy = snapshot.base_currency
    rows: list[dict[str, Any]] = []
    no_data: list[str] = []
    breaches: list[tuple[str, float, float, Severity]] = []
    worst_row: dict[str, Any] | None = None
    configured = config.shares_outstanding
    warning, critical, margin = config.warning, config.critical, config.clear_margin
    levels = (Severity.OK, Severity.WARNING, Severity.CRITICAL)
    severity_rank = clear_rank = 0
    worst_ratio = -1.0
    for symbol, quantity in positions.quantities.items():
        count = configured.get(symbol)
        if count is None:
            count = known.get(symbol)
        held = abs(quantity)
        if count is None or not 0 < count < math.inf or held - held != 0:
            no_data.append(symbol)  # no count, or a quantity that is not a number
            continue
        ratio = held / count
        rows.append(
            {"symbol": symbol, "quantity": held, "shares_outstanding": count, "ratio": ratio}
        )
        if ratio > worst_ratio:
            worst_ratio, worst_row = ratio, rows[-1]
        if ratio <= warning - margin:
            continue  # fine even against the clear levels
        level = 2 if ratio >= critical else 1 if ratio > warning else 0
        held_level = 2 if ratio >= critical - margin else 1
        severity_rank = max(severity_rank, level)
        clear_rank = max(clear_rank, held_level)
        if level:
            breaches.append((symbol, ratio, count, levels[level]))
    severity, clear = levels[severity_rank], levels[clear_rank]
    no_data_text = (
        f"; no shares-outstanding data for {names(no_data)} (set [rules.shares_outstanding] "
        "shares_outstanding)"
        if no_data
        else ""
    )
    details = {"positions": rows, "no_data": no_data}
    if worst_row is None:
        return not_applicable(
            rule, snapshot, f"Not graded{no_data_text}", threshold=config.warning, details=details
        )
    action = None
    if breaches:
        breaches.sort(key=lambda item: item[1], reverse=True)
        listed = "; ".join(
            f"{symbol} holding is {pct(ratio, 2)} of shares outstanding"
            + (" (100% margin at 5% or more)" if level is Severity.CRITICAL else "")
            for symbol, ratio, _, level in breaches
        )
        message = f"{listed}{no_data_text}"
        steps = []
        for symbol, _, count, _level in breaches:
            quantity = positions.quantities[symbol]
            excess_shares = math.ceil(abs(quantity) - config.warning * count)
            worth = positions.values.get(symbol)
            per_share = abs(worth) / abs(quantity) if worth is not None and quantity else None
            priced = (
                f" (about {money(excess_shares * per_share, ccy)})" if per_share is not None else ""
            )
            verb = "Sell" if quantity > 0 else "Buy back"
            steps.append(
                f"{verb} about {excess_shares:,} {symbol} shares{priced} to get under "
                f"{pct(config.warning)} of shares outstanding"
            )
        action = "; ".join(steps)
        value = breaches[0][1]
    else:
        value = worst_row["ratio"]
        message = (
            f"Largest holding {worst_row['symbol']} is {pct(value, 3)} of shares outstanding "
            f"(warning above {pct(config.warning)}){no_data_text}"
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


def allocation_drift(
    snapshot: AccountSnapshot, context: EvaluationContext, config: AllocationDriftConfig
) -> Finding:
    """Weights of the target symbols (value over their combined value) against the targets;
    the action lists the buys and sells, in base currency, that restore them."""
    rule = "allocation_drift"
    if not config.targets:
        return not_applicable(rule, snapshot, "No allocation targets configured")
    positions = book(snapshot)
    unpriced = [symbol for symbol in config.targets if symbol in positions.unpriced]
    if unpriced:
        return missing(rule, snapshot, [f"market value of {names(unpriced)}"])
    values = {symbol: positions.values.get(symbol, 0.0) for symbol in config.targets}
    total = sum(values.values())
    ccy = snapshot.base_currency
    if total <= 0:
        return not_applicable(
            rule,
            snapshot,
            f"None of the target symbols ({names(config.targets)}) is held",
            threshold=config.band,
        )
    trades = figures.rebalancing_trades(values, config.targets, total)
    rows = []
    drift_max = 0.0
    driver = ""
    for symbol, target in config.targets.items():
        weight = values[symbol] / total
        drift = weight - target
        rows.append(
            {
                "symbol": symbol,
                "value": values[symbol],
                "weight": weight,
                "target": target,
                "drift": drift,
                "trade": trades[symbol],
            }
        )
        if abs(drift) > drift_max:
            drift_max, driver = abs(drift), symbol
    severity, clear = grade_above(drift_max, config.band, config.critical_band, config.clear_margin)
    weights = ", ".join(
        f"{row['symbol']} {pct(row['weight'])} (target {pct(row['target'])})" for row in rows
    )
    if severity is Severity.OK:
        message = f"Weights within {pct(config.band)} of target: {weights}"
    else:
        message = (
            f"{driver} is {pct(drift_max)} off its target, more than the {pct(config.band)} "
            f"band: {weights}"
        )
    action = None
    if severity is not Severity.OK:
        ordered = sorted(rows, key=lambda row: row["trade"])
        steps = "; ".join(
            f"{'sell' if row['trade'] < 0 else 'buy'} {money(abs(row['trade']), ccy)} "
            f"{row['symbol']}"
            for row in ordered
            if abs(row["trade"]) >= 0.005
        )
        if steps:
            action = steps[0].upper() + steps[1:]
        else:
            action = f"Rebalance toward the targets (every trade is under {money(0.01, ccy)})"
        action += f" (restores the targets on {money(total, ccy)})"
    threshold = (
        config.critical_band
        if severity is Severity.CRITICAL and config.critical_band is not None
        else config.band
    )
    return make(
        rule,
        snapshot,
        severity,
        drift_max,
        threshold,
        message,
        action=action,
        clear=clear,
        details={"positions": rows, "total": total},
    )
