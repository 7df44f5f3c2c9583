"""The wall clock the daemon reads, in one place.

Everything that needs the time takes a :data:`Clock` (a callable returning an aware UTC
datetime) so tests and the accelerated demo can inject their own; :func:`utc_now` is the
default. The pure time arithmetic (windows, HH:MM, ISO text) is in :mod:`rules.clock`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, timezone-aware UTC."""
    return datetime.now(UTC)
