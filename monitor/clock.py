"""The wall clock the daemon reads, in one place.

Everything that needs the time takes a :data:`Clock` (a callable returning an aware UTC
datetime) so tests and the accelerated demo can inject their own; :func:`utc_now` is the
default. The pure time arithmetic (windows, HH:MM, ISO text) is in :mod:`rules.clock`.

The wall clock is for what people read (and IB's timestamps). Everything that measures time
(retries, backoff, probes, ages of data, how long the link is down) reads a
:data:`Monotonic` clock instead, ``time.monotonic`` unless a test injects one, so a clock step
(an NTP correction, a VM resumed from suspend) neither stalls nor hurries any of it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
Monotonic = Callable[[], float]


def utc_now() -> datetime:
    """The wall clock, timezone-aware UTC."""
    return datetime.now(UTC)
