"""Shared helpers of the benchmark scripts: the machine, percentiles, memory and CPU readings.

Each script in ``bench/`` runs standalone from the repository root
(``.venv/bin/python bench/<name>.py``), touches only 127.0.0.1, bounds its own duration, prints
its figures and whether each target was met, and exits 0 unless something failed outright.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import socket
import sys
from collections.abc import Sequence


def machine() -> str:
    """One line describing where the figures were taken."""
    cpu = _cpu_model()
    return (
        f"{platform.platform()}; Python {platform.python_version()}; "
        f"{os.cpu_count()} CPU(s){f' ({cpu})' if cpu else ''}"
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.5 = median, 0.9 = p90) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    """The median (mean of the two middle values for an even count)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory (VmRSS) in MB, from /proc; the peak from ``resource`` elsewhere."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def verdict(met: bool) -> str:
    """How a target line ends."""
    return "target MET" if met else "target MISSED"
