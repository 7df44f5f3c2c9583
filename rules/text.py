"""How figures read: the one money, percent and multiple formatter of the project.

Standard library only. Rules use these in their messages, and the daemon's notifications,
``check`` output and daily summary use :func:`format_value` with the unit the rule catalog
declares for each rule, so a cushion reads ``18.23%`` and a reserve ``USD 1,234.00``
everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

#: How a rule's measured value reads: a fraction shown as a percentage, a multiple (1.6x),
#: an amount of money in the account's currency, minutes, or a plain number.
Unit = Literal["percent", "multiple", "money", "minutes", "number"]

#: Shown where a figure is unknown.
NOT_AVAILABLE = "n/a"


def money(amount: float, currency: str) -> str:
    """``EUR 48,000.00``: an amount rounded to the cent with its currency."""
    return f"{currency} {amount:,.2f}".strip()


def pct(fraction: float, digits: int = 1) -> str:
    """``20%``, ``27.3%``: a fraction as a percentage without trailing zeros."""
    text = f"{fraction * 100:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text == "-0":
        text = "0"
    return f"{text}%"


def times(multiple: float) -> str:
    """``1.6x``, ``1.603x``: up to three decimals, so a value just past a level reads past it."""
    return f"{multiple:.3f}".rstrip("0").rstrip(".") + "x"


def names(symbols: Iterable[str], limit: int = 10) -> str:
    """``A, B, C and 4 more``: a readable list of at most ``limit`` names."""
    items = list(symbols)
    shown = ", ".join(items[:limit])
    rest = len(items) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


def format_value(value: float | None, unit: Unit, currency: str = "", *, digits: int = 2) -> str:
    """A measured value or threshold at fixed precision: ``8.12%``, ``1.85x``, ``USD 1,234.00``,
    ``12 min``; ``n/a`` when unknown. ``digits`` sets the decimals of percentages and
    multiples."""
    if value is None:
        return NOT_AVAILABLE
    if unit == "percent":
        return f"{value * 100:.{digits}f}%"
    if unit == "multiple":
        return f"{value:.{digits}f}x"
    if unit == "money":
        return f"{currency} {value:,.2f}".strip()
    if unit == "minutes":
        return f"{value:.0f} min"
    if abs(value) >= 1000:
        return f"{value:,.2f}"
    return f"{value:.4g}"
