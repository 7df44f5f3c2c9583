"""Checks shared by every rule's configuration dataclass: one message style for bad values.

Standard library only. Each helper validates one value and raises :class:`ValueError` naming
the key and saying what to fix; pydantic reports it under the section's key
(``rules.cushion.warning: ...``). Conventions for every rule's settings:

- shares, rates and thresholds are **fractions**: ``0.20`` means 20 %, ``0.005`` is half a point;
- money thresholds are in **USD** where the name says so (``pm_equity_floor``, ``min_equity``),
  otherwise in the account's base currency;
- ``clear_margin`` is the hysteresis: an alert clears only once the value is that far beyond its
  trigger on the safe side (same unit as the thresholds);
- symbols (dictionary keys, tuples of symbols) are upper-cased.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rules.clock import parse_hhmm, zone

#: Read by pydantic (``__pydantic_config__``): a misspelt key is an error, not silently ignored.
FORBID_EXTRA: dict[str, Any] = {"extra": "forbid"}


def finite(name: str, value: object) -> float:
    """``value`` as a float; ValueError unless it is a finite number (booleans are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def fraction(name: str, value: object, *, upper: float = 1.0, allow_zero: bool = True) -> float:
    """A fraction from 0 (or above 0) to ``upper``."""
    number = finite(name, value)
    low_ok = number >= 0 if allow_zero else number > 0
    if not low_ok or number > upper:
        lower = "0" if allow_zero else "above 0"
        raise ValueError(
            f"{name} must be a fraction from {lower} to {upper:g} (0.20 means 20%), got {value!r}"
        )
    return number


def positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A number above 0 (or 0 or more)."""
    number = finite(name, value)
    if number < 0 or (number == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "above 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return number


def ordered_below(warning: float | None, critical: float | None) -> None:
    """For values that are bad when low: the warning trigger sits above the critical one."""
    if warning is not None and critical is not None and warning <= critical:
        raise ValueError(
            f"warning ({warning:g}) must be above critical ({critical:g}): "
            "a value falls through the warning level before the critical one"
        )


def ordered_above(warning: float | None, critical: float | None) -> None:
    """For values that are bad when high: the warning trigger sits below the critical one."""
    if warning is not None and critical is not None and warning >= critical:
        raise ValueError(
            f"warning ({warning:g}) must be below critical ({critical:g}): "
            "a value rises through the warning level before the critical one"
        )


def upper_levels(warning: float | None, critical: float | None, clear_margin: float) -> None:
    """Optional levels of a value that is bad when high (a multiple or a share): each above 0,
    in order, and the clear margin below the lowest (an alert must be able to clear)."""
    for name, value in (("warning", warning), ("critical", critical)):
        if value is not None:
            positive(name, value)
    positive("clear_margin", clear_margin, allow_zero=True)
    ordered_above(warning, critical)
    lowest = warning if warning is not None else critical
    if lowest is not None and lowest <= clear_margin:
        raise ValueError("clear_margin must be below the lowest level")


def hhmm(name: str, value: object) -> str:
    """A time of day ``HH:MM`` (24-hour clock), stripped."""
    try:
        if not isinstance(value, str):
            raise ValueError
        parse_hhmm(value)
    except ValueError:
        raise ValueError(
            f"{name} must be a time 'HH:MM' on a 24-hour clock, got {value!r}"
        ) from None
    return value.strip()


def timezone_name(name: str, value: object) -> str:
    """An IANA time zone name known to this machine."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be an IANA timezone name such as 'America/New_York'")
    try:
        zone(value)
    except ValueError:
        raise ValueError(
            f"{name}: unknown timezone {value!r} (use an IANA name such as 'America/New_York')"
        ) from None
    return value


def symbol_list(name: str, values: Iterable[object]) -> tuple[str, ...]:
    """A list of symbols (or account ids), upper-cased."""
    if isinstance(values, str):
        raise ValueError(f'{name} must be a list of symbols, e.g. ["BIL", "SGOV"]')
    result = []
    for item in values:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{name} must hold non-empty strings, got {item!r}")
        result.append(item.strip().upper())
    return tuple(result)


def symbol_map(
    name: str, values: object, check: Callable[[str, object], float]
) -> dict[str, float]:
    """A table ``SYMBOL = number``, keys upper-cased, each value passed through ``check``."""
    if not isinstance(values, Mapping):
        raise ValueError(f"{name} must be a table of SYMBOL = number")
    result: dict[str, float] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"{name} has an empty symbol")
        symbol = key.strip().upper()
        result[symbol] = check(f"{name}.{symbol}", value)
    return result


def set_field(instance: object, name: str, value: object) -> None:
    """Store a normalised value on a frozen dataclass from its ``__post_init__``."""
    object.__setattr__(instance, name, value)


def window_fields(instance: Any) -> None:
    """Check and normalise ``window_start``, ``window_end`` and ``timezone`` of a rule's window."""
    set_field(instance, "window_start", hhmm("window_start", instance.window_start))
    set_field(instance, "window_end", hhmm("window_end", instance.window_end))
    timezone_name("timezone", instance.timezone)
