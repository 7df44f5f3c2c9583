"""The ``leverage`` rule: net exposure |long - short| / NLV against the 1.2x-1.6x envelope.

Seed 000 (step 2) sets "a cap (for example, 1.2x-1.6x net exposure)": the envelope is on net
exposure, longs minus shorts. Gross leverage (GPV / NLV) has its own rule, ``gross_leverage``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rules import actions
from rules.common import (
    MIN_EQUITY,
    TRADE_WORDS,
    Book,
    RuleConfig,
    RuleSpec,
    absent,
    exposure_of,
    make,
    missing,
    missing_exposure,
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
    is_number,
)
from rules.text import money, times
from rules.validation import upper_levels


@dataclass(frozen=True)
class LeverageConfig(RuleConfig):
    """``leverage``: net exposure |long - short| / NLV (a multiple, 1.6 = 1.6x)."""

    warning: float | None = 1.6
    critical: float | None = 2.0
    clear_margin: float = 0.05

    def __post_init__(self) -> None:
        upper_levels(self.warning, self.critical, self.clear_margin)


def envelope_text(warning: float | None, critical: float | None) -> str:
    """``warning above 1.6x, critical above 2.0x`` (the levels that are set)."""
    return ", ".join(
        f"{label} above {times(level)}"
        for label, level in (("warning", warning), ("critical", critical))
        if level is not None
    )


def breach_text(what: str, value: float, severity: Severity, level: float) -> str:
    """``<what> 1.70001x is above the warning level 1.7x``: enough digits to read past it."""
    shown = times(value) if times(value) != times(level) else f"{value:.5f}x"
    return f"{what} {shown} is above the {severity.value} level {times(level)}"


def unbounded(
    snapshot: AccountSnapshot, what: str, nlv: float, critical: float | None
) -> tuple[Severity, str]:
    """The severity and message of a ratio to an NLV that is not positive: the worst level
    set, and no ratio (it would mean nothing)."""
    severity = Severity.CRITICAL if critical is not None else Severity.WARNING
    message = (
        f"{what} against NetLiquidation {money(nlv, snapshot.base_currency)}: with no positive "
        "equity the leverage is unbounded (no ratio is reported)"
    )
    return severity, message


@dataclass(frozen=True, slots=True)
class Cut:
    """An exposure of ``size`` to bring to ``target`` x NLV by trading ``kind`` out of what is
    ``held`` (``positions`` names it in the text), ``what`` naming the ratio."""

    kind: ActionKind
    size: float
    held: float
    target: float
    what: str
    positions: str = "positions"


def cut_exposure(snapshot: AccountSnapshot, cut: Cut) -> tuple[str, list[Remedy]]:
    """Cut the exposure by ``size - target x NLV`` (a trade leaves NLV unchanged) or deposit
    ``size / target - NLV`` (it raises NLV); with no positive equity only the deposit can."""
    nlv = snapshot.net_liquidation
    assert is_number(nlv)
    ccy = snapshot.base_currency
    goal = f"bring {cut.what} to {times(cut.target)}, where the alert clears"
    deposit = actions.deposit(cut.size / cut.target - nlv, ccy)
    if nlv < MIN_EQUITY:
        return f"Deposit about {money(deposit.amount, ccy)} to {goal}", [actions.remedy(deposit)]
    trade = actions.trade(cut.kind, cut.size - cut.target * nlv, ccy, held=cut.held)
    words = TRADE_WORDS[cut.kind]
    text = (
        f"{words[0].upper()}{words[1:]} about {money(trade.amount, ccy)} of {cut.positions} or "
        f"deposit about {money(deposit.amount, ccy)} to {goal}"
    )
    return text, [actions.remedy(trade), actions.remedy(deposit)]


def leverage(
    snapshot: AccountSnapshot,
    context: EvaluationContext,
    config: LeverageConfig,
    *,
    book: Book | None = None,
) -> Finding:
    """Net exposure |long - short| / NLV against the envelope (warning above 1.6x, critical
    above 2.0x). The action sells longs (a net-long book) or buys back shorts (a net-short
    one) down to the clear level, or deposits what brings the ratio there."""
    rule = "leverage"
    nlv = snapshot.net_liquidation
    if not is_number(nlv):
        return missing(rule, snapshot, absent(snapshot, "net_liquidation"))
    positions = Book.of(snapshot) if book is None else book
    exposure = exposure_of(snapshot, positions)
    if exposure is None:
        return missing_exposure(rule, snapshot, positions)
    ccy = snapshot.base_currency
    net = exposure.net
    side = "long" if net >= 0 else "short"
    details = {
        "long_exposure": exposure.long,
        "short_exposure": exposure.short,
        "net_exposure": net,
        "net_leverage": None,
        "assumed_all_long": exposure.assumed,
    }
    target_level = config.warning if config.warning is not None else config.critical
    target = target_level - config.clear_margin if target_level is not None else None
    envelope = envelope_text(config.warning, config.critical)
    book_text = f"long {money(exposure.long, ccy)}, short {money(exposure.short, ccy)}"
    if exposure.assumed:
        book_text = "no positions received: GrossPositionValue taken as all long"
    if abs(net) < MIN_EQUITY:
        return not_applicable(
            rule,
            snapshot,
            f"No net exposure ({book_text})",
            value=0.0,
            threshold=target_level,
            details={**details, "net_leverage": 0.0},
        )
    value: float | None = None
    if nlv < MIN_EQUITY:
        severity, message = unbounded(
            snapshot, f"Net exposure {money(abs(net), ccy)} {side}", nlv, config.critical
        )
        clear = severity
    else:
        value = abs(net) / nlv
        details["net_leverage"] = net / nlv
        severity, clear = grade_above(value, config.warning, config.critical, config.clear_margin)
        if severity is Severity.OK:
            message = f"Net exposure {times(value)} {side} ({book_text}; {envelope})"
        else:
            level = config.critical if severity is Severity.CRITICAL else config.warning
            assert level is not None  # a level was breached
            message = breach_text(f"Net exposure ({side})", value, severity, level)
            message += f" ({book_text})"
    action = None
    remedies: list[Remedy] = []
    if severity is not Severity.OK and target is not None:
        kind: ActionKind = "sell" if net > 0 else "buy_back"
        action, remedies = cut_exposure(
            snapshot,
            Cut(
                kind=kind,
                size=abs(net),
                held=exposure.long if kind == "sell" else exposure.short,
                target=target,
                what="net exposure",
                positions=f"{'long' if kind == 'sell' else 'short'} positions (keeping the "
                "proceeds as cash)",
            ),
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
        details=details,
        remedies=remedies,
    )


SPEC = RuleSpec(
    "leverage",
    leverage,
    LeverageConfig,
    "multiple",
    "net exposure |long - short| / NLV",
    reads=("net_liquidation", "gross_position_value", "positions"),
    history={"net_leverage": "net_leverage"},
)
