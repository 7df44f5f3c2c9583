"""The ``pm_equity_floor`` rule: the NLV floor of portfolio-margin accounts, in USD."""

from __future__ import annotations

from dataclasses import dataclass

from rules import actions
from rules.checks.min_equity import deposit_to, usd_equity
from rules.common import RuleConfig, RuleSpec, make, missing, not_applicable
from rules.model import AccountSnapshot, EvaluationContext, Finding, Severity, grade_below
from rules.rates import PORTFOLIO_MARGIN_FLOOR
from rules.text import money
from rules.validation import fraction, ordered_below, positive, set_field, symbol_list


@dataclass(frozen=True)
class PmEquityFloorConfig(RuleConfig):
    """``pm_equity_floor``: NLV in USD for the listed portfolio-margin accounts (USD amounts).

    ``maintenance_floor`` is the lowest maintenance rate a holding of such an account can have
    (the +-15% stock stress of seed 003): every rule sizes the sales it suggests for these
    accounts at it.
    """

    portfolio_margin_accounts: tuple[str, ...] = ()
    warning: float = 110_000.0
    critical: float = 100_000.0
    clear_margin: float = 1_000.0
    maintenance_floor: float = PORTFOLIO_MARGIN_FLOOR

    def __post_init__(self) -> None:
        fraction("maintenance_floor", self.maintenance_floor, allow_zero=False)
        positive("warning", self.warning)
        positive("critical", self.critical)
        positive("clear_margin", self.clear_margin, allow_zero=True)
        ordered_below(self.warning, self.critical)
        accounts = symbol_list("portfolio_margin_accounts", self.portfolio_margin_accounts)
        set_field(self, "portfolio_margin_accounts", accounts)


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
    usd, rate, lacking = usd_equity(snapshot)
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
    remedies = []
    if severity is not Severity.OK:
        target = config.warning + config.clear_margin
        deposit, text = deposit_to(snapshot, target, usd, rate)
        action = (
            f"Deposit about {text} to bring NLV back to {money(target, 'USD')} ({floor} plus "
            "the clear margin)"
        )
        remedies = [actions.remedy(deposit)]
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
        remedies=remedies,
    )


SPEC = RuleSpec(
    "pm_equity_floor",
    pm_equity_floor,
    PmEquityFloorConfig,
    "money",
    "portfolio-margin accounts' NLV",
    reads=("net_liquidation", "exchange_rates"),
)
